package disruption

import (
	"context"
	"sort"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Expiry replaces nodes older than their claim's expireAfter. It waits for
// budgets and blockers until terminationGracePeriod has also passed; after
// that the node goes regardless, as the pool asked.
type Expiry struct{}

var _ Method = Expiry{}

// Name implements Method.
func (Expiry) Name() string { return "expiry" }

// Reason implements Method.
func (Expiry) Reason() v1.DisruptionReason { return v1.DisruptionReasonExpired }

// ShouldDisrupt implements Method.
func (Expiry) ShouldDisrupt(e *Evaluation, c *Candidate) bool {
	at, ok := expiresAt(c)
	return ok && !e.Now().Before(at)
}

// ComputeCommand replaces the longest-expired candidate, one per pass, so
// each what-if sees the capacity the previous replacement took.
func (m Expiry) ComputeCommand(ctx context.Context, e *Evaluation, cands []*Candidate) (Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, _ := expiresAt(sorted[i])
		b, _ := expiresAt(sorted[j])
		return a.Before(b)
	})
	var pick *Candidate
	forceful := false
	for _, c := range sorted {
		if forcefullyExpired(e.Now(), c) {
			pick, forceful = c, true
			break
		}
	}
	if pick == nil {
		ok := make([]*Candidate, 0, len(sorted))
		for _, c := range sorted {
			if c.Blocked == "" {
				ok = append(ok, c)
			}
		}
		if in := e.withinBudgets(m.Reason(), ok); len(in) > 0 {
			pick = in[0]
		}
	}
	if pick == nil {
		return Command{}, nil
	}
	sim, err := e.Simulator.Simulate(ctx, e.State, []*Candidate{pick})
	if err != nil {
		return Command{}, err
	}
	if !sim.Feasible() {
		// The node goes anyway: provisioning retries the pods that found no plan.
		log.FromContext(ctx).Info("expired node's pods do not all fit; replacing what fits",
			"nodeclaim", pick.Name(), "unschedulable", len(sim.Plan.Unschedulable))
	}
	return Command{
		Method:         m.Name(),
		Reason:         m.Reason(),
		Candidates:     []*Candidate{pick},
		Replacements:   sim.Plan.NewNodes,
		Bindings:       sim.Plan.Bindings,
		SavingsPerHour: pick.PricePerHour - sim.Plan.CostPerHour,
		Forceful:       forceful,
	}, nil
}

func expiresAt(c *Candidate) (time.Time, bool) {
	d := c.Claim.Spec.ExpireAfter.Duration
	if d == nil {
		return time.Time{}, false
	}
	return c.Claim.CreationTimestamp.Add(*d), true
}

// forcefullyExpired reports whether the claim has been expired for longer
// than its terminationGracePeriod.
func forcefullyExpired(now time.Time, c *Candidate) bool {
	at, ok := expiresAt(c)
	tgp := c.Claim.Spec.TerminationGracePeriod
	return ok && tgp != nil && !now.Before(at.Add(tgp.Duration))
}
