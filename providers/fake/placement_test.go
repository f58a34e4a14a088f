package fake

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func placed(claim *v1.NodeClaim, group string) *v1.NodeClaim {
	claim.Spec.Placement = &v1.Placement{Group: group}
	return claim
}

func TestPlacement(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	if !cloudprovider.CapabilitiesOf(e.cloud).Placement {
		t.Fatal("the fake cloud must report the placement capability")
	}
	its, err := e.cloud.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range its {
		if want := it.GPU != nil; it.Placement != want {
			t.Errorf("%s: Placement = %v, want %v (GPU machines only)", it.Name, it.Placement, want)
		}
	}

	// The first machine of a group pins it to its zone; the next one skips
	// an offering elsewhere even when it is listed first.
	first, err := e.cloud.Create(ctx, placed(newClaim("m1", choice("g.xlarge", zoneB, v1.CapacityTypeOnDemand)), "train"))
	if err != nil {
		t.Fatalf("first member: %v", err)
	}
	second, err := e.cloud.Create(ctx, placed(newClaim("m2",
		choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand), choice("g.xlarge", zoneB, v1.CapacityTypeSpot)), "train"))
	if err != nil {
		t.Fatalf("second member: %v", err)
	}
	if first.Status.Zone != zoneB || second.Status.Zone != zoneB {
		t.Errorf("members in %s and %s, want both in the group's zone %s", first.Status.Zone, second.Status.Zone, zoneB)
	}
	for _, n := range e.nodes(t) {
		if n.Labels[LabelPlacementGroup] != "train" {
			t.Errorf("node %s has placement group label %q", n.Name, n.Labels[LabelPlacementGroup])
		}
	}
	got, err := e.cloud.Get(ctx, second.Status.ProviderID)
	if err != nil || got.Spec.Placement == nil || got.Spec.Placement.Group != "train" {
		t.Errorf("Get: placement %+v, %v", got.Spec.Placement, err)
	}

	// Only the group's zone: an error that is not a capacity shortage.
	_, err = e.cloud.Create(ctx, placed(newClaim("m3", choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand)), "train"))
	if err == nil || cloudprovider.IsInsufficientCapacity(err) || !strings.Contains(err.Error(), "placement group train is in zone "+zoneB) {
		t.Errorf("launch outside the group's zone: %v", err)
	}
	// A type that cannot be placed is refused the same way.
	_, err = e.cloud.Create(ctx, placed(newClaim("m4", choice("m.large", zoneB, v1.CapacityTypeOnDemand)), "train"))
	if err == nil || !strings.Contains(err.Error(), "cannot join placement group") {
		t.Errorf("unplaceable type: %v", err)
	}
	// Another group is free to start elsewhere.
	if other, err := e.cloud.Create(ctx, placed(newClaim("o1", choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand)), "other")); err != nil || other.Status.Zone != zoneA {
		t.Errorf("second group: %v in %s", err, other.Status.Zone)
	}
}

func TestLimitCapacity(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	pool := id("g.xlarge", zoneA, v1.CapacityTypeOnDemand)
	e.cloud.LimitCapacity(pool, 1)
	if _, err := e.cloud.Create(ctx, newClaim("a", choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand))); err != nil {
		t.Fatalf("first launch within the limit: %v", err)
	}
	_, err := e.cloud.Create(ctx, newClaim("b", choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand)))
	if !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("second launch: %v, want insufficient capacity", err)
	}
	e.cloud.ClearInsufficientCapacity()
	e.clock.Step(cloudprovider.DefaultUnavailableTTL + time.Second) // the pool leaves the unavailable cache
	if _, err := e.cloud.Create(ctx, newClaim("c", choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand))); err != nil {
		t.Errorf("after clearing: %v", err)
	}
}
