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
		{Name: "sp", Type: v1.CommitmentSavingsPlan, Committed: 1, Used: 0.2, Unit: "$/h", Machines: 1, Savings: 0.2},
		{Name: "edp", Type: v1.CommitmentDiscount},
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

// TestCoverageOrder charges machines to overlapping commitments in the order
// the bill applies them: Reserved Instances, then family-specific Savings
// Plans, then broad ones, the highest discount first within each; names only
// break ties.
func TestCoverageOrder(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	family := func(f string) []v1.NodeSelectorRequirementWithMinValues {
		return []v1.NodeSelectorRequirementWithMinValues{{Key: v1.LabelInstanceFamily, Operator: corev1.NodeSelectorOpIn, Values: []string{f}}}
	}
	amount := func(s string) *resource.Quantity { return ptr.To(resource.MustParse(s)) }
	named := func(name string, m Machine) Machine { m.Name = name; return m }
	for _, tc := range []struct {
		name        string
		commitments []v1.Commitment
		running     []Machine
		want        map[string]string // machine -> commitment
	}{{
		// The Compute plan sorts first by name, but the m-family plan applies
		// first: it takes the m machine, leaving the Compute plan for the c one.
		name: "instance savings plan before compute savings plan",
		commitments: []v1.Commitment{
			commitment("a-compute", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: amount("1.6"), DiscountPercent: ptr.To(int32(20))}),
			commitment("b-m-family", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: amount("1.4"), DiscountPercent: ptr.To(int32(30)), Requirements: family("m")}),
		},
		running: []Machine{named("m", machine("m1", v1.CapacityTypeOnDemand, 2)), named("c", machine("c1", v1.CapacityTypeOnDemand, 1))},
		want:    map[string]string{"m": "b-m-family", "c": "a-compute"},
	}, {
		// Both broad: the deeper discount applies first, whatever the names.
		name: "highest discount first within a kind",
		commitments: []v1.Commitment{
			commitment("a-shallow", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: amount("10"), DiscountPercent: ptr.To(int32(10))}),
			commitment("b-deep", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: amount("10"), DiscountPercent: ptr.To(int32(40))}),
		},
		running: []Machine{named("m", machine("m1", v1.CapacityTypeOnDemand, 1))},
		want:    map[string]string{"m": "b-deep"},
	}, {
		// Reserved Instances first, even against a family plan with a deeper discount.
		name: "reserved instances before savings plans",
		commitments: []v1.Commitment{
			commitment("a-m-family", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: amount("10"), DiscountPercent: ptr.To(int32(60)), Requirements: family("m")}),
			commitment("b-ri", v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(1)), DiscountPercent: ptr.To(int32(30))}),
		},
		running: []Machine{named("m", machine("m1", v1.CapacityTypeOnDemand, 1))},
		want:    map[string]string{"m": "b-ri"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			charges, _ := Charges(tc.commitments, tc.running, now)
			got := map[string]string{}
			for m, c := range charges {
				got[m] = c.Commitment
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("charges (-want +got):\n%s", diff)
			}
		})
	}

	// The solver takes the first of equally priced covered offerings, so
	// ApplyCommitments lists them in the same order: the m-family plan's first.
	cs := []v1.Commitment{
		commitment("a-compute", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: amount("5"), DiscountPercent: ptr.To(int32(20))}),
		commitment("b-m-family", v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: amount("5"), DiscountPercent: ptr.To(int32(30)), Requirements: family("m")}),
	}
	types := []*cloudprovider.InstanceType{{Name: "m1", Labels: map[string]string{v1.LabelInstanceFamily: "m"},
		Offerings: []cloudprovider.Offering{{Zone: "z1", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 1, Available: true}}}}
	var order []string
	for _, o := range ApplyCommitments(types, cs, nil, now)[0].Offerings {
		order = append(order, o.Commitment)
	}
	if diff := cmp.Diff([]string{"b-m-family", "a-compute", ""}, order); diff != "" {
		t.Errorf("covered offerings (-want +got):\n%s", diff)
	}
}
