package claims

import (
	"fmt"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// maxOfferings is the NodeClaim API's bound on spec.offerings.
const maxOfferings = 60

// FromPlan is the NodeClaim for one machine a solver plan buys from pool:
// the pool template's labels, annotations, taints and settings, the node's
// requirements, and its ordered offerings. Provisioning and disruption both
// build claims with it, so a replacement looks exactly like a first purchase.
func FromPlan(pool *v1.NodePool, n *solver.NewNode) (*v1.NodeClaim, error) {
	if len(n.Choices) == 0 {
		return nil, fmt.Errorf("plan for nodepool %s has a new node without offerings", pool.Name)
	}
	tmpl := pool.Spec.Template
	labels := map[string]string{}
	for k, v := range tmpl.ObjectMeta.Labels {
		labels[k] = v
	}
	labels[v1.LabelNodePool] = pool.Name
	var annotations map[string]string
	if len(tmpl.ObjectMeta.Annotations) > 0 || n.Gang != "" {
		annotations = make(map[string]string, len(tmpl.ObjectMeta.Annotations)+1)
		for k, v := range tmpl.ObjectMeta.Annotations {
			annotations[k] = v
		}
	}
	if n.Gang != "" {
		// A gang's machines are launched and released together.
		labels[v1.LabelGang] = solver.GangLabelValue(n.Gang)
		annotations[v1.AnnotationGang] = n.Gang
	}
	var placement *v1.Placement
	if n.PlacementGroup != "" {
		placement = &v1.Placement{Group: n.PlacementGroup}
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
			PricePerHour:  v1.FormatPrice(ch.Offering.PricePerHour),
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
			GenerateName:    pool.Name + "-",
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: PoolOwner(pool),
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
			Placement:              placement,
		},
	}, nil
}

// PoolOwner is the owner reference a pool's claims carry, so that deleting
// the pool deletes them through the garbage collector and each is drained
// by the normal termination path. Empty for a pool that has no UID (one
// never stored, as in tests and simulations).
func PoolOwner(pool *v1.NodePool) []metav1.OwnerReference {
	if pool.UID == "" {
		return nil
	}
	return []metav1.OwnerReference{{
		APIVersion: v1.SchemeGroupVersion.String(),
		Kind:       "NodePool",
		Name:       pool.Name,
		UID:        pool.UID,
	}}
}
