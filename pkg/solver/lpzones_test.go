package solver

import (
	"context"
	"math"
	"slices"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TestLeastMinimum checks M*, the least final count of a zone, against
// counts worked by hand from the solver's rule (count+1 - min <= maxSkew).
func TestLeastMinimum(t *testing.T) {
	cases := []struct {
		existing []float64
		skew, n  float64
		want     float64
	}{
		{[]float64{0, 0, 0}, 1, 6, 2}, // 2, 2, 2
		{[]float64{0, 0, 0}, 1, 7, 2}, // 2, 2, 3
		{[]float64{0, 0, 0}, 1, 5, 1}, // 1, 2, 2
		{[]float64{0, 0, 0}, 1, 2, 0}, // 1, 1, 0
		{[]float64{0, 0, 0}, 2, 6, 1}, // 1, 2, 3
		{[]float64{5, 0, 0}, 1, 3, 1}, // the second zone cannot stay empty: 5, 1, 2
		{[]float64{5, 0, 0}, 1, 1, 0}, // 5, 0, 1
		{[]float64{4, 4}, 1, 0, 4},
	}
	for _, c := range cases {
		if got := leastMinimum(c.existing, c.skew, c.n); got != c.want {
			t.Errorf("leastMinimum(%v, skew %v, %v pods) = %v, want %v", c.existing, c.skew, c.n, got, c.want)
		}
	}
}

// TestZoneRowsRaiseTheBound: six pods spread over three zones with maxSkew 1
// put two in zone c, where only a dearer type is offered. The plan pays for
// it (two pods per zone, two per machine: two cheap machines and one dear);
// the bound sees it too (without the zone rows it is the price of three
// cheap machines), and stays below the plan. A zone only 1.5 times dearer
// per pod still gets its row.
func TestZoneRowsRaiseTheBound(t *testing.T) {
	for name, c := range map[string]struct{ dear, plan, bound float64 }{
		"ten times dearer": {dear: 1.00, plan: 1.20, bound: 1.19},
		"1.5 times dearer": {dear: 0.15, plan: 0.35, bound: 0.349},
	} {
		t.Run(name, func(t *testing.T) {
			cheap := makeIT(itSpec{name: "cheap", cpu: 2, memGi: 8, price: 0.10, noSpot: true, zones: []string{"zone-a", "zone-b"}})
			dear := makeIT(itSpec{name: "dear", cpu: 2, memGi: 8, price: c.dear, noSpot: true, zones: []string{"zone-c"}})
			snap := &Snapshot{
				Pods:      makePods(6, "web", "900m", "1Gi", label("app", "web"), spread(v1.LabelZone, 1, true, map[string]string{"app": "web"})),
				NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{cheap, dear})},
			}
			plan, err := Solve(context.Background(), snap)
			if err != nil {
				t.Fatal(err)
			}
			if len(plan.Unschedulable) > 0 || math.Abs(plan.CostPerHour-c.plan) > 1e-9 {
				t.Fatalf("plan costs $%.2f/h with %d unschedulable, want $%.2f/h and none", plan.CostPerHour, len(plan.Unschedulable), c.plan)
			}
			if plan.LowerBoundPerHour < c.bound || plan.LowerBoundPerHour > plan.CostPerHour+1e-9 {
				t.Errorf("bound $%.3f/h, want between $%.3f/h (two pods must run on the dear type) and the plan's $%.2f/h", plan.LowerBoundPerHour, c.bound, plan.CostPerHour)
			}
		})
	}
}

// TestWorthwhileDropsRowsThatAddNothing: rows whose gains sum to under
// zoneRowSlack of the demand's cost are left out, the larger kept in order.
func TestWorthwhileDropsRowsThatAddNothing(t *testing.T) {
	// 1,000 pods at $0.10 each: the demand costs $100.
	b := &lpBuilder{
		classes:  []lpClass{{n: 1000}},
		supplies: []lpSupply{{price: 1, count: math.MaxInt, classes: []int{0}, caps: []float64{10}}},
	}
	slack := zoneRowSlack * 100
	rows := []zoneRow{
		{bit: 1, need: 10, premium: 1},               // gain 10: kept
		{bit: 2, need: 1, premium: 0.4 * slack},      // dropped
		{bit: 4, need: 2, premium: 0.2 * slack},      // dropped (the two sum to 0.8 of the slack)
		{bit: 8, need: 1, premium: 0.5 * slack},      // would pass the slack: kept
		{bit: 16, need: 100, premium: 0.001 * slack}, // the least gain: dropped first
	}
	var bits []uint64
	for _, r := range b.worthwhile(rows) {
		bits = append(bits, r.bit)
	}
	if want := []uint64{1, 8}; !slices.Equal(bits, want) {
		t.Errorf("kept rows of zones %v, want %v", bits, want)
	}
}
