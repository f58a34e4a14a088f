package contract

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/azure"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
)

// TestReservedCapacityFromTheGroup offers a capacity reservation group's
// VMs as reserved, launches into the group, and counts what is left.
func TestReservedCapacityFromTheGroup(t *testing.T) {
	e := newEnv(t)
	crg := e.cloud.AddCapacityReservation("gpu-reserved", "Standard_NC24ads_A100_v4", "1", 2)
	e.nodeClass(t, "gpu", func(nc *azv1.AKSNodeClass) { nc.Spec.CapacityReservationGroup = crg })
	reserved := func() *cloudprovider.Offering {
		its, err := e.provider.InstanceTypes(e.ctx, pool("gpu"))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range byName(its)["Standard_NC24ads_A100_v4"].Offerings {
			if o.CapacityType == v1.CapacityTypeReserved {
				return &o
			}
		}
		return nil
	}
	o := reserved()
	if o == nil || o.Zone != "eastus-1" || o.ReservedCount != 2 || !o.Available || o.ReservationID != crg || o.PricePerHour >= 0.001 {
		t.Fatalf("reserved offering = %+v, want 2 left in eastus-1 at a near-zero price", o)
	}
	choice := v1.OfferingChoice{InstanceType: "Standard_NC24ads_A100_v4", Zone: "eastus-1", CapacityType: v1.CapacityTypeReserved, ReservationID: crg}
	got, err := e.provider.Create(e.ctx, claim("reserved-1", "gpu", choice))
	if err != nil {
		t.Fatal(err)
	}
	vm := e.vmsOf("reserved-1")[0]
	if !strings.EqualFold(vm.CapacityReservationGroup, crg) || got.Status.CapacityType != v1.CapacityTypeReserved || vm.Priority != "Regular" {
		t.Errorf("VM in group %q as %s (%s), want the reservation group", vm.CapacityReservationGroup, got.Status.CapacityType, vm.Priority)
	}
	if o := reserved(); o == nil || o.ReservedCount != 1 {
		t.Errorf("after one launch: %+v, want 1 reserved VM left", o)
	}
	if err := e.provider.Delete(e.ctx, got); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(azure.DefaultReservationTTL)
	if o := reserved(); o == nil || o.ReservedCount != 2 {
		t.Errorf("after the delete: %+v, want 2 again", o)
	}
}

// TestPlacementGroupsShareOneProximityPlacementGroup launches a gang's
// claims into one proximity placement group made on demand, and removes it
// once its last VM is gone.
func TestPlacementGroupsShareOneProximityPlacementGroup(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "train")
	if !e.provider.HonoursPlacement() || !cloudprovider.CapabilitiesOf(e.provider).Placement || !cloudprovider.CapabilitiesOf(e.provider).Drift {
		t.Fatal("the provider must declare placement and drift")
	}
	h100 := offering("Standard_ND96isr_H100_v5", "eastus-2", v1.CapacityTypeOnDemand)
	var launched []*v1.NodeClaim
	for _, name := range []string{"job-a-0", "job-a-1", "job-a-2"} {
		c := claim(name, "train", h100)
		c.Spec.Placement = &v1.Placement{Group: "job-a"}
		got, err := e.provider.Create(e.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		launched = append(launched, got)
	}
	ppgs := e.cloud.PPGs()
	want := "stowage-" + cluster + "-job-a"
	if len(ppgs) != 1 || ppgs[0] != want {
		t.Fatalf("proximity placement groups %v, want one named %s", ppgs, want)
	}
	for _, vm := range e.cloud.VMs() {
		if !strings.HasSuffix(vm.PPG, "/"+want) || vm.Zone != "2" {
			t.Errorf("VM %s in group %q zone %s", vm.Name, vm.PPG, vm.Zone)
		}
	}
	// A VM of the group in another zone cannot join: the group is pinned.
	other := claim("job-a-x", "train", offering("Standard_ND96isr_H100_v5", "eastus-1", v1.CapacityTypeOnDemand))
	other.Spec.Placement = &v1.Placement{Group: "job-a"}
	if _, err := e.provider.Create(e.ctx, other); !cloudprovider.IsInsufficientCapacity(err) {
		t.Errorf("joining the group from another zone: %v, want insufficient capacity", err)
	}
	// Claims without a placement group get none.
	solo, err := e.provider.Create(e.ctx, claim("solo", "train", h100))
	if err != nil {
		t.Fatal(err)
	}
	if vm := e.vmsOf("solo")[0]; vm.PPG != "" {
		t.Errorf("a claim without placement joined %s", vm.PPG)
	}
	for i, c := range launched {
		if err := e.provider.Delete(e.ctx, c); err != nil {
			t.Fatal(err)
		}
		left := e.cloud.PPGs()
		if i < len(launched)-1 && len(left) != 1 {
			t.Fatalf("group removed while %d VMs still use it", len(launched)-1-i)
		}
		if i == len(launched)-1 && len(left) != 0 {
			t.Errorf("group %v outlived its last VM", left)
		}
	}
	_ = solo
}

// TestNodeClassProximityPlacementGroup puts every VM of the class into the
// group it names, and never deletes that group.
func TestNodeClassProximityPlacementGroup(t *testing.T) {
	e := newEnv(t)
	ppg := e.cloud.AddProximityPlacementGroup("user-ppg")
	e.nodeClass(t, "train", func(nc *azv1.AKSNodeClass) { nc.Spec.ProximityPlacementGroup = ppg })
	c := claim("pinned", "train", offering("Standard_ND96isr_H100_v5", "eastus-1", v1.CapacityTypeOnDemand))
	c.Spec.Placement = &v1.Placement{Group: "job-b"}
	got, err := e.provider.Create(e.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if vm := e.vmsOf("pinned")[0]; !strings.EqualFold(vm.PPG, ppg) {
		t.Errorf("VM in %q, want the node class's group", vm.PPG)
	}
	if err := e.provider.Delete(e.ctx, got); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(time.Hour)
	if ppgs := e.cloud.PPGs(); len(ppgs) != 1 || ppgs[0] != "user-ppg" {
		t.Errorf("groups %v: the user's group must stay", ppgs)
	}
}

// TestSweepRemovesAbandonedGroups: a group whose launches all failed is
// left empty; the provider's periodic sweep removes it after a grace period.
func TestSweepRemovesAbandonedGroups(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "train")
	e.cloud.FailAllocation("Standard_ND96isr_H100_v5", "1", "Regular", "ZonalAllocationFailed", -1)
	c := claim("doomed", "train", offering("Standard_ND96isr_H100_v5", "eastus-1", v1.CapacityTypeOnDemand))
	c.Spec.Placement = &v1.Placement{Group: "job-c"}
	if _, err := e.provider.Create(e.ctx, c); !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("err = %v", err)
	}
	if len(e.cloud.PPGs()) != 1 {
		t.Fatalf("groups %v, want the empty one the failed launch made", e.cloud.PPGs())
	}
	sweep := func() {
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() { done <- e.provider.Start(ctx) }()
		waitFor(t, "a sweep", func() bool { return e.cloud.Calls("ProximityPlacementGroups.List") > 0 })
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	sweep()
	if len(e.cloud.PPGs()) != 1 {
		t.Fatal("a group younger than the grace period was swept")
	}
	e.clock.Step(11 * time.Minute)
	before := e.cloud.Calls("ProximityPlacementGroups.List")
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.provider.Start(ctx) }()
	waitFor(t, "the second sweep", func() bool { return e.cloud.Calls("ProximityPlacementGroups.List") > before })
	waitFor(t, "the group to go", func() bool { return len(e.cloud.PPGs()) == 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
