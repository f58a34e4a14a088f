package cloudprovider

import (
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

func TestUnavailableOfferingsExpire(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	u := NewUnavailableOfferings(clk, time.Minute)
	id := OfferingID{InstanceType: "p5.48xlarge", Zone: "us-east-1a", CapacityType: "spot"}
	other := OfferingID{InstanceType: "p5.48xlarge", Zone: "us-east-1b", CapacityType: "spot"}
	u.MarkUnavailable(id)
	if !u.IsUnavailable(id) {
		t.Fatal("offering just marked must be unavailable")
	}
	if u.IsUnavailable(other) {
		t.Fatal("only the named pool may be marked")
	}
	its := []*InstanceType{{Name: "p5.48xlarge", Offerings: []Offering{
		{Zone: "us-east-1a", CapacityType: "spot", Available: true},
		{Zone: "us-east-1b", CapacityType: "spot", Available: true},
	}}}
	u.Apply(its)
	if its[0].Offerings[0].Available || !its[0].Offerings[1].Available {
		t.Fatalf("Apply marked the wrong offerings: %+v", its[0].Offerings)
	}
	clk.Step(time.Minute)
	if u.IsUnavailable(id) {
		t.Fatal("entry must expire after its ttl")
	}
}

func TestUnavailableOfferingsPerEntryTTL(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	u := NewUnavailableOfferings(clk, time.Minute)
	long := OfferingID{InstanceType: "Standard_ND96isr_H100_v5", Zone: "eastus-1", CapacityType: "on-demand"}
	short := OfferingID{InstanceType: "Standard_ND96isr_H100_v5", Zone: "eastus-2", CapacityType: "on-demand"}
	u.MarkUnavailableFor(time.Hour, long)
	u.MarkUnavailableFor(5*time.Minute, short)
	// A generic mark after the specific one must not shorten it.
	u.MarkUnavailable(long, short)
	clk.Step(10 * time.Minute)
	if !u.IsUnavailable(long) {
		t.Fatal("an hour-long entry expired after 10 minutes: a later default mark shortened it")
	}
	if u.IsUnavailable(short) {
		t.Fatal("a 5-minute entry is still unavailable after 10 minutes")
	}
	u.MarkUnavailableFor(time.Minute, short)
	clk.Step(49 * time.Minute)
	if !u.IsUnavailable(long) {
		t.Fatal("the hour-long entry expired early")
	}
	clk.Step(time.Minute)
	if u.IsUnavailable(long) || u.IsUnavailable(short) {
		t.Fatal("entries must expire after their own ttl")
	}
}

func TestInsufficientCapacityErrorWrapping(t *testing.T) {
	id := OfferingID{InstanceType: "g5.xlarge", Zone: "us-east-1a", CapacityType: "on-demand"}
	err := NewInsufficientCapacityError(nil, id)
	wrapped := fmtErr(err)
	if !IsInsufficientCapacity(wrapped) {
		t.Fatal("wrapped error must still be insufficient capacity")
	}
	if got := InsufficientCapacityOfferings(wrapped); len(got) != 1 || got[0] != id {
		t.Fatalf("offerings = %v", got)
	}
	if IsNotFound(wrapped) || !IsNotFound(fmtErr(NewNotFoundError("fake://i-1"))) {
		t.Fatal("IsNotFound must tell the kinds apart")
	}
}

func fmtErr(err error) error { return &wrapErr{err} }

type wrapErr struct{ err error }

func (w *wrapErr) Error() string { return "launching: " + w.err.Error() }
func (w *wrapErr) Unwrap() error { return w.err }
