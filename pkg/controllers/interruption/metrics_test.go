package interruption

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// One event from the cloud is one event in interruption_events_total, however
// often its handling is retried (here: it came before the claim's
// providerID was written, and was tried again until it was).
func TestRetriedEventIsCountedOnce(t *testing.T) {
	e := newEnv(t, 1, func(c *v1.NodeClaim) { c.Status.ProviderID = "" })
	kind := cloudprovider.InterruptionReservationReclaim
	before := testutil.ToFloat64(eventsTotal.WithLabelValues(string(kind)))
	ev := e.event(kind, start.Add(2*time.Minute))
	lists := &countingLists{Client: e.client}
	stop := e.run(t, lists, ev)
	until := time.Now().Add(10 * time.Second)
	for lists.n.Load() < 4 { // two attempts, two lists each
		if time.Now().After(until) {
			t.Fatal("the event was never retried")
		}
		if e.clock.HasWaiters() {
			e.clock.Step(time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	claim := &v1.NodeClaim{}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	claim.Status.ProviderID = pid
	if err := e.client.Status().Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	for {
		e.get(t, claim, client.ObjectKey{Name: "c1"})
		if conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted) {
			break
		}
		if time.Now().After(until) {
			t.Fatal("the event was not handled once the claim had its providerID")
		}
		if e.clock.HasWaiters() {
			e.clock.Step(time.Second)
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	if got := testutil.ToFloat64(eventsTotal.WithLabelValues(string(kind))) - before; got != 1 {
		t.Errorf("interruption_events_total{kind=%q} grew by %v for one event, want 1", kind, got)
	}
}
