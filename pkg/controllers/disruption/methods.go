package disruption

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/stowage-k8s/stowage/pkg/solver"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Method is one disruption policy. The controller asks each method in
// priority order which candidates it wants (ShouldDisrupt) and then for one
// command over those (ComputeCommand); the first non-empty command wins the pass.
type Method interface {
	// Name labels logs and events: "expiry", "drift", "emptiness", ...
	Name() string
	// Reason selects the budgets that apply.
	Reason() v1.DisruptionReason
	ShouldDisrupt(e *Evaluation, c *Candidate) bool
	// ComputeCommand returns the command to run, or an empty one. candidates
	// passed ShouldDisrupt; budgets are enforced through e.
	ComputeCommand(ctx context.Context, e *Evaluation, candidates []*Candidate) (Command, error)
}

// Action is what a command does with its candidates.
type Action string

// Actions, the values of the action metric label.
const (
	ActionDelete  Action = "delete"
	ActionReplace Action = "replace"
)

// Command is one decision: drain Candidates once Replacements are Ready.
type Command struct {
	Method string
	Reason v1.DisruptionReason
	// Candidates to delete.
	Candidates []*Candidate
	// Replacements to launch (and see Ready) first; empty for a plain delete.
	Replacements []*solver.NewNode
	// Bindings are where the what-if put candidates' pods on nodes that
	// stay. The scheduler makes the real placement; these explain the plan.
	Bindings []solver.Binding
	// SavingsPerHour is the candidates' price less the replacements'. It is
	// negative when an expired or drifted node's replacement costs more.
	SavingsPerHour float64
	// Forceful commands ignore blockers and budgets (expiry past its grace).
	Forceful bool
}

// IsEmpty reports whether the command does nothing.
func (c Command) IsEmpty() bool { return len(c.Candidates) == 0 }

// Action is delete or replace.
func (c Command) Action() Action {
	if len(c.Replacements) > 0 {
		return ActionReplace
	}
	return ActionDelete
}

// Key identifies a decision across passes: the same candidates replaced by
// the same kind of machines. A price that flaps changes the key.
func (c Command) Key() string {
	var b strings.Builder
	b.WriteString(c.Method)
	for _, cand := range c.Candidates {
		b.WriteString("|" + cand.Name())
	}
	for _, r := range c.Replacements {
		if len(r.Choices) > 0 {
			ch := r.Choices[0]
			fmt.Fprintf(&b, "|+%s/%s/%s", ch.InstanceType.Name, ch.Offering.Zone, ch.Offering.CapacityType)
		}
	}
	return b.String()
}

func (c Command) String() string {
	names := make([]string, 0, len(c.Candidates))
	for _, cand := range c.Candidates {
		names = append(names, cand.Name())
	}
	var repl []string
	for _, r := range c.Replacements {
		if len(r.Choices) > 0 {
			repl = append(repl, fmt.Sprintf("%s %s", r.Choices[0].InstanceType.Name, r.Choices[0].Offering.CapacityType))
		}
	}
	s := fmt.Sprintf("%s %s [%s]", c.Method, c.Action(), strings.Join(names, ", "))
	if len(repl) > 0 {
		s += " with [" + strings.Join(repl, ", ") + "]"
	}
	return s + fmt.Sprintf(", saving $%.4f/h", c.SavingsPerHour)
}

// Evaluation is what methods share during one pass.
type Evaluation struct {
	State     *ClusterState
	Simulator *Simulator
	Guard     ChurnGuard
	// allowed returns how many more nodes of pool may be disrupted for reason.
	allowed func(pool *v1.NodePool, reason v1.DisruptionReason) int
}

// NewEvaluation prepares a pass over st. Budgets come from
// AllowedDisruptions; a pool whose budgets do not parse disrupts nothing.
func NewEvaluation(st *ClusterState, sim *Simulator, guard ChurnGuard) *Evaluation {
	return &Evaluation{State: st, Simulator: sim, Guard: guard, allowed: budgetFunc(st, nil)}
}

// budgetFunc memoizes AllowedDisruptions per pool and reason for one pass;
// report, when set, sees every answer and every error.
func budgetFunc(st *ClusterState, report func(pool *v1.NodePool, reason v1.DisruptionReason, n int, err error)) func(*v1.NodePool, v1.DisruptionReason) int {
	memo := map[string]int{}
	return func(pool *v1.NodePool, reason v1.DisruptionReason) int {
		key := pool.Name + "/" + string(reason)
		if n, ok := memo[key]; ok {
			return n
		}
		total, disrupting := st.PoolNodes(pool.Name)
		n, err := AllowedDisruptions(pool, reason, total, disrupting, st.Now)
		if err != nil {
			n = 0
		}
		memo[key] = n
		if report != nil {
			report(pool, reason, n, err)
		}
		return n
	}
}

// Now is the pass's time.
func (e *Evaluation) Now() time.Time { return e.State.Now }

// Allowed returns how many more nodes of pool may be disrupted for reason.
func (e *Evaluation) Allowed(pool *v1.NodePool, reason v1.DisruptionReason) int {
	if e.allowed == nil {
		return 0
	}
	return e.allowed(pool, reason)
}

// withinBudgets keeps candidates, in order, while each pool's budget for
// reason lasts.
func (e *Evaluation) withinBudgets(reason v1.DisruptionReason, candidates []*Candidate) []*Candidate {
	left := map[string]int{}
	var out []*Candidate
	for _, c := range candidates {
		n, seen := left[c.Pool.Name]
		if !seen {
			n = e.Allowed(c.Pool, reason)
		}
		if n > 0 {
			out = append(out, c)
			n--
		}
		left[c.Pool.Name] = n
	}
	return out
}

// replacementCost sums the first-choice price of new nodes.
func replacementCost(nodes []*solver.NewNode) float64 {
	var sum float64
	for _, n := range nodes {
		sum += n.PricePerHour()
	}
	return sum
}

func priceOf(cands []*Candidate) float64 {
	var sum float64
	for _, c := range cands {
		sum += c.PricePerHour
	}
	return sum
}

// byDisruptionCost orders candidates cheapest to disrupt first: fewer pods
// to move, then lower price per pod, then name for determinism.
func byDisruptionCost(cands []*Candidate) {
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if len(a.Pods) != len(b.Pods) {
			return len(a.Pods) < len(b.Pods)
		}
		if a.PricePerHour != b.PricePerHour {
			return a.PricePerHour > b.PricePerHour
		}
		return a.Name() < b.Name()
	})
}
