// Package disruption removes and replaces Stowage's nodes on purpose:
// broken (repair), expired and drifted nodes, empty nodes, and nodes whose
// pods could run for less elsewhere (consolidation). Every decision is a
// what-if on the same solver provisioning uses, is validated again after a
// short wait before anything is touched, and runs as one of many commands in
// flight: replacements are launched and Ready before anything is drained,
// and NodePool budgets cap how many nodes go at once.
package disruption

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// Name is the controller's name in logs and metrics.
const Name = "disruption"

// Defaults for Options.
const (
	DefaultInterval           = 10 * time.Second
	DefaultReplacementTimeout = 15 * time.Minute
	// DefaultValidationDelay is how long a decision waits before it is
	// checked again and carried out: long enough for pods on their way to a
	// node to be bound, and for a flapping price to flap back.
	DefaultValidationDelay = 15 * time.Second
)

// Deps are the controller's dependencies.
type Deps struct {
	// Client reads through the manager's cache and writes NodeClaims and Nodes.
	Client client.Client
	// Cluster, when set, tells which nodes pods are nominated to; those are
	// never disrupted.
	Cluster       *state.Cluster
	CloudProvider InstanceTyper
	Solver        Solver
	Clock         clock.WithTicker
	Recorder      events.EventRecorder
	Options       Options
}

// Options tune the controller.
type Options struct {
	// Interval between passes.
	Interval time.Duration
	// ReplacementTimeout is how long a command waits for its replacements to
	// become Ready before it is abandoned and the candidates are kept.
	ReplacementTimeout time.Duration
	// ValidationDelay is how long a decision waits before it is validated
	// and carried out.
	ValidationDelay time.Duration
	// Guard limits consolidation churn; DefaultChurnGuard when nil.
	Guard *ChurnGuard
	// Methods in priority order; DefaultMethods when nil.
	Methods []Method
	// GangSources are the workload kinds opted in as gangs, as provisioning's.
	GangSources map[scheduling.GangSource]bool
}

// DefaultMethods are the methods in priority order: repair, expiry, drift,
// emptiness, then consolidation, which weighs the multi-node and
// single-node answers against each other rather than taking whichever runs
// first. A method earlier in the list takes candidates and budget first;
// every method decides in every pass.
func DefaultMethods() []Method {
	return []Method{Health{}, Expiry{}, Drift{}, Emptiness{}, Consolidation{}}
}

// Controller is the leader-elected disruption loop.
type Controller struct {
	client client.Client
	sim    *Simulator
	// cluster, when set, tells which pods are nominated where.
	cluster *state.Cluster
	clock   clock.WithTicker
	events  recorder
	opts    Options
	guard   ChurnGuard
	methods []Method

	mu sync.Mutex
	// proposals are decisions waiting for their validation, by command key.
	proposals map[string]*proposal
	// inflight are commands waiting for their replacements, by ID. They are
	// also recorded on the claims (see record.go), so a new leader resumes them.
	inflight map[string]*inflight
	// orphans are the nodes the last pass found tainted with no owner.
	orphans map[string]bool
	// blocked and refused are the DisruptionBlocked notes the last pass
	// stood by, per claim, for a blocker and for a method's refusal, so each
	// is sent once, not every pass; budgetBlocked the pool/reason pairs it
	// reported waiting for their budget. Each pass replaces them.
	blocked       map[string]string
	refused       map[string]refusal
	budgetBlocked map[poolReason]bool
	// budgetPools are the pools the last pass exported
	// stowage_disruption_budget_allowed_nodes for, so a pool that is gone
	// (deleted, or skipped as invalid) loses its series instead of keeping
	// its last value.
	budgetPools map[string]bool
}

// proposal is a decision made at a pass, to be validated at a later one.
type proposal struct {
	method Method
	cmd    Command
	at     time.Time
	// pods are each candidate's pods when decided, by claim name.
	pods map[string]string
}

