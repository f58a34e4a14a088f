package solver

import (
	"context"
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
// put two in zone c, where only a type ten times dearer is offered. The
// plan pays for it; the bound now sees it too (without the zone rows it
// was the price of three cheap machines), and stays below the plan.
func TestZoneRowsRaiseTheBound(t *testing.T) {
	cheap := makeIT(itSpec{name: "cheap", cpu: 2, memGi: 8, price: 0.10, noSpot: true, zones: []string{"zone-a", "zone-b"}})
	dear := makeIT(itSpec{name: "dear", cpu: 2, memGi: 8, price: 1.00, noSpot: true, zones: []string{"zone-c"}})
	snap := &Snapshot{
		Pods:      makePods(6, "web", "900m", "1Gi", label("app", "web"), spread(v1.LabelZone, 1, true, map[string]string{"app": "web"})),
		NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{cheap, dear})},
	}
	plan, err := Solve(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Unschedulable) > 0 {
		t.Fatalf("unschedulable: %v", plan.Unschedulable)
	}
	// Two pods per zone, two per machine: two cheap machines and one dear.
	if want := 1.20; plan.CostPerHour < want-1e-9 || plan.CostPerHour > want+1e-9 {
		t.Fatalf("plan costs $%.2f/h, want $%.2f/h", plan.CostPerHour, want)
	}
	if plan.LowerBoundPerHour < 1.19 || plan.LowerBoundPerHour > plan.CostPerHour+1e-9 {
		t.Errorf("bound $%.3f/h, want between $1.19/h (two pods must run on the dear type) and the plan's $%.2f/h", plan.LowerBoundPerHour, plan.CostPerHour)
	}
}
