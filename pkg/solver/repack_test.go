package solver

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TestRepack runs the cost-aware pass, which sizes each node for the shape
// that opened it, then repacks: the result must be valid, never pricier, and
// merge exactly the nodes the case expects.
func TestRepack(t *testing.T) {
	// Prices are sub-linear, so one 8-CPU machine beats two 2-CPU ones.
	catalog := []itSpec{
		{name: "small.2x", cpu: 2, memGi: 8, price: 1.0},
		{name: "big.8x", cpu: 8, memGi: 32, price: 1.5},
	}
	cases := []struct {
		name string
		snap func() *Snapshot
		// wantPods is the number of pods on each node after repacking.
		wantPods []int
	}{
		{
			name: "one-per-node pods of two apps share a machine",
			snap: func() *Snapshot {
				return &Snapshot{Pods: concat(
					makePods(1, "a", "1500m", "1Gi", label("app", "a"), podAntiAffinity(v1.LabelHostname, map[string]string{"app": "a"})),
					makePods(1, "b", "1500m", "1Gi", label("app", "b"), podAntiAffinity(v1.LabelHostname, map[string]string{"app": "b"})),
				)}
			},
			wantPods: []int{2},
		},
		{
			name: "anti-affine apps stay apart",
			snap: func() *Snapshot {
				return &Snapshot{Pods: concat(
					makePods(1, "a", "1500m", "1Gi", label("app", "a"), podAntiAffinity(v1.LabelHostname, map[string]string{"app": "b"})),
					makePods(1, "b", "1500m", "1Gi", label("app", "b"), podAntiAffinity(v1.LabelHostname, map[string]string{"app": "b"})),
				)}
			},
			wantPods: []int{1, 1},
		},
		{
			name: "nodes pinned to different zones stay apart",
			snap: func() *Snapshot {
				return &Snapshot{Pods: concat(
					makePods(1, "a", "1500m", "1Gi", label("app", "a"), nodeSelector(v1.LabelZone, testZones[0])),
					makePods(1, "b", "1500m", "1Gi", label("app", "b"), nodeSelector(v1.LabelZone, testZones[1]), podAntiAffinity(v1.LabelHostname, map[string]string{"app": "b"})),
				)}
			},
			wantPods: []int{1, 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			snap := tc.snap()
			var types []*cloudprovider.InstanceType
			for _, spec := range catalog {
				types = append(types, makeIT(spec))
			}
			snap.NodePools = []*NodePool{makePool("default", types)}
			m, err := newModel(snap)
			if err != nil {
				t.Fatal(err)
			}
			st, err := pack(context.Background(), m, StrategyCostAware, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			before := st.finish(DefaultMaxChoices, false)
			st.repack()
			after := st.finish(DefaultMaxChoices, false)
			after.LowerBoundPerHour = lowerBound(m, after, true, nil)
			if errs := validate(snap, after); len(errs) > 0 {
				t.Fatalf("violations: %v", errs)
			}
			if after.CostPerHour > before.CostPerHour+1e-9 {
				t.Errorf("repacking raised the cost from %.3f to %.3f", before.CostPerHour, after.CostPerHour)
			}
			var got []int
			for _, n := range after.NewNodes {
				got = append(got, len(n.Pods))
			}
			if diff := cmp.Diff(tc.wantPods, got); diff != "" {
				t.Errorf("pods per node (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPlacementOrder: interleaving spreads each shape evenly over the
// sequence; the default order is shape by shape.
func TestPlacementOrder(t *testing.T) {
	a := &shape{idx: 0, key: "a", pods: makePods(4, "a", "1", "1Gi")}
	b := &shape{idx: 1, key: "b", pods: makePods(2, "b", "1", "1Gi")}
	render := func(order []shapePod) []string {
		var out []string
		for _, p := range order {
			out = append(out, p.s.pods[p.i].Name)
		}
		return out
	}
	cases := []struct {
		strategy Strategy
		want     []string
	}{
		{StrategyFFD, []string{"a-000", "a-001", "a-002", "a-003", "b-000", "b-001"}},
		// positions: a at 1/8, 3/8, 5/8, 7/8; b at 1/4, 3/4.
		{StrategyInterleaved, []string{"a-000", "b-000", "a-001", "a-002", "b-001", "a-003"}},
	}
	for _, tc := range cases {
		if diff := cmp.Diff(tc.want, render(placementOrder([]*shape{a, b}, tc.strategy))); diff != "" {
			t.Errorf("strategy %d (-want +got):\n%s", tc.strategy, diff)
		}
	}
}
