package disruption

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// Method is one disruption policy. Each pass the controller asks each method
// in priority order which candidates it wants (ShouldDisrupt) and then for
// commands over those (ComputeCommands); a command is carried out only once
// a later pass, after the validation delay, finds it still holds (Recompute).
type Method interface {
	// Name labels logs and events: "expiry", "drift", "emptiness", ...
	Name() string
	// Reason selects the budgets that apply.
	Reason() v1.DisruptionReason
	ShouldDisrupt(e *Evaluation, c *Candidate) bool
	// ComputeCommands returns commands with disjoint candidates, each
	// reserved in e (Evaluation.Reserve) as it is found, so later what-ifs
	// of the pass see it and budgets count it. candidates passed ShouldDisrupt.
	ComputeCommands(ctx context.Context, e *Evaluation, candidates []*Candidate) ([]Command, error)
	// Recompute plans cmd again on fresh state (its candidates are fresh):
	// the command to run now, or why it no longer holds.
	Recompute(ctx context.Context, e *Evaluation, cmd Command) (Command, string, error)
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

// Evaluation is what methods share during one pass: the state, the what-if
// simulator, and what the commands decided so far in the pass take (their
// candidates, their share of each pool's budget, their effect on the cluster).
type Evaluation struct {
	State     *ClusterState
	Simulator *Simulator
	Guard     ChurnGuard
	// limit returns the budget's cap on disrupted nodes of pool for reason.
	limit func(pool *v1.NodePool, reason v1.DisruptionReason) int

	overlay  Overlay
	reserved map[string]bool    // claim names of candidates of decided commands
	taken    map[string]int     // pool -> nodes decided this pass
	refused  map[string]refusal // claim name -> the first method that wanted it and did not take it
	gangs    *gangIndex         // where gangs run; built on first use
}

// runsGang reports whether a pod of a gang runs on the candidate's node.
func (e *Evaluation) runsGang(c *Candidate) bool {
	var g scheduling.Gangs
	if e.Simulator != nil {
		g = e.Simulator.Gangs
	}
	return len(e.gangIndex(g).of[c.Node.Name]) > 0
}

// gangIndex is where the state's gangs run, indexed once per pass: the
// pass's gangs are recognised alike everywhere.
func (e *Evaluation) gangIndex(g scheduling.Gangs) *gangIndex {
	if e.gangs == nil {
		e.gangs = indexGangs(e.State, g)
	}
	return e.gangs
}

// NewEvaluation prepares a pass over st. Budgets come from
// AllowedDisruptions; a pool whose budgets do not parse disrupts nothing.
func NewEvaluation(st *ClusterState, sim *Simulator, guard ChurnGuard) *Evaluation {
	return newEvaluation(st, sim, guard, nil)
}

func newEvaluation(st *ClusterState, sim *Simulator, guard ChurnGuard, report func(pool *v1.NodePool, reason v1.DisruptionReason, n int, err error)) *Evaluation {
	return &Evaluation{State: st, Simulator: sim, Guard: guard, limit: budgetLimits(st, report),
		reserved: map[string]bool{}, taken: map[string]int{}, refused: map[string]refusal{}}
}

// budgetLimits memoizes each pool's budget cap per reason for one pass;
// report, when set, sees every answer and every error.
func budgetLimits(st *ClusterState, report func(pool *v1.NodePool, reason v1.DisruptionReason, n int, err error)) func(*v1.NodePool, v1.DisruptionReason) int {
	memo := map[string]int{}
	return func(pool *v1.NodePool, reason v1.DisruptionReason) int {
		key := pool.Name + "/" + string(reason)
		if n, ok := memo[key]; ok {
			return n
		}
		total, _, _ := st.PoolNodes(pool.Name)
		n, err := AllowedDisruptions(pool, reason, total, 0, st.Now)
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

// Allowed returns how many more nodes of pool may be disrupted for reason:
// the budget's cap less the nodes already being disrupted, the nodes that
// are not Ready (they are unavailable already; repair, which is about them,
// does not count them) and the nodes decided earlier in the pass.
func (e *Evaluation) Allowed(pool *v1.NodePool, reason v1.DisruptionReason) int {
	if e.limit == nil {
		return 0
	}
	_, disrupting, notReady := e.State.PoolNodes(pool.Name)
	busy := disrupting + e.taken[pool.Name]
	if reason != v1.DisruptionReasonUnhealthy {
		busy += notReady
	}
	return max(0, e.limit(pool, reason)-busy)
}

// Reserved reports whether a command of this pass already took the candidate.
func (e *Evaluation) Reserved(c *Candidate) bool { return e.reserved[c.Claim.Name] }

// refusal is why a method that wanted a candidate for reason did not take it.
type refusal struct {
	reason v1.DisruptionReason
	why    string
}

// Refuse records why a method that wants the candidate for reason does not
// disrupt it (its pods would have no place, no replacement saves enough),
// for the candidate's DisruptionBlocked event. The first refusal of a pass
// stands: methods run in priority order.
func (e *Evaluation) Refuse(c *Candidate, reason v1.DisruptionReason, why string) {
	if _, ok := e.refused[c.Claim.Name]; !ok {
		e.refused[c.Claim.Name] = refusal{reason, why}
	}
}

// Reserve records a decided command: its candidates are taken, its nodes
// count against their pools' budgets, and later what-ifs see its effect.
func (e *Evaluation) Reserve(cmd Command) {
	for _, c := range cmd.Candidates {
		e.reserved[c.Claim.Name] = true
		e.taken[c.Pool.Name]++
	}
	e.overlay.Add(cmd)
	spent := map[string]float64{}
	for _, r := range cmd.Replacements {
		if len(r.Choices) > 0 && r.Choices[0].Offering.Commitment != "" {
			spent[r.Choices[0].Offering.Commitment] += r.Choices[0].Offering.CommitmentCost
		}
	}
	e.State.SpendCommitments(spent)
}

// simulate is a what-if on top of the commands decided so far.
func (e *Evaluation) simulate(ctx context.Context, cands []*Candidate) (*Simulation, error) {
	return e.Simulator.Simulate(ctx, e.State, cands, &e.overlay)
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

// fitsBudgets reports whether every candidate of cmd still fits its pool's budget.
func (e *Evaluation) fitsBudgets(cmd Command) bool {
	if cmd.Forceful {
		return true
	}
	need := map[*v1.NodePool]int{}
	for _, c := range cmd.Candidates {
		need[c.Pool]++
	}
	for pool, n := range need {
		if e.Allowed(pool, cmd.Reason) < n {
			return false
		}
	}
	return true
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
