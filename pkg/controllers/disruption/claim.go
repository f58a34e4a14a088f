package disruption

import (
	"fmt"
	"sort"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// maxOfferings is the NodeClaim API's bound on spec.offerings.
const maxOfferings = 60

// ReplacementClaim is the NodeClaim for one planned replacement machine of
// pool, carrying the lineage of the first candidate it replaces.
//
// provisioning builds claims the same way but does not export its builder;
// the two should become one helper.
func ReplacementClaim(pool *v1.NodePool, n *solver.NewNode, replaces *v1.NodeClaim, now time.Time) (*v1.NodeClaim, error) {
	if len(n.Choices) == 0 {
		return nil, fmt.Errorf("plan for nodepool %s has a new node without offerings", pool.Name)
	}
	tmpl := pool.Spec.Template
	labels := map[string]string{}
	for k, val := range tmpl.ObjectMeta.Labels {
		labels[k] = val
	}
	labels[v1.LabelNodePool] = pool.Name
	annotations := map[string]string{}
	for k, val := range tmpl.ObjectMeta.Annotations {
		annotations[k] = val
	}
	if replaces != nil {
		lineage := replaces.Annotations[AnnotationLineage]
		if lineage == "" {
			lineage = replaces.Name
		}
		annotations[AnnotationLineage] = lineage
		annotations[AnnotationReplacedAt] = now.UTC().Format(time.RFC3339)
	}
	choices := n.Choices
	if len(choices) > maxOfferings {
		choices = choices[:maxOfferings]
	}
	offerings := make([]v1.OfferingChoice, 0, len(choices))
	for _, ch := range choices {
		offerings = append(offerings, v1.OfferingChoice{
			InstanceType:  ch.InstanceType.Name,
			Zone:          ch.Offering.Zone,
			CapacityType:  ch.Offering.CapacityType,
			PricePerHour:  fmt.Sprintf("%.4f", ch.Offering.PricePerHour),
			ReservationID: ch.Offering.ReservationID,
		})
	}
	var reqs []v1.NodeSelectorRequirementWithMinValues
	for _, r := range n.Requirements {
		// The API reserves the pool label; the claim carries it as a label.
		if r.Key != v1.LabelNodePool {
			reqs = append(reqs, *r.DeepCopy())
		}
	}
	sort.SliceStable(reqs, func(i, j int) bool { return reqs[i].Key < reqs[j].Key })
	spec := tmpl.Spec.DeepCopy()
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: pool.Name + "-",
			Labels:       labels,
			Annotations:  annotations,
		},
		Spec: v1.NodeClaimSpec{
			Requirements:           reqs,
			Offerings:              offerings,
			Resources:              v1.ResourceRequirements{Requests: n.Requests.DeepCopy()},
			Taints:                 spec.Taints,
			StartupTaints:          spec.StartupTaints,
			NodeClassRef:           spec.NodeClassRef,
			ExpireAfter:            spec.ExpireAfter,
			TerminationGracePeriod: spec.TerminationGracePeriod,
			RegistrationTimeout:    spec.RegistrationTimeout,
			GPU:                    spec.GPU,
		},
	}, nil
}
