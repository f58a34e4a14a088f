package solver

import (
	"context"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// TestTypeCacheGivesTheSamePlans solves several snapshots over the same
// pools, catalog and DaemonSet pods (as disruption's what-ifs do) with one
// shared TypeCache, in an order where a solve that trims a resource no pod
// of its own requests comes between two that need it, and checks each plan
// against the same snapshot solved without the cache.
func TestTypeCacheGivesTheSamePlans(t *testing.T) {
	const fpga = corev1.ResourceName("example.com/fpga")
	withFPGA := makeIT(itSpec{name: "f1", cpu: 8, memGi: 32, price: 1.5})
	withFPGA.Capacity[fpga] = resource.MustParse("2")
	fixed := &Snapshot{
		Pods:          concat(makePods(3, "fpga", "1", "2Gi", extended(fpga, 1)), makePods(6, "web", "500m", "1Gi")),
		NodePools:     []*NodePool{makePool("default", append(gpuCatalog(), withFPGA), withLimit(ResourceNodes, "20"))},
		DaemonSetPods: []*corev1.Pod{makePod("ds", "100m", "128Mi")},
	}
	snaps := []*Snapshot{fixed}
	for seed := range 20 {
		snaps = append(snaps, randomSnapshot(rand.New(rand.NewPCG(uint64(seed), 11))))
	}
	for i, base := range snaps {
		cache := NewTypeCache(base.DaemonSetPods)
		half := len(base.Pods) / 2
		for j, pods := range [][]*corev1.Pod{base.Pods, base.Pods[half:], base.Pods[:half], base.Pods} {
			snap := *base
			snap.Pods = pods
			want, err := Solve(context.Background(), &snap)
			if err != nil {
				t.Fatal(err)
			}
			snap.Types = cache
			got, err := Solve(context.Background(), &snap)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := summarize(got), summarize(want); g != w {
				t.Fatalf("snapshot %d, pod set %d: with the cache\n%s\nwithout\n%s", i, j, g, w)
			}
		}
		if len(cache.types) == 0 || len(cache.pods) == 0 {
			t.Errorf("snapshot %d: the cache was never filled (%d types, %d pods)", i, len(cache.types), len(cache.pods))
		}
	}

	// A cache made for other DaemonSet pods is not used.
	other := NewTypeCache(nil)
	snap := *fixed
	snap.Types = other
	if _, err := Solve(context.Background(), &snap); err != nil {
		t.Fatal(err)
	}
	if len(other.types) != 0 {
		t.Errorf("a cache for other DaemonSet pods was filled with %d entries", len(other.types))
	}
}
