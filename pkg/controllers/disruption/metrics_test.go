package disruption

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// budgetSeries counts the stowage_disruption_budget_allowed_nodes series of a pool.
func budgetSeries(t *testing.T, pool string) int {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(budgetAllowed); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "nodepool" && l.GetValue() == pool {
					n++
				}
			}
		}
	}
	return n
}

// A deleted NodePool's budget series must go: left behind, it reports
// forever that the pool may still disrupt its last allowed count of nodes.
func TestPassForgetsBudgetSeriesOfDeletedPools(t *testing.T) {
	p := pool("audit-gone")
	e := newEnv(t, objects(p, mach("a", 1, v1.CapacityTypeOnDemand))...)
	e.pass(t)
	if got := budgetSeries(t, "audit-gone"); got == 0 {
		t.Fatalf("no budget series for the pool after the first pass")
	}
	mustT(t, e.client.Delete(context.Background(), p))
	e.pass(t)
	if got := budgetSeries(t, "audit-gone"); got != 0 {
		t.Errorf("%d stowage_disruption_budget_allowed_nodes series left for a deleted NodePool, want 0", got)
	}
}