// NewController builds the disruption controller.
func NewController(d Deps) *Controller {
	if d.Options.Interval <= 0 {
		d.Options.Interval = DefaultInterval
	}
	if d.Options.ReplacementTimeout <= 0 {
		d.Options.ReplacementTimeout = DefaultReplacementTimeout
	}
	if d.Options.ValidationDelay <= 0 {
		d.Options.ValidationDelay = DefaultValidationDelay
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Recorder == nil {
		d.Recorder = &events.FakeRecorder{}
	}
	guard := DefaultChurnGuard()
	if d.Options.Guard != nil {
		guard = *d.Options.Guard
	}
	methods := d.Options.Methods
	if methods == nil {
		methods = DefaultMethods()
	}
	c := &Controller{
		client:    d.Client,
		sim:       &Simulator{Solver: d.Solver, Cloud: d.CloudProvider, Reader: d.Client},
		clock:     d.Clock,
		events:    recorder{d.Recorder},
		opts:      d.Options,
		guard:     guard,
		methods:   methods,
		proposals: map[string]*proposal{},
		inflight:  map[string]*inflight{},
	}
	if d.Cluster != nil {
		c.cluster = d.Cluster
	}
	c.sim.Gangs = c.gangs()
	return c
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register adds the loop to mgr; it runs on the leader only.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if err := registerMetrics(); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	if err := mgr.Add(c); err != nil {
		return fmt.Errorf("registering %s loop: %w", Name, err)
	}
	return nil
}

// NeedLeaderElection keeps the loop on the leader: two deciders would each
// spend the budget.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start runs a pass every Interval until ctx is done.
func (c *Controller) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName(Name)
	ctx = log.IntoContext(ctx, logger)
	ticker := c.clock.NewTicker(c.opts.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
			if err := c.Pass(ctx); err != nil {
				logger.Error(err, "disruption pass failed; retrying next interval")
			}
		}
	}
}

// Pass runs one evaluation. It advances every command waiting for its
// replacements, carries out the decisions of earlier passes that still hold
// after the validation delay, and makes new decisions with the candidates
// and budget left.
func (c *Controller) Pass(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := ReadState(ctx, c.client, c.clock.Now())
	if err != nil {
		return err
	}
	var nominated Nominations
	if c.cluster != nil {
		st.NominatedPods, nominated = c.cluster.NominatedPods, c.cluster.HasNominatedPods
	}
	c.resume(ctx, st)
	progressErr := c.progressAll(ctx, st)
	orphanErr := c.releaseOrphans(ctx, st)

	cands := BuildCandidates(st, nominated)
	Reprice(ctx, st, c.sim.Cloud, cands)
	c.reportBlocked(cands)
	byName := make(map[string]*Candidate, len(cands))
	for _, cand := range cands {
		byName[cand.Name()] = cand
	}
	e := newEvaluation(st, c.sim, c.guard, c.reportBudget(ctx))
	execErr := c.validateAndRun(ctx, e, byName)

	c.holdPending(ctx, e, byName)
	decideErr := c.decide(ctx, e, cands)
	c.reportRefused(e, cands)
	c.reportBudgets(e, st, cands)
	inflightCommands.Set(float64(len(c.inflight)))
	exported := make(map[string]bool, len(st.Pools))
	for _, pool := range st.Pools {
		exported[pool.Name] = true
		for _, r := range []v1.DisruptionReason{v1.DisruptionReasonUnhealthy, v1.DisruptionReasonExpired,
			v1.DisruptionReasonDrifted, v1.DisruptionReasonEmpty, v1.DisruptionReasonUnderutilized} {
			budgetAllowed.WithLabelValues(pool.Name, string(r)).Set(float64(e.Allowed(pool, r)))
		}
	}
	for name := range c.budgetPools {
		if !exported[name] {
			budgetAllowed.DeletePartialMatch(prometheus.Labels{"nodepool": name})
		}
	}
	c.budgetPools = exported
	return joinErrs(progressErr, orphanErr, execErr, decideErr)
}

// reportBlocked sends a DisruptionBlocked event for each candidate that is
// drifted, expired or consolidatable but blocked (a do-not-disrupt pod or
// node, a PDB, a running Job, its minimum lifetime), once per claim for as
// long as the same thing blocks it. Whether consolidation would find a
// cheaper place for its pods is not asked: the event says what stops any
// method from trying.
func (c *Controller) reportBlocked(cands []*Candidate) {
	sent := map[string]string{}
	for _, cand := range cands {
		if cand.Blocked == "" {
			continue
		}
		var want []string
		for _, t := range []string{v1.ConditionDrifted, v1.ConditionExpired, v1.ConditionConsolidatable} {
			if conditions.IsTrue(cand.Claim.Status.Conditions, t) {
				want = append(want, t)
			}
		}
		if len(want) == 0 {
			continue
		}
		sent[cand.Name()] = cand.Blocked
		if c.blocked[cand.Name()] != cand.Blocked {
			c.events.blocked(cand, want, cand.Blocked)
		}
	}
	c.blocked = sent
}

