package termination

import (
	"strings"
	"testing"

	"k8s.io/client-go/tools/events"
)

// An eviction the API server refuses for a reason other than a budget (a
// pod under two PodDisruptionBudgets, a webhook) holds the drain as long as
// it lasts. The user must be able to see why on the pod, as for a PDB
// (EvictionBlocked), not only in the controller's log.
func TestFailedEvictionIsVisibleOnThePod(t *testing.T) {
	e := newEnv(t, nil, pod("web"))
	e.evictFails.Store(true)
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	rec := e.ctrl.claims.events.r.(*events.FakeRecorder)
	var seen []string
	for len(rec.Events) > 0 {
		ev := <-rec.Events
		seen = append(seen, ev)
		if strings.HasPrefix(ev, "Warning EvictionFailed") && strings.Contains(ev, "webhook refused the eviction") {
			return
		}
	}
	t.Errorf("no Warning EvictionFailed event with the API server's answer; events: %q", seen)
}
