package disruption

import (
	"context"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Emptiness deletes nodes that have run no pod but DaemonSets for the pool's
// consolidateAfter. It is the only method a WhenEmpty pool allows.
type Emptiness struct{}

var _ Method = Emptiness{}

// Name implements Method.
func (Emptiness) Name() string { return "emptiness" }

// Reason implements Method.
func (Emptiness) Reason() v1.DisruptionReason { return v1.DisruptionReasonEmpty }

// ShouldDisrupt implements Method.
func (Emptiness) ShouldDisrupt(_ *Evaluation, c *Candidate) bool {
	return len(c.Pods) == 0 && c.Blocked == "" && settled(c)
}

// ComputeCommand deletes every empty candidate the budgets allow at once:
// nothing has to move, so there is nothing to simulate.
func (m Emptiness) ComputeCommand(_ context.Context, e *Evaluation, cands []*Candidate) (Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	byDisruptionCost(sorted)
	in := e.withinBudgets(m.Reason(), sorted)
	if len(in) == 0 {
		return Command{}, nil
	}
	return Command{Method: m.Name(), Reason: m.Reason(), Candidates: in, SavingsPerHour: priceOf(in)}, nil
}

// settled reports whether the node's pods have been unchanged for the pool's
// consolidateAfter; Never turns consolidation off.
func settled(c *Candidate) bool {
	after := c.Pool.Spec.Disruption.ConsolidateAfter.Duration
	return after != nil && c.StableFor >= *after
}

// consolidatesUnderutilized reports whether the pool lets Stowage move pods
// to save money, not only remove empty nodes. The API defaults the policy to
// WhenEmptyOrUnderutilized.
func consolidatesUnderutilized(pool *v1.NodePool) bool {
	p := pool.Spec.Disruption.ConsolidationPolicy
	return p == "" || p == v1.ConsolidationPolicyWhenEmptyOrUnderutilized
}
