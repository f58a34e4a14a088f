package disruption

import (
	"context"

	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// Drift replaces nodes whose claim is Drifted: its pool's requirements,
// labels, taints or nodeClassRef changed since it was launched, or the
// provider reports the machine out of date with its node class (see
// pkg/controllers/nodeclaim/disruption, which sets the condition).
type Drift struct{}

var _ Method = Drift{}

// Name implements Method.
func (Drift) Name() string { return "drift" }

// Reason implements Method.
func (Drift) Reason() v1.DisruptionReason { return v1.DisruptionReasonDrifted }

// ShouldDisrupt implements Method.
func (Drift) ShouldDisrupt(_ *Evaluation, c *Candidate) bool {
	return c.Blocked == "" && conditions.IsTrue(c.Claim.Status.Conditions, v1.ConditionDrifted)
}

// ComputeCommands replaces drifted candidates, cheapest to disrupt first, as
// many as the budgets allow, one command each, skipping those whose pods
// would have no place.
func (m Drift) ComputeCommands(ctx context.Context, e *Evaluation, cands []*Candidate) ([]Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	byDisruptionCost(sorted)
	var out []Command
	for _, c := range sorted {
		if len(out) == MaxCommandsPerMethod {
			break
		}
		if e.Allowed(c.Pool, m.Reason()) <= 0 {
			continue
		}
		cmd, why, err := m.Recompute(ctx, e, Command{Method: m.Name(), Reason: m.Reason(), Candidates: []*Candidate{c}})
		if err != nil {
			return out, err
		}
		if why != "" {
			log.FromContext(ctx).V(1).Info("not replacing drifted node", "nodeclaim", c.Name(), "why", why)
			e.Refuse(c, m.Reason(), why)
			continue
		}
		e.Reserve(cmd)
		out = append(out, cmd)
	}
	return out, nil
}

// Recompute implements Method.
func (m Drift) Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error) {
	sim, err := e.simulate(ctx, cmd.Candidates)
	if err != nil {
		return Command{}, "", err
	}
	if !sim.Feasible() {
		return Command{}, noPlace(sim), nil
	}
	cmd.Replacements, cmd.Bindings = sim.Plan.NewNodes, sim.Plan.Bindings
	cmd.SavingsPerHour = priceOf(cmd.Candidates) - sim.Plan.CostPerHour
	return cmd, "", nil
}
