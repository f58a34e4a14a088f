package cost

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// The solver prices on-demand offerings at the best Discount in force
// (pricing.ApplyCommitments), so a claim planned under a Discount records the
// discounted price in its choices and status. The bill applies the discount
// once: taking that price as the list price and discounting it again
// reported a 20% discount as 36%.
func TestAttributeAppliesADiscountOnce(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	launched := now.Add(-24 * time.Hour)
	capacity := resources("cpu", "4", "memory", "16Gi")
	discount := func(created time.Time) v1.Commitment {
		return v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: "edp", CreationTimestamp: metav1.NewTime(created)},
			Spec: v1.CommitmentSpec{Type: v1.CommitmentDiscount, DiscountPercent: ptr.To(int32(20))}}
	}
	for _, tt := range []struct {
		name     string
		price    string // what the solver recorded
		discount v1.Commitment
	}{
		{"planned under the discount", "8.0000", discount(launched.Add(-time.Hour))},
		{"discount signed after launch", "10.0000", discount(launched.Add(time.Hour))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := claim("c", "default", v1.CapacityTypeOnDemand, "x.large", tt.price, "n", "p://c", capacity)
			c.CreationTimestamp = metav1.NewTime(launched)
			c.Spec.Offerings = []v1.OfferingChoice{{InstanceType: "x.large", Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: tt.price}}
			s := State{NodeClaims: []v1.NodeClaim{c}, Nodes: []corev1.Node{node("n", "p://c", capacity)},
				Commitments: []v1.Commitment{tt.discount}, Now: now}
			r := Attribute(s, testModel, fakePricer{"x.large": 9})
			if d := r.Total - 8; d > 1e-6 || d < -1e-6 {
				t.Errorf("total $%.4f/h, want $8/h (list $10 less 20%%)", r.Total)
			}
			if len(r.Commitments) != 1 || r.Commitments[0].Savings-2 > 1e-6 || 2-r.Commitments[0].Savings > 1e-6 {
				t.Errorf("commitments %+v, want the discount to save $2/h", r.Commitments)
			}
		})
	}
}
