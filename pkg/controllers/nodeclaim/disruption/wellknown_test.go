package disruption

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// The AWS and GCP kubelets register with the claim's labels only, so a node
// may lack a well-known label (stowage.dev/gpu-name, instance-family) that its
// pool's requirements constrain. Its claim still says what it was bought as;
// a node is not Drifted just because the label is absent, or every node of
// such a pool would be replaced right after it initialized, and its
// replacement too.
func TestPoolDriftWithoutWellKnownLabelsOnTheNode(t *testing.T) {
	req := func(key string, op corev1.NodeSelectorOperator, vals ...string) v1.NodeSelectorRequirementWithMinValues {
		return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: vals}
	}
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	pool.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
		req(v1.LabelGPUName, corev1.NodeSelectorOpIn, "a10g", "l4"),
		req(v1.LabelInstanceFamily, corev1.NodeSelectorOpIn, "g5", "g6"),
		req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "0"),
	}
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "gpu-a"}}
	claim.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
		req(v1.LabelGPUName, corev1.NodeSelectorOpIn, "a10g", "l4"),
		req(v1.LabelInstanceFamily, corev1.NodeSelectorOpIn, "g5"),
		req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "0"),
		req(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "g5.xlarge"),
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "ip-10-0-0-1", Labels: map[string]string{
		v1.LabelNodePool: "gpu", v1.LabelInstanceType: "g5.xlarge", v1.LabelCapacityType: "on-demand",
	}}}
	if reason, msg := PoolDrift(pool, claim, node); reason != "" {
		t.Errorf("PoolDrift = %s (%s), want no drift", reason, msg)
	}

	// Drift the claim's requirements show is still drift.
	pool.Spec.Template.Spec.Requirements[1] = req(v1.LabelInstanceFamily, corev1.NodeSelectorOpIn, "g6")
	if reason, _ := PoolDrift(pool, claim, node); reason != ReasonRequirementsDrifted {
		t.Errorf("PoolDrift after the pool dropped g5 = %q, want %s", reason, ReasonRequirementsDrifted)
	}
}
