// Package disruption removes and replaces Stowage's nodes on purpose: expired
// and drifted nodes, empty nodes, and nodes whose pods could run for less
// elsewhere (consolidation). Every decision is a what-if on the same solver
// provisioning uses; replacements are launched and Ready before anything is
// drained, and NodePool budgets cap how many nodes go at once.
package disruption

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// Name is the controller's name in logs and metrics.
const Name = "disruption"

// Defaults for Options.
const (
	DefaultInterval           = 10 * time.Second
	DefaultReplacementTimeout = 15 * time.Minute
)

// Deps are the controller's dependencies.
type Deps struct {
	// Client reads through the manager's cache and writes NodeClaims and Nodes.
	Client        client.Client
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
	// Guard limits consolidation churn; DefaultChurnGuard when nil.
	Guard *ChurnGuard
	// Methods in priority order; DefaultMethods when nil.
	Methods []Method
	// GangSources are the workload kinds opted in as gangs, as provisioning's.
	GangSources map[scheduling.GangSource]bool
}

// DefaultMethods are the methods in priority order: expiry, drift,
// emptiness, then consolidation, which weighs the multi-node and single-node
// answers against each other rather than taking whichever runs first.
func DefaultMethods() []Method {
	return []Method{Expiry{}, Drift{}, Emptiness{}, Consolidation{}}
}

// Controller is the leader-elected disruption loop.
type Controller struct {
	client  client.Client
	sim     *Simulator
	clock   clock.WithTicker
	events  recorder
	opts    Options
	guard   ChurnGuard
	methods []Method

	mu sync.Mutex
	// stable tracks, per node, its set of pods and since when it is unchanged.
	stable map[string]podSet
	// proposal is the consolidation command the last pass proposed; it runs
	// only when the next pass proposes the same.
	proposal string
	// pending is the command waiting for its replacements.
	pending *pendingCommand
	// orphans are the nodes the last pass found tainted with no owner.
	orphans map[string]bool
}

type podSet struct {
	key   string
	since time.Time
}

type pendingCommand struct {
	cmd          Command
	replacements []string
	started      time.Time
	// seen records replacements the cache has shown: one it has not shown
	// yet is still on its way, one that was shown and is missing is gone.
	seen map[string]bool
}

// NewController builds the disruption controller.
func NewController(d Deps) *Controller {
	if d.Options.Interval <= 0 {
		d.Options.Interval = DefaultInterval
	}
	if d.Options.ReplacementTimeout <= 0 {
		d.Options.ReplacementTimeout = DefaultReplacementTimeout
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
		client:  d.Client,
		sim:     &Simulator{Solver: d.Solver, Cloud: d.CloudProvider, Reader: d.Client},
		clock:   d.Clock,
		events:  recorder{d.Recorder},
		opts:    d.Options,
		guard:   guard,
		methods: methods,
		stable:  map[string]podSet{},
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

// Pass runs one evaluation: it advances a command waiting for replacements,
// or else asks each method in order for a command and runs the first one.
func (c *Controller) Pass(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := ReadState(ctx, c.client, c.clock.Now())
	if err != nil {
		return err
	}
	c.observe(st)
	if c.pending != nil {
		// Orphans are judged on consecutive passes without a command.
		c.orphans = nil
		return c.progress(ctx, st)
	}
	if err := c.releaseOrphans(ctx, st); err != nil {
		return err
	}
	cands := BuildCandidates(st, c.stableFor(st.Now))
	e := &Evaluation{State: st, Simulator: c.sim, Guard: c.guard, allowed: c.budgets(ctx, st)}
	for _, m := range c.methods {
		var want []*Candidate
		for _, cand := range cands {
			if m.ShouldDisrupt(e, cand) {
				want = append(want, cand)
			}
		}
		eligibleNodes.WithLabelValues(m.Name()).Set(float64(len(want)))
		if len(want) == 0 {
			continue
		}
		cmd, err := m.ComputeCommand(ctx, e, want)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name(), err)
		}
		if cmd.IsEmpty() {
			continue
		}
		cmd, gangs, why, err := wholeGangs(ctx, e, cands, cmd, c.gangs())
		if err != nil {
			return fmt.Errorf("%s: %w", m.Name(), err)
		}
		if why != "" {
			log.FromContext(ctx).V(1).Info("not disrupting: a gang goes whole or not at all", "method", m.Name(), "why", why)
			continue
		}
		if cmd.Reason == v1.DisruptionReasonUnderutilized && cmd.Key() != c.proposal {
			// Consolidation is optional: act only on a decision seen on two
			// passes in a row, so a price that flaps causes no churn.
			c.proposal = cmd.Key()
			log.FromContext(ctx).V(1).Info("proposed disruption; confirming next pass", "command", cmd.String())
			return nil
		}
		c.proposal = ""
		if err := signalGangs(ctx, c.client, st, c.gangs(), gangs, GangSignal(cmd.Reason)); err != nil {
			return err
		}
		return c.execute(ctx, st, cmd)
	}
	c.proposal = ""
	return nil
}

// observe records when each node's set of pods last changed.
func (c *Controller) observe(st *ClusterState) {
	seen := map[string]bool{}
	for name := range st.Nodes {
		seen[name] = true
		var keys []string
		for _, p := range st.PodsByNode[name] {
			if reschedulable(p) {
				keys = append(keys, string(p.UID)+"/"+p.Namespace+"/"+p.Name)
			}
		}
		sort.Strings(keys)
		key := strings.Join(keys, ",")
		if old, ok := c.stable[name]; !ok || old.key != key {
			c.stable[name] = podSet{key: key, since: st.Now}
		}
	}
	for name := range c.stable {
		if !seen[name] {
			delete(c.stable, name)
		}
	}
}

func (c *Controller) stableFor(now time.Time) func(string) time.Duration {
	return func(node string) time.Duration {
		if s, ok := c.stable[node]; ok {
			return now.Sub(s.since)
		}
		return 0
	}
}

// budgets returns the pass's budget function, logging invalid budgets and
// exporting each answer as a gauge.
func (c *Controller) budgets(ctx context.Context, st *ClusterState) func(*v1.NodePool, v1.DisruptionReason) int {
	return budgetFunc(st, func(pool *v1.NodePool, reason v1.DisruptionReason, n int, err error) {
		if err != nil {
			log.FromContext(ctx).Error(err, "invalid disruption budget; disrupting nothing in the pool", "nodepool", pool.Name)
		}
		budgetAllowed.WithLabelValues(pool.Name, string(reason)).Set(float64(n))
	})
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
