package solver

import (
	"math"
	"testing"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TestCoverDP checks the integer cover against costs worked by hand.
func TestCoverDP(t *testing.T) {
	unlimited := math.MaxInt
	cases := []struct {
		name  string
		n     int
		items []coverItem
		want  float64
	}{
		{"one size", 20, []coverItem{{7, 1, unlimited}}, 3},
		{"big machine dearer than three small", 20, []coverItem{{7, 1, unlimited}, {56, 5, unlimited}}, 3},
		{"big machine cheaper than three small", 20, []coverItem{{7, 1, unlimited}, {56, 2.5, unlimited}}, 2.5},
		{"mixed sizes", 10, []coverItem{{4, 1, unlimited}, {3, 0.7, unlimited}}, 2.4}, // 4+3+3
		{"reservations first", 10, []coverItem{{4, 0, 2}, {4, 1, unlimited}}, 1},      // 4+4 reserved, +4
		{"too few reserved", 10, []coverItem{{4, 0, 2}}, math.Inf(1)},
		{"two of seven singles", 12, []coverItem{{1, 0.1, 7}, {10, 2, unlimited}}, 2.2}, // 10+1+1
		{"one single only", 12, []coverItem{{1, 0.1, 1}, {10, 2, unlimited}}, 4},        // 10+10
		{"halves", 9, []coverItem{{2, 1, 3}, {5, 3, unlimited}}, 5},                     // 2+2+5
	}
	for _, c := range cases {
		if got := coverDP(c.n, paretoItems(c.items, c.n)); math.Abs(got-c.want) > 1e-9 && !(math.IsInf(got, 1) && math.IsInf(c.want, 1)) {
			t.Errorf("%s: coverDP = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestIntegerCoverRaisesTheBound: twenty pods, seven per machine on the
// small type or 63 on a big one that is cheaper per pod but dearer than
// three small machines. The LP buys a third of a big machine and one small;
// whole machines cost three small ones, which the bound now reports.
func TestIntegerCoverRaisesTheBound(t *testing.T) {
	small := makeIT(itSpec{name: "small", cpu: 16, memGi: 64, price: 1, noSpot: true})
	big := makeIT(itSpec{name: "big", cpu: 128, memGi: 512, price: 5, noSpot: true})
	snap := &Snapshot{
		Pods:      makePods(20, "svc", "2", "1Gi"),
		NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{small, big})},
	}
	provenOptimal(t, snap, 3, "three small machines")
}

// TestSmallExactIsTheOptimum: three pods of 2.5 CPU and three of 2 CPU.
// Two medium machines ($1.90 each, 7.9 CPU) hold them all; a big machine is
// the cheapest CPU but costs $10, a small one holds one pod. The LP buys a
// fraction of the big machine and each class alone fits one medium, so only
// counting whole machines over every pod proves the $3.80 plan optimal.
func TestSmallExactIsTheOptimum(t *testing.T) {
	small := makeIT(itSpec{name: "small", cpu: 4, memGi: 16, price: 1, noSpot: true})
	medium := makeIT(itSpec{name: "medium", cpu: 8, memGi: 32, price: 1.9, noSpot: true})
	big := makeIT(itSpec{name: "big", cpu: 64, memGi: 256, price: 10, noSpot: true})
	snap := &Snapshot{
		Pods:      concat(makePods(3, "a", "2500m", "1Gi"), makePods(3, "b", "2", "1Gi")),
		NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{small, medium, big})},
	}
	provenOptimal(t, snap, 3.8, "two medium machines")
}

// TestIntegerCoverSumsDisjointPools: CPU pods in one pool and GPU pods in a
// tainted other never share a machine, so each group's whole machines add
// up. Sixty CPU pods fill one big machine ($10) at 63 a machine, which the
// LP buys 60/63 of; forty GPU pods need forty $5 machines. Only the sum of
// the two covers proves the $210 plan optimal (each alone is below the LP).
func TestIntegerCoverSumsDisjointPools(t *testing.T) {
	small := makeIT(itSpec{name: "c", cpu: 4, memGi: 16, price: 1, noSpot: true})
	big := makeIT(itSpec{name: "C", cpu: 64, memGi: 256, price: 10, noSpot: true})
	gpu := makeIT(itSpec{name: "g", cpu: 8, memGi: 32, gpus: 1, gpuName: "t4", price: 5, noSpot: true})
	snap := &Snapshot{
		Pods: concat(makePods(60, "cpu", "1", "1Gi"),
			makePods(40, "gpu", "1", "1Gi", gpus(1), tolerate("nvidia.com/gpu"))),
		NodePools: []*NodePool{
			makePool("cpu", []*cloudprovider.InstanceType{small, big}),
			makePool("gpu", []*cloudprovider.InstanceType{gpu}, withTaint("nvidia.com/gpu")),
		},
	}
	provenOptimal(t, snap, 210, "one big machine and forty GPU machines")
}

// provenOptimal solves snap and checks the plan places every pod on what
// (the machines the test worked out) for want $/h, and that the bound equals
// it: no plan is cheaper.
func provenOptimal(t *testing.T, snap *Snapshot, want float64, what string) {
	t.Helper()
	plan := solveT(t, snap)
	if len(plan.Unschedulable) > 0 || math.Abs(plan.CostPerHour-want) > 1e-9 {
		t.Fatalf("plan costs $%.2f/h (%d unschedulable), want %s at $%.2f/h", plan.CostPerHour, len(plan.Unschedulable), what, want)
	}
	if math.Abs(plan.LowerBoundPerHour-want) > 1e-6 {
		t.Errorf("bound $%.3f/h, want $%.2f/h: the plan is optimal, and the bound should prove it", plan.LowerBoundPerHour, want)
	}
}
