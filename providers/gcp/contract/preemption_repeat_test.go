package contract

import (
	"context"
	"testing"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
)

// TestPreemptionIsNotRepeatedAnHourLater: a preemption operation stays in
// the zone's operation list; once its dedupe entry ages out it must not be
// delivered again as a fresh spot reclaim.
func TestPreemptionIsNotRepeatedAnHourLater(t *testing.T) {
	e := start(t, func(o *gcpprovider.Options) { o.Interruption.PollInterval = time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spot, err := e.provider.Create(ctx, claim("spot-3", offering("g2-standard-4", "us-central1-a", v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := e.provider.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		for range ch {
		}
	}()
	if err := e.srv.Preempt("spot-3"); err != nil {
		t.Fatal(err)
	}
	step := func(d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !e.clock.HasWaiters() {
			if time.Now().After(deadline) {
				t.Fatal("the source never waited on its timer")
			}
			time.Sleep(10 * time.Millisecond)
		}
		e.clock.Step(d)
	}
	got := false
	deadline := time.After(20 * time.Second)
	for !got {
		select {
		case ev := <-ch:
			if ev.Kind != cloudprovider.InterruptionSpotReclaim || ev.ProviderID != spot.Status.ProviderID {
				t.Fatalf("event %+v", ev)
			}
			got = true
		case <-deadline:
			t.Fatal("no spot reclaim")
		case <-time.After(50 * time.Millisecond):
			if e.clock.HasWaiters() {
				e.clock.Step(time.Second)
			}
		}
	}
	step(61 * time.Minute)
	for range 3 {
		step(time.Second)
		select {
		case ev := <-ch:
			t.Fatalf("the hour-old preemption was delivered again: %+v", ev)
		case <-time.After(300 * time.Millisecond):
		}
	}
}
