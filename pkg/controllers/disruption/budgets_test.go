package disruption

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func TestAllowedDisruptions(t *testing.T) {
	// 2026-11-27 is a Friday.
	noon := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	business := v1.Budget{Nodes: "0", Schedule: ptr.To("0 9 * * mon-fri"), Duration: &metav1.Duration{Duration: 8 * time.Hour}}
	for _, tc := range []struct {
		name       string
		budgets    []v1.Budget
		reason     v1.DisruptionReason
		total      int
		disrupting int
		now        time.Time
		want       int
	}{
		{name: "default is 10% rounded up", total: 3, want: 1, now: noon},
		{name: "default on 40 nodes", total: 40, want: 4, now: noon},
		{name: "count", budgets: []v1.Budget{{Nodes: "5"}}, total: 40, want: 5, now: noon},
		{name: "count less those in progress", budgets: []v1.Budget{{Nodes: "5"}}, total: 40, disrupting: 3, want: 2, now: noon},
		{name: "never negative", budgets: []v1.Budget{{Nodes: "1"}}, total: 40, disrupting: 3, want: 0, now: noon},
		{name: "zero percent is zero", budgets: []v1.Budget{{Nodes: "0%"}}, total: 40, want: 0, now: noon},
		{name: "minimum of all budgets", budgets: []v1.Budget{{Nodes: "50%"}, {Nodes: "3"}}, total: 40, want: 3, now: noon},
		{name: "budget for another reason does not apply",
			budgets: []v1.Budget{{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}}},
			reason:  v1.DisruptionReasonEmpty, total: 10, want: 10, now: noon},
		{name: "budget for this reason applies",
			budgets: []v1.Budget{{Nodes: "0", Reasons: []v1.DisruptionReason{v1.DisruptionReasonDrifted}}},
			reason:  v1.DisruptionReasonDrifted, total: 10, want: 0, now: noon},
		{name: "inside business-hours freeze", budgets: []v1.Budget{{Nodes: "10"}, business}, total: 10, want: 0, now: noon},
		{name: "window start is inclusive", budgets: []v1.Budget{{Nodes: "10"}, business}, total: 10, want: 0,
			now: time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)},
		{name: "after the freeze window", budgets: []v1.Budget{{Nodes: "10"}, business}, total: 10, want: 10,
			now: time.Date(2026, 11, 27, 17, 0, 0, 0, time.UTC)},
		{name: "freeze is weekdays only", budgets: []v1.Budget{{Nodes: "10"}, business}, total: 10, want: 10,
			now: time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
			pool.Spec.Disruption.Budgets = tc.budgets
			reason := tc.reason
			if reason == "" {
				reason = v1.DisruptionReasonUnderutilized
			}
			got, err := AllowedDisruptions(pool, reason, tc.total, tc.disrupting, tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("AllowedDisruptions = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestScheduledBudgetsThatAbut: when one window ends as the next begins
// (@daily for 24h), the budget is active at every instant, the boundary
// included.
func TestScheduledBudgetsThatAbut(t *testing.T) {
	for _, tc := range []struct {
		schedule string
		duration time.Duration
		now      time.Time
	}{
		{"0 * * * *", time.Hour, time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)},
		{"0 * * * *", time.Hour, time.Date(2026, 1, 5, 10, 0, 0, 500_000_000, time.UTC)},
		{"@daily", 24 * time.Hour, time.Date(2026, 1, 5, 0, 0, 0, 900_000_000, time.UTC)},
		{"0 9 * * *", 25 * time.Hour, time.Date(2026, 1, 5, 9, 0, 0, 300_000_000, time.UTC)},
		{"0 9 * * *", 24 * time.Hour, time.Date(2026, 1, 5, 8, 59, 59, 0, time.UTC)},
	} {
		pool := &v1.NodePool{Spec: v1.NodePoolSpec{Disruption: v1.Disruption{Budgets: []v1.Budget{
			{Nodes: "0", Schedule: ptr.To(tc.schedule), Duration: &metav1.Duration{Duration: tc.duration}}}}}}
		n, err := AllowedDisruptions(pool, v1.DisruptionReasonDrifted, 10, 0, tc.now)
		if err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%q for %s at %s: %d allowed, want 0", tc.schedule, tc.duration, tc.now.Format(time.RFC3339Nano), n)
		}
	}
}

func TestAllowedDisruptionsErrorsNameTheBudget(t *testing.T) {
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	pool.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1"}, {Nodes: "1", Schedule: ptr.To("not a cron"), Duration: &metav1.Duration{Duration: time.Hour}}}
	_, err := AllowedDisruptions(pool, v1.DisruptionReasonEmpty, 10, 0, time.Now())
	if err == nil || !strings.Contains(err.Error(), "nodepool gpu: spec.disruption.budgets[1]") {
		t.Fatalf("error must name the pool and budget, got %v", err)
	}
}

// A percentage is of the pool's initialized nodes: a replacement that has
// registered but is not initialized yet is in flight, not one of the nodes
// the budget shares out. Counted, it would let a second node of ten go
// under 10% while the first one's replacement comes up.
func TestBudgetPercentageIgnoresNodesStillInitializing(t *testing.T) {
	now := start.Add(time.Hour)
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "10%"}} })
	var claims []*v1.NodeClaim
	var nodes []*corev1.Node
	for i := range 10 {
		c, n := machine(fmt.Sprintf("n%d", i), "p", catalog()[0], v1.CapacityTypeOnDemand, start)
		if i == 0 {
			n.Spec.Taints = []corev1.Taint{disruptedTaint} // being drifted away
		}
		claims, nodes = append(claims, c), append(nodes, n)
	}
	r, rn := machine("replacement", "p", catalog()[0], v1.CapacityTypeOnDemand, now)
	r.Status.Conditions = nil // registered, not initialized yet
	claims, nodes = append(claims, r), append(nodes, rn)
	st := stateOf(now, []*v1.NodePool{p}, claims, nodes, nil, nil)
	e := NewEvaluation(st, nil, DefaultChurnGuard())
	if got := e.Allowed(p, v1.DisruptionReasonDrifted); got != 0 {
		t.Errorf("Allowed = %d, want 0: 10%% of 10 nodes is 1, and one is being disrupted", got)
	}
}
