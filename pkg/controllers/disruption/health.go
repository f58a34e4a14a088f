package disruption

import (
	"context"
	"sort"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Health replaces nodes whose Ready condition has been False or Unknown (the
// kubelet stopped reporting) for their pool's repairAfter. Pod blockers do
// not hold a broken node: its pods are not running anyway. Budgets do, under
// the Unhealthy reason, which does not count the NotReady nodes themselves.
type Health struct{}

var _ Method = Health{}

// Name implements Method.
func (Health) Name() string { return "repair" }

// Reason implements Method.
func (Health) Reason() v1.DisruptionReason { return v1.DisruptionReasonUnhealthy }

// ShouldDisrupt implements Method.
func (Health) ShouldDisrupt(e *Evaluation, c *Candidate) bool {
	since, ok := unhealthySince(c)
	return ok && !e.Now().Before(since)
}

// unhealthySince is when the candidate becomes due for repair.
func unhealthySince(c *Candidate) (time.Time, bool) {
	after := c.Pool.Spec.Disruption.RepairAfter.Duration
	if after == nil {
		return time.Time{}, false
	}
	since, notReady := notReadySince(c.Node)
	if !notReady {
		return time.Time{}, false
	}
	return since.Add(*after), true
}

// ComputeCommands replaces the longest-broken nodes first, one command each,
// as the budgets allow.
func (m Health) ComputeCommands(ctx context.Context, e *Evaluation, cands []*Candidate) ([]Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, _ := unhealthySince(sorted[i])
		b, _ := unhealthySince(sorted[j])
		return a.Before(b)
	})
	var out []Command
	for _, c := range sorted {
		if len(out) == MaxCommandsPerMethod {
			break
		}
		if e.Allowed(c.Pool, m.Reason()) <= 0 {
			continue
		}
		cmd, _, err := m.Recompute(ctx, e, Command{Method: m.Name(), Reason: m.Reason(), Candidates: []*Candidate{c}})
		if err != nil {
			return out, err
		}
		e.Reserve(cmd)
		out = append(out, cmd)
	}
	return out, nil
}

// Recompute implements Method. The node goes even when not all its pods fit
// elsewhere: provisioning plans those that found no place.
func (m Health) Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error) {
	sim, err := e.simulate(ctx, cmd.Candidates)
	if err != nil {
		return Command{}, "", err
	}
	cmd.Replacements, cmd.Bindings = sim.Plan.NewNodes, sim.Plan.Bindings
	cmd.SavingsPerHour = priceOf(cmd.Candidates) - sim.Plan.CostPerHour
	return cmd, "", nil
}
