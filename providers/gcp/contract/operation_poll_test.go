package contract

import (
	"context"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TestOperationPollFailureIsNoCapacityError: the insert was accepted (the VM
// exists) but polling its operation hit a read-rate quota (403
// quotaExceeded). Only the operation's own error codes say the zone had no
// capacity: Create must fail without trying the next zone, or it buys a
// second VM.
func TestOperationPollFailureIsNoCapacityError(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := claim("poll-fails", offering("e2-standard-4", "us-central1-a", v1.CapacityTypeOnDemand),
		offering("e2-standard-4", "us-central1-b", v1.CapacityTypeOnDemand))
	e.srv.FailNextWith("compute.zoneOperations.get", 403, "quotaExceeded")
	_, err := e.provider.Create(ctx, c)
	if n := len(e.srv.Inserted()); n != 1 {
		t.Fatalf("%d VMs inserted after the failed operation poll, want 1 (err %v)", n, err)
	}
	if err == nil || cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("Create = %v, want a plain error", err)
	}
	a := cloudprovider.OfferingID{InstanceType: "e2-standard-4", Zone: "us-central1-a", CapacityType: v1.CapacityTypeOnDemand}
	if e.provider.Unavailable().IsUnavailable(a) {
		t.Error("the zone whose VM was made is marked out of capacity")
	}
	got, err := e.provider.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Inserted()); n != 1 || got.Status.Zone != "us-central1-a" {
		t.Errorf("after the retry: %d VMs inserted, launched in %s; want the one in us-central1-a", n, got.Status.Zone)
	}
}