// reportRefused sends a DisruptionBlocked event for each candidate a method
// wanted but did not take (drift: its pods would have no place;
// consolidation: that, or no replacement saves enough), once per claim and
// refusal. A refusal is kept while the candidate keeps the condition the
// method wanted it for and stays untaken, also through passes that did not
// look at it again (a budget, or consolidation stopping at its first
// command), so it is not announced anew each time it recurs. Notes that
// differ only in their figures (a saving that moved by a cent) are one.
func (c *Controller) reportRefused(e *Evaluation, cands []*Candidate) {
	sent := map[string]refusal{}
	for _, cand := range cands {
		name := cand.Name()
		if e.Reserved(cand) {
			continue
		}
		r, refused := e.refused[name]
		if !refused {
			if prev, ok := c.refused[name]; ok && conditions.IsTrue(cand.Claim.Status.Conditions, conditionOf(prev.reason)) {
				sent[name] = prev
			}
			continue
		}
		sent[name] = r
		if prev, ok := c.refused[name]; !ok || prev.reason != r.reason || withoutFigures(prev.why) != withoutFigures(r.why) {
			c.events.blocked(cand, []string{conditionOf(r.reason)}, r.why)
		}
	}
	c.refused = sent
}

// conditionOf is the NodeClaim condition that makes a node a candidate of
// the methods for reason.
func conditionOf(reason v1.DisruptionReason) string {
	if reason == v1.DisruptionReasonUnderutilized {
		return v1.ConditionConsolidatable
	}
	return string(reason) // Drifted and Expired are named alike
}

// withoutFigures is s with its digits dropped.
func withoutFigures(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, s)
}

// reportBudgets sends a DisruptionBudgetExhausted event on a pool when
// nodes that must go (unhealthy, expired or drifted ones nothing else
// blocks) wait because its budget for that reason has no room left after
// this pass's decisions; once when that starts, again only after it ended.
// Consolidation is left out: whether it would act is not known for nodes
// it did not weigh.
func (c *Controller) reportBudgets(e *Evaluation, st *ClusterState, cands []*Candidate) {
	waiting := map[poolReason]int{}
	pools := map[string]*v1.NodePool{}
	for _, m := range c.methods {
		r := m.Reason()
		if r != v1.DisruptionReasonUnhealthy && r != v1.DisruptionReasonExpired && r != v1.DisruptionReasonDrifted {
			continue
		}
		for _, cand := range cands {
			if e.Reserved(cand) || !m.ShouldDisrupt(e, cand) || e.refused[cand.Name()].reason == r ||
				(cand.Blocked != "" && r != v1.DisruptionReasonUnhealthy) {
				continue
			}
			waiting[poolReason{cand.Pool.Name, r}]++
			pools[cand.Pool.Name] = cand.Pool
		}
	}
	blocked := map[poolReason]bool{}
	for key, n := range waiting {
		pool := pools[key.pool]
		if e.Allowed(pool, key.reason) > 0 {
			continue
		}
		blocked[key] = true
		if !c.budgetBlocked[key] {
			_, disrupting, notReady := st.PoolNodes(pool.Name)
			c.events.budgetExhausted(pool, key.reason, n, disrupting+e.taken[pool.Name], notReady)
		}
	}
	c.budgetBlocked = blocked
}

// poolReason is a pool's budget for one disruption reason.
type poolReason struct {
	pool   string
	reason v1.DisruptionReason
}

