package disruption

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// Bounds on the work one consolidation pass does.
const (
	// MaxSingleNodeSimulations caps the what-ifs single-node consolidation
	// runs per pass; the next pass continues with fresh state.
	MaxSingleNodeSimulations = 50
	// MaxMultiNodeCandidates caps the prefix multi-node consolidation searches.
	MaxMultiNodeCandidates = 100
	// MaxConsolidationCommands caps the consolidation commands decided in
	// one pass; more follow in later passes, each pool within its budget.
	MaxConsolidationCommands = 3
)

// consolidatable is what both consolidation methods require of a candidate.
// A node running a gang's pods is left out: a gang is never consolidated
// pod by pod, and a command holding it would be dropped after it took the
// pass's other candidates and budget.
func consolidatable(e *Evaluation, c *Candidate) bool {
	return len(c.Pods) > 0 && c.Blocked == "" && c.Ready && consolidatesUnderutilized(c.Pool) && settled(e, c) &&
		!e.runsGang(c)
}

// SingleNode deletes a node whose pods fit on the others, or replaces it
// with one cheaper node that holds them.
type SingleNode struct{}

var _ Method = SingleNode{}

// Name implements Method.
func (SingleNode) Name() string { return "single-node" }

// Reason implements Method.
func (SingleNode) Reason() v1.DisruptionReason { return v1.DisruptionReasonUnderutilized }

// ShouldDisrupt implements Method.
func (SingleNode) ShouldDisrupt(e *Evaluation, c *Candidate) bool { return consolidatable(e, c) }

// ComputeCommands implements Method with at most one command.
func (m SingleNode) ComputeCommands(ctx context.Context, e *Evaluation, cands []*Candidate) ([]Command, error) {
	return one(e)(m.ComputeCommand(ctx, e, cands))
}

// Recompute implements Method.
func (m SingleNode) Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error) {
	return consolidate(ctx, e, m.Name(), cmd.Candidates)
}

// one reserves and wraps a single command.
func one(e *Evaluation) func(Command, error) ([]Command, error) {
	return func(cmd Command, err error) ([]Command, error) {
		if err != nil || cmd.IsEmpty() {
			return nil, err
		}
		e.Reserve(cmd)
		return []Command{cmd}, nil
	}
}

// ComputeCommand tries candidates cheapest to disrupt first and returns the
// first that saves money.
func (m SingleNode) ComputeCommand(ctx context.Context, e *Evaluation, cands []*Candidate) (Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	byDisruptionCost(sorted)
	sims := 0
	for _, c := range sorted {
		if e.Allowed(c.Pool, m.Reason()) <= 0 {
			continue
		}
		if sims == MaxSingleNodeSimulations {
			break
		}
		sims++
		cmd, why, err := consolidate(ctx, e, m.Name(), []*Candidate{c})
		if err != nil {
			return Command{}, err
		}
		if why != "" {
			log.FromContext(ctx).V(1).Info("not consolidating", "nodeclaim", c.Name(), "why", why)
			e.Refuse(c, m.Reason(), why)
			continue
		}
		return cmd, nil
	}
	return Command{}, nil
}

// MultiNode replaces several nodes with fewer or cheaper ones: a binary
// search for the longest prefix of the candidates, cheapest to disrupt first,
// whose pods fit on the rest plus at most one new node for less.
type MultiNode struct{}

var _ Method = MultiNode{}

// Name implements Method.
func (MultiNode) Name() string { return "multi-node" }

// Reason implements Method.
func (MultiNode) Reason() v1.DisruptionReason { return v1.DisruptionReasonUnderutilized }

// ShouldDisrupt implements Method.
func (MultiNode) ShouldDisrupt(e *Evaluation, c *Candidate) bool { return consolidatable(e, c) }

// ComputeCommands implements Method with at most one command.
func (m MultiNode) ComputeCommands(ctx context.Context, e *Evaluation, cands []*Candidate) ([]Command, error) {
	return one(e)(m.ComputeCommand(ctx, e, cands))
}

// Recompute implements Method.
func (m MultiNode) Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error) {
	return consolidate(ctx, e, m.Name(), cmd.Candidates)
}

// ComputeCommand implements Method. Feasibility is not strictly monotonic in
// the prefix length, so the search may miss a longer valid prefix; it never
// returns an invalid one.
func (m MultiNode) ComputeCommand(ctx context.Context, e *Evaluation, cands []*Candidate) (Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	byDisruptionCost(sorted)
	sorted = e.withinBudgets(m.Reason(), sorted)
	if len(sorted) > MaxMultiNodeCandidates {
		sorted = sorted[:MaxMultiNodeCandidates]
	}
	if len(sorted) < 2 {
		return Command{}, nil
	}
	var best Command
	lo, hi := 2, len(sorted)
	for lo <= hi {
		mid := (lo + hi) / 2
		cmd, why, err := consolidate(ctx, e, m.Name(), sorted[:mid])
		if err != nil {
			return Command{}, err
		}
		if why == "" {
			// Longer groups are searched on, but kept only when better:
			// a longer one may launch a machine to save less.
			if better(cmd, best) {
				best = cmd
			}
			lo = mid + 1
		} else {
			hi = mid - 1
		}
	}
	return best, nil
}

