package disruption

import (
	"context"
	"fmt"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	claimconditions "github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/disruption"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
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
func (Emptiness) ShouldDisrupt(e *Evaluation, c *Candidate) bool {
	return len(c.Pods) == 0 && c.Blocked == "" && c.Ready && settled(e, c)
}

// ComputeCommands deletes every empty candidate the budgets allow, in one
// command: nothing has to move, so there is nothing to simulate. A node
// that pods are to land on (another command's of the pass, or a draining
// node's) is not empty for this.
func (m Emptiness) ComputeCommands(ctx context.Context, e *Evaluation, cands []*Candidate) ([]Command, error) {
	sorted := make([]*Candidate, 0, len(cands))
	for _, c := range cands {
		awaits, err := awaited(ctx, e, c)
		if err != nil {
			return nil, err
		}
		if !awaits {
			sorted = append(sorted, c)
		}
	}
	byDisruptionCost(sorted)
	in := e.withinBudgets(m.Reason(), sorted)
	if len(in) == 0 {
		return nil, nil
	}
	cmd, _, err := m.Recompute(ctx, e, Command{Method: m.Name(), Reason: m.Reason(), Candidates: in})
	if err != nil {
		return nil, err
	}
	e.Reserve(cmd)
	return []Command{cmd}, nil
}

// Recompute implements Method; the candidates are fresh, so still empty,
// but pods may be on their way to one since the decision: a command
// carried out before it in the pass moves them there, or a node that
// started draining will.
func (m Emptiness) Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error) {
	for _, c := range cmd.Candidates {
		awaits, err := awaited(ctx, e, c)
		if err != nil {
			return Command{}, "", err
		}
		if awaits {
			return Command{}, fmt.Sprintf("pods are to land on nodeclaim %s", c.Name()), nil
		}
	}
	cmd.Replacements, cmd.Bindings = nil, nil
	cmd.SavingsPerHour = priceOf(cmd.Candidates)
	return cmd, "", nil
}

// awaited reports whether pods are to land on c's node: a command decided
// earlier in the pass moves them there, or they are still to leave a going
// node and their room is there (see Simulator.held). Deleting it would
// send them to Pending though their command found them a place.
func awaited(ctx context.Context, e *Evaluation, c *Candidate) (bool, error) {
	if len(e.overlay.bound[c.Node.Name]) > 0 {
		return true, nil
	}
	if e.Simulator == nil {
		return false, nil
	}
	held, err := e.Simulator.held(ctx, e.State)
	return len(held[c.Node.Name]) > 0, err
}

// settled reports whether the node's pods have been unchanged for the pool's
// consolidateAfter (never before it was initialized): its Consolidatable
// condition, checked against the claim's own times so a condition not yet
// cleared after a pod arrived is not trusted. Never turns consolidation off.
func settled(e *Evaluation, c *Candidate) bool {
	at, ok := claimconditions.ConsolidatableAt(c.Pool, c.Claim)
	return ok && !e.Now().Before(at) && conditions.IsTrue(c.Claim.Status.Conditions, v1.ConditionConsolidatable)
}

// consolidatesUnderutilized reports whether the pool lets Stowage move pods
// to save money, not only remove empty nodes. The API defaults the policy to
// WhenEmptyOrUnderutilized.
func consolidatesUnderutilized(pool *v1.NodePool) bool {
	p := pool.Spec.Disruption.ConsolidationPolicy
	return p == "" || p == v1.ConsolidationPolicyWhenEmptyOrUnderutilized
}
