package claims

import (
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Labels are the labels every Node of the claim carries once registered:
// each requirement pinned to a single value (a pod's selector of a
// well-known label such as stowage.dev/gpu-name, which not every provider's
// kubelet registers with), the claim's own (its pool's template labels and
// the pool), the well-known labels of what was launched, and the claim's
// name. Registration writes them; the provisioner and disruption plan an
// unregistered claim's room with them, so the three views agree.
// The hostname, the node's own, is not among them.
func Labels(claim *v1.NodeClaim) map[string]string {
	out := make(map[string]string, len(claim.Labels)+len(claim.Spec.Requirements)+4)
	for _, r := range claim.Spec.Requirements {
		if r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 && r.Key != v1.LabelHostname {
			out[r.Key] = r.Values[0]
		}
	}
	for k, val := range claim.Labels {
		out[k] = val
	}
	for k, val := range map[string]string{
		v1.LabelCapacityType: claim.Status.CapacityType,
		v1.LabelInstanceType: claim.Status.InstanceType,
		v1.LabelZone:         claim.Status.Zone,
	} {
		if val != "" {
			out[k] = val
		}
	}
	out[v1.LabelNodeClaim] = claim.Name
	return out
}