// consolidate simulates removing cands and returns the command, or why
// there is none.
func consolidate(ctx context.Context, e *Evaluation, method string, cands []*Candidate) (Command, string, error) {
	sim, err := e.simulate(ctx, cands)
	if err != nil {
		return Command{}, "", err
	}
	if !sim.Feasible() {
		return Command{}, noPlace(sim), nil
	}
	cmd := Command{Method: method, Reason: v1.DisruptionReasonUnderutilized, Candidates: cands, Bindings: sim.Plan.Bindings}
	switch len(sim.Plan.NewNodes) {
	case 0:
		// Moving pods for a node that costs next to nothing (a reservation,
		// a covered machine) is churn, not a saving.
		cmd.SavingsPerHour = priceOf(cands)
		if cmd.SavingsPerHour+savingsEpsilon < e.Guard.MinSavingsPerHour {
			return Command{}, fmt.Sprintf("deleting it saves $%.4f/h, below the minimum $%.2f/h", cmd.SavingsPerHour, e.Guard.MinSavingsPerHour), nil
		}
		return cmd, "", nil
	case 1:
		savings, why := e.Guard.AllowsReplace(e.Now(), cands, sim.Plan.NewNodes)
		if why != "" {
			return Command{}, why, nil
		}
		cmd.Replacements = []*solver.NewNode{e.Guard.Affordable(priceOf(cands), sim.Plan.NewNodes[0])}
		cmd.SavingsPerHour = savings
		return cmd, "", nil
	default:
		return Command{}, "its pods would need more than one new node", nil
	}
}

// Consolidation runs multi-node and single-node consolidation and keeps the
// better command: the larger saving, then fewer machines to launch, then
// fewer nodes to drain. Taking the first that finds something would, for two
// half-empty nodes, replace both when deleting one saves as much.
type Consolidation struct{}

var _ Method = Consolidation{}

// Name implements Method.
func (Consolidation) Name() string { return "consolidation" }

// Reason implements Method.
func (Consolidation) Reason() v1.DisruptionReason { return v1.DisruptionReasonUnderutilized }

// ShouldDisrupt implements Method.
func (Consolidation) ShouldDisrupt(e *Evaluation, c *Candidate) bool { return consolidatable(e, c) }

// ComputeCommands finds the best command, reserves it, and looks again
// among the candidates left, up to MaxConsolidationCommands: several pools,
// or several parts of one pool within its budget, consolidate at once.
func (m Consolidation) ComputeCommands(ctx context.Context, e *Evaluation, cands []*Candidate) ([]Command, error) {
	var out []Command
	left := cands
	for len(out) < MaxConsolidationCommands {
		cmd, err := m.ComputeCommand(ctx, e, left)
		if err != nil {
			return out, err
		}
		if cmd.IsEmpty() {
			break
		}
		e.Reserve(cmd)
		out = append(out, cmd)
		var rest []*Candidate
		for _, c := range left {
			if !e.Reserved(c) {
				rest = append(rest, c)
			}
		}
		left = rest
	}
	return out, nil
}

// Recompute implements Method: the same candidates, planned again by the
// search (single- or multi-node) that found them.
func (m Consolidation) Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error) {
	return consolidate(ctx, e, cmd.Method, cmd.Candidates)
}

// ComputeCommand implements Method. Multi-node consolidation runs over all
// candidates and over each pool's alone: the prefix search orders by
// disruption cost, so a cheap node of another pool at the head of the list
// can hide a merge within one pool.
func (Consolidation) ComputeCommand(ctx context.Context, e *Evaluation, cands []*Candidate) (Command, error) {
	best, err := SingleNode{}.ComputeCommand(ctx, e, cands)
	if err != nil {
		return Command{}, err
	}
	groups := [][]*Candidate{cands}
	byPool := map[string][]*Candidate{}
	var pools []string
	for _, c := range cands {
		if _, ok := byPool[c.Pool.Name]; !ok {
			pools = append(pools, c.Pool.Name)
		}
		byPool[c.Pool.Name] = append(byPool[c.Pool.Name], c)
	}
	if len(pools) > 1 {
		for _, p := range pools {
			if len(byPool[p]) > 1 {
				groups = append(groups, byPool[p])
			}
		}
	}
	for _, g := range groups {
		multi, err := MultiNode{}.ComputeCommand(ctx, e, g)
		if err != nil {
			return Command{}, err
		}
		if better(multi, best) {
			best = multi
		}
	}
	return best, nil
}

// better reports whether a is a better command than b.
func better(a, b Command) bool {
	switch {
	case a.IsEmpty():
		return false
	case b.IsEmpty():
		return true
	// Savings within a cent an hour are a tie: prices are not that exact.
	case a.SavingsPerHour > b.SavingsPerHour+0.01:
		return true
	case b.SavingsPerHour > a.SavingsPerHour+0.01:
		return false
	case len(a.Replacements) != len(b.Replacements):
		return len(a.Replacements) < len(b.Replacements)
	default:
		return len(a.Candidates) < len(b.Candidates)
	}
}
