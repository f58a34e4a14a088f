package cost

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// A machine a commitment covers records $0.0001/h; the commitment report
// must charge it at its list price (the claim's own on-demand offering, as
// pkg/commitments.Running does), not at that placeholder, and the claim's
// own regional list price wins over the built-in price book's.
func TestCommitmentUseChargesCoveredMachinesAtListPrice(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	covered := v1.OfferingChoice{InstanceType: "x.large", Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.0001"}
	plain := v1.OfferingChoice{InstanceType: "x.large", Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "1.0000"}
	c := claim("c1", "default", v1.CapacityTypeOnDemand, "x.large", "0.0001", "", "p://c1", resources("cpu", "4", "memory", "16Gi"))
	c.Spec.Offerings = []v1.OfferingChoice{covered, plain}
	for _, tt := range []struct {
		name        string
		pricer      OnDemandPricer
		commitment  v1.CommitmentSpec
		wantUsed    float64
		wantSavings float64
	}{
		{"RI, type unknown to the price books", nil,
			v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(1))}, 1, 1.0},
		{"SP, type unknown to the price books", nil,
			v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: ptr.To(resource.MustParse("10")), DiscountPercent: ptr.To(int32(30))}, 0.7, 0.3},
		{"SP, built-in book of another region", fakePricer{"x.large": 0.8},
			v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: ptr.To(resource.MustParse("10")), DiscountPercent: ptr.To(int32(30))}, 0.7, 0.3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := State{NodeClaims: []v1.NodeClaim{c}, Now: now,
				Commitments: []v1.Commitment{{ObjectMeta: metav1.ObjectMeta{Name: "cm"}, Spec: tt.commitment}}}
			r := Attribute(s, testModel, tt.pricer)
			if len(r.Commitments) != 1 {
				t.Fatalf("commitments: %+v", r.Commitments)
			}
			u := r.Commitments[0]
			if d := u.Used - tt.wantUsed; d > 1e-6 || d < -1e-6 {
				t.Errorf("used %v, want %v", u.Used, tt.wantUsed)
			}
			if d := u.Savings - tt.wantSavings; d > 1e-6 || d < -1e-6 {
				t.Errorf("savings %v $/h, want %v $/h", u.Savings, tt.wantSavings)
			}
		})
	}
}
