package fake

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func TestCapacityErrorRate(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Faults = Faults{CapacityErrorRate: 1, Seed: 1} })
	_, err := e.cloud.Create(context.Background(), newClaim("a", choice("m.large", zoneA, v1.CapacityTypeSpot)))
	if !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("Create with a capacity error rate of 1: %v, want an insufficient capacity error", err)
	}
	if n := len(e.records(t)); n != 0 {
		t.Errorf("%d machines launched despite the capacity error", n)
	}
}

// A lost response leaves the machine running; the retry finds it.
func TestLostLaunchResponse(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(o *Options) { o.Faults = Faults{LostLaunchRate: 1, Seed: 1} })
	claim := newClaim("a", choice("m.large", zoneA, v1.CapacityTypeSpot))
	if _, err := e.cloud.Create(ctx, claim); !errors.Is(err, ErrLaunchResponseLost) {
		t.Fatalf("Create: %v, want ErrLaunchResponseLost", err)
	}
	if n := len(e.records(t)); n != 1 {
		t.Fatalf("%d machines after a lost response, want the one launched", n)
	}
	got, err := e.cloud.Create(ctx, claim)
	if err != nil || got.Status.ProviderID == "" {
		t.Fatalf("retried Create: %+v, %v; want the machine of the first call", got, err)
	}
	if n := len(e.records(t)); n != 1 {
		t.Errorf("%d machines after the retry, want 1", n)
	}
}

func TestFaultsValidate(t *testing.T) {
	e := newEnv(t, nil)
	_, err := New(Options{Client: e.client, Catalog: testCatalog(), Faults: Faults{LostLaunchRate: 1.5}})
	if err == nil {
		t.Error("New accepted a LostLaunchRate of 1.5")
	}
}

// Interruptions and prices asked for by another process, through the cluster.
func TestControlThroughTheCluster(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := newEnv(t, nil)
	claim := newClaim("a", choice("m.large", zoneA, v1.CapacityTypeSpot))
	launched, err := e.cloud.Create(ctx, claim)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := parseProviderID(launched.Status.ProviderID)
	if err != nil {
		t.Fatal(err)
	}
	deadline := e.clock.Now().Add(time.Minute)
	if err := RequestInterruption(ctx, e.client, inst, cloudprovider.InterruptionSpotReclaim, deadline); err != nil {
		t.Fatal(err)
	}
	price := id("m.large", zoneA, v1.CapacityTypeSpot)
	if err := SetPrices(ctx, e.client, []PriceOverride{{ID: price, PricePerHour: 0.5}}); err != nil {
		t.Fatal(err)
	}
	events, err := e.cloud.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	delivered := map[string]time.Time{}
	step := func() {
		t.Helper()
		if err := e.cloud.applyPrices(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.cloud.applyInterruptions(ctx, delivered); err != nil {
			t.Fatal(err)
		}
	}
	step()
	ev := <-events
	if ev.ProviderID != launched.Status.ProviderID || ev.Kind != cloudprovider.InterruptionSpotReclaim || !ev.Deadline.Equal(deadline.Truncate(time.Second)) {
		t.Errorf("event = %+v, want a spot reclaim of %s at %s", ev, launched.Status.ProviderID, deadline)
	}
	if got := e.cloud.currentPrice(price); got != 0.5 {
		t.Errorf("price after SetPrices = %v, want 0.5", got)
	}
	// Not acknowledged: sent again once RedeliverAfter has passed, not before.
	step()
	e.clock.Step(RedeliverAfter)
	step()
	select {
	case again := <-events:
		if err := again.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an unacknowledged interruption was not delivered again")
	}
	select {
	case extra := <-events:
		t.Fatalf("delivered more than twice: %+v", extra)
	default:
	}
	// At the deadline the machine is taken, Node and record.
	e.clock.Step(time.Minute)
	step()
	for _, cm := range e.records(t) {
		if cm.Name != PricesConfigMap {
			t.Errorf("instance record %s is still there after the deadline; want the machine reclaimed", cm.Name)
		}
	}
	if err := e.client.Get(ctx, client.ObjectKey{Name: inst}, &corev1.Node{}); client.IgnoreNotFound(err) != nil || err == nil {
		t.Errorf("the Node of the reclaimed machine is still there (get: %v)", err)
	}
}
