package termination

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/tools/events"
)

// The API server answers 429 both for a PodDisruptionBudget that allows no
// eviction and for API Priority and Fairness shedding load. Only the first
// is a budget holding the drain: reporting throttling as EvictionBlocked,
// and counting it as blocked, sends the user looking for a PDB that is not
// there. Throttling is retried at the drain's pace all the same.
func TestThrottledEvictionIsNotABudgetBlock(t *testing.T) {
	for _, tc := range []struct {
		name        string
		set         func(*env)
		wantBlocked bool
	}{
		{"pdb", func(e *env) { e.pdbBlocks.Store(true) }, true},
		{"priority and fairness", func(e *env) { e.throttled.Store(true) }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil, pod("web"))
			tc.set(e)
			blocked := testutil.ToFloat64(evictionsTotal.WithLabelValues(outcomeBlocked))
			res, err := e.reconcileClaim(t)
			if err != nil || res.RequeueAfter == 0 {
				t.Fatalf("result %+v, error %v; want a requeue after the drain interval and no error", res, err)
			}
			rec := e.ctrl.claims.events.r.(*events.FakeRecorder)
			var seen []string
			sawBlocked := false
			for len(rec.Events) > 0 {
				ev := <-rec.Events
				seen = append(seen, ev)
				sawBlocked = sawBlocked || strings.HasPrefix(ev, "Warning "+reasonEvictionBlocked)
			}
			if sawBlocked != tc.wantBlocked {
				t.Errorf("EvictionBlocked event = %v, want %v; events: %q", sawBlocked, tc.wantBlocked, seen)
			}
			if counted := testutil.ToFloat64(evictionsTotal.WithLabelValues(outcomeBlocked)) > blocked; counted != tc.wantBlocked {
				t.Errorf("counted as blocked = %v, want %v", counted, tc.wantBlocked)
			}
			if left := e.podsLeft(t); len(left) != 1 {
				t.Fatalf("pods left %v, want web still there", left)
			}
			e.pdbBlocks.Store(false)
			e.throttled.Store(false)
			e.reconcileUntilGone(t, 5, 0)
			if left := e.podsLeft(t); len(left) != 0 || len(e.cloud.Deleted()) != 1 {
				t.Errorf("once evictions succeed: pods %v left, %d machines deleted; want none and 1", left, len(e.cloud.Deleted()))
			}
		})
	}
}
