package pricing

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func commitment(name string, spec v1.CommitmentSpec) v1.Commitment {
	return v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func machine(it, ct string, list float64) Machine {
	return Machine{InstanceType: it, ListPricePerHour: list, Labels: map[string]string{
		v1.LabelInstanceType: it, v1.LabelCapacityType: ct, v1.LabelZone: "z1", v1.LabelInstanceFamily: it[:1]}}
}

func TestCommitments(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	onlyM := []v1.NodeSelectorRequirementWithMinValues{{Key: v1.LabelInstanceFamily, Operator: corev1.NodeSelectorOpIn, Values: []string{"m"}}}
	cs := []v1.Commitment{
		// $1/h at half price: one running m (list 0.4) spends 0.2 of it.
		commitment("sp", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: ptr.To(resource.MustParse("1")), DiscountPercent: ptr.To(int32(50)), Requirements: onlyM}),
		// Two c machines; the running one is spot, which is never covered.
		commitment("ri", v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(2)),
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.LabelInstanceFamily, Operator: corev1.NodeSelectorOpIn, Values: []string{"c"}}}}),
		// Ended: ignored.
		commitment("old", v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(9)), EndTime: &metav1.Time{Time: now.Add(-time.Hour)}}),
		commitment("edp", v1.CommitmentSpec{Type: v1.CommitmentDiscount, DiscountPercent: ptr.To(int32(10))}),
	}
	running := []Machine{machine("m1", v1.CapacityTypeOnDemand, 0.4), machine("c1", v1.CapacityTypeSpot, 0.1)}
	got := Usage(cs, running, now)
	want := []CommitmentUse{
		{Name: "ri", Type: v1.CommitmentReservedInstances, Committed: 2, Unit: "machines"},
		{Name: "edp", Type: v1.CommitmentDiscount},
		{Name: "sp", Type: v1.CommitmentSavingsPlan, Committed: 1, Used: 0.2, Unit: "$/h", Machines: 1, Savings: 0.2},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
		t.Errorf("usage (-want +got):\n%s", diff)
	}

	types := []*cloudprovider.InstanceType{
		{Name: "m1", Labels: map[string]string{v1.LabelInstanceFamily: "m"}, Offerings: []cloudprovider.Offering{
			{Zone: "z1", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 0.4, Available: true},
			{Zone: "z1", CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.1, Available: true},
		}},
	}
	out := ApplyCommitments(types, cs, running, now)
	if len(types[0].Offerings) != 2 {
		t.Fatalf("input modified: %v", types[0].Offerings)
	}
	type offer struct {
		ct, commitment string
		price          float64
		cost, left     float64
	}
	var offers []offer
	for _, o := range out[0].Offerings {
		offers = append(offers, offer{o.CapacityType, o.Commitment, o.PricePerHour, o.CommitmentCost, o.CommitmentLeft})
	}
	wantOffers := []offer{
		// Spot unchanged; the on-demand offering gains a covered tier for
		// the commitment that covers it and has room (sp: 0.8 left, 0.2 a
		// machine), and is itself priced at the discount's rate.
		{ct: v1.CapacityTypeOnDemand, commitment: "sp", price: CoveredPricePerHour, cost: 0.2, left: 0.8},
		{ct: v1.CapacityTypeOnDemand, price: 0.36},
		{ct: v1.CapacityTypeSpot, price: 0.1},
	}
	if diff := cmp.Diff(wantOffers, offers, cmp.AllowUnexported(offer{}), cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
		t.Errorf("offerings (-want +got):\n%s", diff)
	}
}