// validateAndRun carries out the proposals whose validation delay has
// passed and that still hold, in method priority order, oldest first.
func (c *Controller) validateAndRun(ctx context.Context, e *Evaluation, byName map[string]*Candidate) error {
	var due []string
	for key, p := range c.proposals {
		if p.cmd.Reason != v1.DisruptionReasonUnderutilized && e.Now().Sub(p.at) >= c.opts.ValidationDelay {
			due = append(due, key)
		}
	}
	rank := map[string]int{}
	for i, m := range c.methods {
		rank[m.Name()] = i
	}
	sort.Slice(due, func(i, j int) bool {
		a, b := c.proposals[due[i]], c.proposals[due[j]]
		if rank[a.method.Name()] != rank[b.method.Name()] {
			return rank[a.method.Name()] < rank[b.method.Name()]
		}
		if !a.at.Equal(b.at) {
			return a.at.Before(b.at)
		}
		return due[i] < due[j]
	})
	all := make([]*Candidate, 0, len(byName))
	for _, cand := range byName {
		all = append(all, cand)
	}
	var errs []error
	for _, key := range due {
		p := c.proposals[key]
		delete(c.proposals, key)
		cmd, why, err := c.validate(ctx, e, p, byName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if why != "" {
			invalidatedTotal.WithLabelValues(string(p.cmd.Reason)).Inc()
			log.FromContext(ctx).Info("disruption no longer holds; not carried out", "command", p.cmd.String(), "why", why)
			continue
		}
		if err := c.runWhole(ctx, e, all, cmd); err != nil {
			errs = append(errs, err)
		}
	}
	return joinErrs(errs...)
}

// runWhole reserves and carries out cmd widened to whole gangs, after every
// pod of those gangs got the checkpoint signal; a gang that cannot go whole
// stops it.
func (c *Controller) runWhole(ctx context.Context, e *Evaluation, all []*Candidate, cmd Command) error {
	reason := cmd.Reason
	cmd, members, why, err := wholeGangs(ctx, e, all, cmd, c.gangs(), false)
	if err != nil {
		return err
	}
	if why != "" {
		invalidatedTotal.WithLabelValues(string(reason)).Inc()
		log.FromContext(ctx).Info("disruption not carried out: a gang goes whole or not at all", "why", why)
		return nil
	}
	e.Reserve(cmd)
	if err := signalGangs(ctx, c.client, e.State, c.gangs(), members, GangSignal(cmd.Reason)); err != nil {
		return err
	}
	return c.execute(ctx, e.State, cmd)
}

// holdPending keeps the decisions still waiting for their validation: they
// hold their candidates and budget. Consolidation decisions are not held:
// they are made afresh at every pass (see decide).
func (c *Controller) holdPending(_ context.Context, e *Evaluation, byName map[string]*Candidate) {
	keys := make([]string, 0, len(c.proposals))
	for key := range c.proposals {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		p := c.proposals[key]
		if p.cmd.Reason == v1.DisruptionReasonUnderutilized {
			continue
		}
		if fresh, ok := freshCandidates(p.cmd, byName); ok {
			held := p.cmd
			held.Candidates = fresh
			e.Reserve(held)
		}
	}
}

// validate checks a proposal against fresh state: every candidate is still
// one and still wanted by its method, consolidation and emptiness candidates
// still run the same pods, the budgets still allow it, and planning it again
// gives the same decision (for consolidation: the same replacement types).
// It returns the command to run, with fresh replacements, or why not.
func (c *Controller) validate(ctx context.Context, e *Evaluation, p *proposal, byName map[string]*Candidate) (Command, string, error) {
	fresh, ok := freshCandidates(p.cmd, byName)
	if !ok {
		return Command{}, "a candidate is no longer disruptable (gone, tainted, in use by pods on their way, or not initialized)", nil
	}
	for _, cand := range fresh {
		if e.Reserved(cand) {
			return Command{}, fmt.Sprintf("nodeclaim %s was taken by another command", cand.Name()), nil
		}
		if !p.method.ShouldDisrupt(e, cand) {
			return Command{}, fmt.Sprintf("%s no longer wants nodeclaim %s", p.method.Name(), cand.Name()), nil
		}
		if changesMatter(p.cmd.Reason) && cand.podSet() != p.pods[cand.Name()] {
			return Command{}, fmt.Sprintf("the pods on nodeclaim %s changed", cand.Name()), nil
		}
	}
	want := p.cmd
	want.Candidates = fresh
	if !e.fitsBudgets(want) {
		return Command{}, "the budgets no longer allow it", nil
	}
	cmd, why, err := p.method.Recompute(ctx, e, want)
	if err != nil || why != "" {
		return Command{}, why, err
	}
	if cmd.Reason == v1.DisruptionReasonUnderutilized && cmd.Key() != p.cmd.Key() {
		// Optional, so act only on a decision that stood for the whole
		// delay: a price that flaps causes no churn.
		return Command{}, "planning it again gives a different answer: " + cmd.String(), nil
	}
	return cmd, "", nil
}

// changesMatter says for which reasons a candidate's pods must not change
// between decision and validation: the ones that rely on how busy a node is.
func changesMatter(r v1.DisruptionReason) bool {
	return r == v1.DisruptionReasonEmpty || r == v1.DisruptionReasonUnderutilized
}

// freshCandidates maps a command's candidates to this pass's, by claim name.
func freshCandidates(cmd Command, byName map[string]*Candidate) ([]*Candidate, bool) {
	out := make([]*Candidate, 0, len(cmd.Candidates))
	for _, old := range cmd.Candidates {
		cand, ok := byName[old.Name()]
		if !ok {
			return nil, false
		}
		out = append(out, cand)
	}
	return out, true
}

// decide asks each method, in priority order, for commands among the
// candidates not yet taken, and records them as proposals.
//
// Consolidation is optional and its best answer moves with prices and with
// the cluster, so it is decided afresh at every pass: a command is carried
// out once it has been the answer at every pass for the validation delay. A
// price that flaps between passes, or a better command that appears (a
// second node became a candidate), restarts the wait instead of letting an
// older, worse decision run.
func (c *Controller) decide(ctx context.Context, e *Evaluation, cands []*Candidate) error {
	var errs []error
	current := map[string]bool{}
	for _, m := range c.methods {
		var want []*Candidate
		for _, cand := range cands {
			if e.Reserved(cand) || !m.ShouldDisrupt(e, cand) {
				continue
			}
			// A gang that cannot go whole now is left out before the
			// method takes its node: held at every pass, it would take
			// the budget of the nodes that can go.
			forceful := m.Reason() == v1.DisruptionReasonExpired && forcefullyExpired(e.Now(), cand)
			if why := gangHeld(e, cands, cand, m.Reason(), forceful, c.gangs()); why != "" {
				log.FromContext(ctx).V(1).Info("not disrupting: a gang goes whole or not at all", "method", m.Name(), "nodeclaim", cand.Name(), "why", why)
				e.Refuse(cand, m.Reason(), why)
				continue
			}
			want = append(want, cand)
		}
		eligibleNodes.WithLabelValues(m.Name()).Set(float64(len(want)))
		if len(want) == 0 {
			continue
		}
		cmds, err := m.ComputeCommands(ctx, e, want)
		for _, cmd := range cmds {
			cmd, _, why, gerr := wholeGangs(ctx, e, cands, cmd, c.gangs(), true)
			if gerr != nil {
				errs = append(errs, fmt.Errorf("%s: %w", m.Name(), gerr))
				continue
			}
			if why != "" {
				log.FromContext(ctx).V(1).Info("not disrupting: a gang goes whole or not at all", "method", m.Name(), "why", why)
				continue
			}
			key := cmd.Key()
			if old, ok := c.proposals[key]; ok && cmd.Reason == v1.DisruptionReasonUnderutilized {
				current[key] = true
				if e.Now().Sub(old.at) >= c.opts.ValidationDelay {
					delete(c.proposals, key)
					errs = append(errs, c.execute(ctx, e.State, cmd))
				}
				continue
			}
			if cmd.Reason == v1.DisruptionReasonUnderutilized {
				current[key] = true
			}
			p := &proposal{method: m, cmd: cmd, at: e.Now(), pods: map[string]string{}}
			for _, cand := range cmd.Candidates {
				p.pods[cand.Name()] = cand.podSet()
			}
			c.proposals[key] = p
			log.FromContext(ctx).V(1).Info("decided disruption; validating it after the delay", "command", cmd.String(),
				"delay", c.opts.ValidationDelay.String())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.Name(), err))
		}
	}
	for key, p := range c.proposals {
		if p.cmd.Reason == v1.DisruptionReasonUnderutilized && !current[key] {
			invalidatedTotal.WithLabelValues(string(p.cmd.Reason)).Inc()
			log.FromContext(ctx).V(1).Info("consolidation no longer the answer; not carried out", "command", p.cmd.String())
			delete(c.proposals, key)
		}
	}
	return joinErrs(errs...)
}

// reportBudget logs invalid budgets.
func (c *Controller) reportBudget(ctx context.Context) func(*v1.NodePool, v1.DisruptionReason, int, error) {
	return func(pool *v1.NodePool, _ v1.DisruptionReason, _ int, err error) {
		if err != nil {
			log.FromContext(ctx).Error(err, "invalid disruption budget; disrupting nothing in the pool", "nodepool", pool.Name)
		}
	}
}

// claimNamed finds a claim in the state.
func claimNamed(st *ClusterState, name string) *v1.NodeClaim {
	i := sort.Search(len(st.Claims), func(i int) bool { return st.Claims[i].Name >= name })
	if i < len(st.Claims) && st.Claims[i].Name == name {
		return st.Claims[i]
	}
	return nil
}

var disruptedTaint = corev1.Taint{Key: v1.DisruptedTaintKey, Effect: corev1.TaintEffectNoSchedule}
