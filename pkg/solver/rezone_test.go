package solver

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// zoneWithoutTheCheapFamily is a catalog whose cheap family is offered in
// two of three zones; the third has only dearer, differently shaped types.
func zoneWithoutTheCheapFamily() *NodePool {
	ab := []string{"us-east-1a", "us-east-1b"}
	c := []string{"us-east-1c"}
	return makePool("default", []*cloudprovider.InstanceType{
		makeIT(itSpec{name: "t.small", cpu: 2, memGi: 4, price: 0.02, noSpot: true, zones: ab}),
		makeIT(itSpec{name: "t.large", cpu: 8, memGi: 16, price: 0.08, noSpot: true, zones: ab}),
		makeIT(itSpec{name: "c.large", cpu: 4, memGi: 4, price: 0.07, noSpot: true, zones: c}),
		makeIT(itSpec{name: "c.4xlarge", cpu: 16, memGi: 16, price: 0.27, noSpot: true, zones: c}),
		makeIT(itSpec{name: "r.large", cpu: 2, memGi: 16, price: 0.09, noSpot: true, zones: c}),
		makeIT(itSpec{name: "m.xlarge", cpu: 4, memGi: 16, price: 0.16, noSpot: true, zones: c}),
	})
}

func spreadApps() []*corev1.Pod {
	var pods []*corev1.Pod
	for i, a := range []struct {
		cpu, mem string
		n        int
	}{{"3", "512Mi", 18}, {"1500m", "3Gi", 21}, {"250m", "1Gi", 12}, {"1", "1Gi", 12}} {
		app := map[string]string{"app": fmt.Sprintf("app%d", i)}
		pods = append(pods, makePods(a.n, app["app"], a.cpu, a.mem, label("app", app["app"]),
			spread(v1.LabelZone, 1, true, app))...)
	}
	return pods
}

// Four zone-spread apps put a third of their pods in us-east-1c, which
// lacks the t family the LP guide buys: packed again on its own, that share
// costs less. Every pod keeps its zone, all are placed, and the plan passes
// the independent validator.
func TestRezonePacksALackingZoneAgain(t *testing.T) {
	snap := &Snapshot{Pods: spreadApps(), NodePools: []*NodePool{zoneWithoutTheCheapFamily()}}
	with, without := solveWithAndWithoutRezone(t, snap)
	for _, e := range validate(snap, with) {
		t.Error(e)
	}
	if len(with.Unschedulable) > 0 {
		t.Fatalf("%d pods unschedulable", len(with.Unschedulable))
	}
	zoneOf := func(p *Plan) map[*corev1.Pod]string {
		out := map[*corev1.Pod]string{}
		for _, n := range p.NewNodes {
			for _, pod := range n.Pods {
				out[pod] = n.Choices[0].Offering.Zone
			}
		}
		return out
	}
	a, b := zoneOf(with), zoneOf(without)
	if len(a) != len(snap.Pods) || len(b) != len(snap.Pods) {
		t.Fatalf("%d and %d pods on new nodes, want %d", len(a), len(b), len(snap.Pods))
	}
	for pod, z := range b {
		if a[pod] != z {
			t.Errorf("pod %s moved from %s to %s", pod.Name, z, a[pod])
		}
	}
	if with.CostPerHour >= without.CostPerHour-1e-9 {
		t.Errorf("$%.4f/h with rezoning, $%.4f/h without: want cheaper", with.CostPerHour, without.CostPerHour)
	}
	t.Logf("$%.4f/h with rezoning, $%.4f/h without, bound $%.4f/h", with.CostPerHour, without.CostPerHour, with.LowerBoundPerHour)
}

// What a zone's share would be solved without leaves the plan as the first
// packing had it: a pool with limits (the other zones' machines count
// against them), a commitment (it spans zones).
func TestRezoneLeavesWhatItCannotSeeWhole(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Snapshot)
	}{
		{"pool with limits", func(s *Snapshot) { withLimit(corev1.ResourceCPU, "1000")(s.NodePools[0]) }},
		{"a commitment", func(s *Snapshot) {
			it := s.NodePools[0].InstanceTypes[0]
			it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand,
				PricePerHour: 0.019, Available: true, Commitment: "sp-1", CommitmentCost: 0.019, CommitmentLeft: 0.02})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := &Snapshot{Pods: spreadApps(), NodePools: []*NodePool{zoneWithoutTheCheapFamily()}}
			tc.mutate(snap)
			with, without := solveWithAndWithoutRezone(t, snap)
			if with.CostPerHour != without.CostPerHour || len(with.NewNodes) != len(without.NewNodes) {
				t.Errorf("$%.4f/h on %d nodes with rezoning, $%.4f/h on %d without: want the same plan",
					with.CostPerHour, len(with.NewNodes), without.CostPerHour, len(without.NewNodes))
			}
		})
	}
}

// A gang's pods are not packed again: its nodes come out of rezoning as
// they went in, while the zone's other pods are.
func TestRezoneLeavesGangsAsTheyAre(t *testing.T) {
	gang := makePods(4, "gang", "7500m", "31Gi", gpus(1), label("app", "gang"), podGroup("g", 4), nodeSelector(v1.LabelZone, "us-east-1c"))
	pool := zoneWithoutTheCheapFamily()
	pool.InstanceTypes = append(pool.InstanceTypes, makeIT(itSpec{name: "g.2xlarge", cpu: 8, memGi: 32, gpus: 1, gpuName: "l4",
		price: 0.98, noSpot: true, zones: []string{"us-east-1c"}}))
	snap := &Snapshot{Pods: append(spreadApps(), gang...), NodePools: []*NodePool{pool}}
	with, without := solveWithAndWithoutRezone(t, snap)
	if with.CostPerHour >= without.CostPerHour-1e-9 {
		t.Errorf("$%.4f/h with rezoning, $%.4f/h without: want the other pods packed again", with.CostPerHour, without.CostPerHour)
	}
	gangNodes := func(p *Plan) []string {
		var out []string
		for _, n := range p.NewNodes {
			if n.Gang != "" {
				names := ""
				for _, pod := range n.Pods {
					names += pod.Name + " "
				}
				out = append(out, n.Choices[0].InstanceType.Name+": "+names)
			}
		}
		return out
	}
	for _, e := range validate(snap, with) {
		t.Error(e)
	}
	a, b := gangNodes(with), gangNodes(without)
	if len(b) == 0 || fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("gang nodes with rezoning %v, without %v: want the same, and some", a, b)
	}
}

func solveWithAndWithoutRezone(t *testing.T, snap *Snapshot) (with, without *Plan) {
	t.Helper()
	var err error
	if with, err = Solve(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	if without, err = Solve(context.Background(), snap, WithoutRezone()); err != nil {
		t.Fatal(err)
	}
	return with, without
}
