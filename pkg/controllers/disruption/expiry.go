package disruption

import (
	"context"
	"sort"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	claimconditions "github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/disruption"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// MaxCommandsPerMethod bounds the what-ifs expiry, drift and repair run in
// one pass; the next pass continues with fresh state.
const MaxCommandsPerMethod = 25

// Expiry replaces nodes whose claim is Expired (older than expireAfter). It
// waits for budgets and blockers until terminationGracePeriod has also
// passed; after that the node goes regardless, as the pool asked.
type Expiry struct{}

var _ Method = Expiry{}

// Name implements Method.
func (Expiry) Name() string { return "expiry" }

// Reason implements Method.
func (Expiry) Reason() v1.DisruptionReason { return v1.DisruptionReasonExpired }

// ShouldDisrupt implements Method: the Expired condition, checked against
// the claim's age so a condition not yet cleared is not trusted.
func (Expiry) ShouldDisrupt(e *Evaluation, c *Candidate) bool {
	at, ok := claimconditions.ExpiresAt(c.Claim)
	return ok && !e.Now().Before(at) && conditions.IsTrue(c.Claim.Status.Conditions, v1.ConditionExpired)
}

// ComputeCommands replaces expired candidates, longest expired first, one
// command each: forcefully expired ones regardless of budgets and blockers,
// the others as the budgets allow.
func (m Expiry) ComputeCommands(ctx context.Context, e *Evaluation, cands []*Candidate) ([]Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, _ := claimconditions.ExpiresAt(sorted[i].Claim)
		b, _ := claimconditions.ExpiresAt(sorted[j].Claim)
		return a.Before(b)
	})
	var out []Command
	for _, c := range sorted {
		if len(out) == MaxCommandsPerMethod {
			break
		}
		forceful := forcefullyExpired(e.Now(), c)
		if !forceful && (c.Blocked != "" || e.Allowed(c.Pool, m.Reason()) <= 0) {
			continue
		}
		cmd, _, err := m.Recompute(ctx, e, Command{Method: m.Name(), Reason: m.Reason(), Candidates: []*Candidate{c}, Forceful: forceful})
		if err != nil {
			return out, err
		}
		e.Reserve(cmd)
		out = append(out, cmd)
	}
	return out, nil
}

// Recompute implements Method: the expired node goes even when not all its
// pods fit elsewhere; provisioning plans those that found no place.
func (m Expiry) Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error) {
	// A blocker that appeared while the command waited to be validated
	// holds it, until the node is forcefully expired.
	if c := cmd.Candidates[0]; c.Blocked != "" && !forcefullyExpired(e.Now(), c) {
		return Command{}, c.Blocked, nil
	}
	sim, err := e.simulate(ctx, cmd.Candidates)
	if err != nil {
		return Command{}, "", err
	}
	if !sim.Feasible() {
		log.FromContext(ctx).Info("expired node's pods do not all fit; replacing what fits",
			"nodeclaim", cmd.Candidates[0].Name(), "unschedulable", len(sim.Plan.Unschedulable))
	}
	cmd.Replacements, cmd.Bindings = sim.Plan.NewNodes, sim.Plan.Bindings
	cmd.SavingsPerHour = priceOf(cmd.Candidates) - sim.Plan.CostPerHour
	cmd.Forceful = forcefullyExpired(e.Now(), cmd.Candidates[0])
	return cmd, "", nil
}

// forcefullyExpired reports whether the claim has been expired for longer
// than its terminationGracePeriod.
func forcefullyExpired(now time.Time, c *Candidate) bool {
	at, ok := claimconditions.ExpiresAt(c.Claim)
	tgp := c.Claim.Spec.TerminationGracePeriod
	return ok && tgp != nil && !now.Before(at.Add(tgp.Duration))
}
