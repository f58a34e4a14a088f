package solver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// Strategy selects how new nodes are sized.
type Strategy int

const (
	// StrategyBest runs every strategy below and keeps the best plan (fewer
	// unschedulable pods, then lower cost, then the earlier strategy), so it
	// is never worse than FFD.
	StrategyBest Strategy = iota
	// StrategyFFD is plain first-fit-decreasing: a new node may grow into any
	// type of its pool, and gets the cheapest type that holds what it packed.
	StrategyFFD
	// StrategyCostAware caps each new node at the type with the lowest price
	// per pod of the shape that opened it.
	StrategyCostAware
	// StrategyDemandAware caps each new node at the type with the lowest
	// price per fraction of the remaining demand it can absorb.
	StrategyDemandAware
	// StrategyInterleaved sizes nodes like StrategyDemandAware but places
	// the pods of different shapes interleaved, each shape spread evenly
	// over the sequence, so every node fills with the aggregate mix (CPU-
	// heavy beside memory-heavy pods) instead of one shape at a time.
	StrategyInterleaved
	// StrategyLP follows the LP relaxation's fractional plan (see lpBound):
	// a pod joins or opens nodes of the instance types the LP buys for its
	// class, while the LP's count of such pods lasts, and falls back to
	// StrategyDemandAware otherwise. The LP balances CPU and memory over the
	// whole demand and puts pods that fit nowhere cheaper into the spare room
	// of machines that must be bought anyway (GPU nodes), which greedy
	// sizing, one node at a time, does not see.
	StrategyLP
	// StrategyLPInterleaved is StrategyLP in the interleaved order.
	StrategyLPInterleaved
	// StrategyLPFill is StrategyLP with the LP's machines filled one at a
	// time before first fit, each with the pods that best match its room
	// (see fillGuided).
	StrategyLPFill
)

// guided reports whether the strategy follows the LP's plan.
func (s Strategy) guided() bool {
	return s == StrategyLP || s == StrategyLPInterleaved || s == StrategyLPFill
}

// DefaultMaxChoices bounds each new node's fallback list.
const DefaultMaxChoices = 20

type options struct {
	strategy   Strategy
	maxChoices int
	noRepack   bool
	legacy     bool
	noRezone   bool
	// share marks the solve of one zone's share for rezone, with shareWas
	// what its nodes cost in the plan: the guided strategies only (they
	// win there), no improvement, repacking, rezoning or bound, and first
	// choices only unless it beats shareWas.
	share    bool
	shareWas float64
	stats    *Stats
	// barEvery is how many pods a strategy places between looks at the
	// cost bar: 0 is costBarEvery, negative never (tests compare the two).
	barEvery int
}

// Stats says where one Solve spent its time, for benchmarks.
type Stats struct {
	// Total is the whole call; Bound the lower bound's share of it,
	// including the LP relaxation solved before packing (which the
	// LP-guided strategies use too); Improve the improvement phase's share,
	// zero when it was skipped.
	Total, Bound, Improve time.Duration
	// LPStopped counts the LP relaxation's simplex runs that were stopped
	// at their pivot limit, having lost precision; each costs that round's
	// progress, not the bound's validity.
	LPStopped int
}

// WithStats fills s when Solve returns.
func WithStats(s *Stats) Option { return func(o *options) { o.stats = s } }

// WithLegacy solves as the solver did before the LP relaxation: the four
// greedy strategies one after another, repacking, and the closed-form
// bounds only. Benchmarks measure today's solver against it in one run.
func WithLegacy() Option { return func(o *options) { o.legacy = true } }

// Option tunes Solve.
type Option func(*options)

// WithStrategy selects the packing strategy (default StrategyBest). A single
// strategy is planned as is, without the repacking pass, so it serves as a
// baseline.
func WithStrategy(s Strategy) Option { return func(o *options) { o.strategy = s } }

// WithoutRepack skips the pass that merges planned nodes into cheaper
// machines (see state.repack), for measuring what it gains.
func WithoutRepack() Option { return func(o *options) { o.noRepack = true } }

// WithoutRezone skips packing again, one at a time, the zones that lack the
// LP guide's instance types (see rezone), for measuring what it gains.
func WithoutRezone() Option { return func(o *options) { o.noRezone = true } }

// WithMaxChoices bounds each new node's choices (default DefaultMaxChoices).
func WithMaxChoices(n int) Option { return func(o *options) { o.maxChoices = max(n, 1) } }

// Solve plans where snap's pods go. It is deterministic: the same snapshot
// yields the same plan. It fails only on malformed input (e.g. a NodePool
// requirement with a bad operator) or a cancelled context; pods that cannot
// be placed are reported in Plan.Unschedulable with a reason.
func Solve(ctx context.Context, snap *Snapshot, opts ...Option) (*Plan, error) {
	o := options{maxChoices: DefaultMaxChoices}
	for _, opt := range opts {
		opt(&o)
	}
	return solve(ctx, snap, o)
}

func solve(ctx context.Context, snap *Snapshot, o options) (*Plan, error) {
	// The clock is read only for WithStats: plans never depend on it.
	var start time.Time
	if o.stats != nil {
		start = time.Now()
	}
	if snap == nil {
		return nil, fmt.Errorf("solving: nil snapshot")
	}
	snap, restoreVolumes := withAttachLimits(snap)
	snap, restoreDevices, err := withDevices(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("solving: %w", err)
	}
	restore := func(p *Plan) *Plan { return restoreVolumes(restoreDevices(p)) }
	m, err := newModel(snap)
	if err != nil {
		return nil, fmt.Errorf("solving: %w", err)
	}
	strategies := []Strategy{StrategyCostAware, StrategyDemandAware, StrategyInterleaved, StrategyFFD, StrategyLP, StrategyLPInterleaved, StrategyLPFill}
	if o.legacy {
		strategies = strategies[:4]
	}
	if o.strategy != StrategyBest {
		strategies = []Strategy{o.strategy}
	} else if o.share {
		strategies = []Strategy{StrategyLP, StrategyLPFill}
	}
	var guide *lpGuide
	var guideTime time.Duration
	if slices.ContainsFunc(strategies, Strategy.guided) {
		var t0 time.Time
		if o.stats != nil {
			t0 = time.Now()
		}
		guide = newLPGuide(m)
		if o.stats != nil {
			guideTime = time.Since(t0) // the bound's LP, solved once before packing
		}
	}
	if o.share && guide == nil {
		strategies = []Strategy{StrategyDemandAware}
	}
	// Strategies run in parallel, one per core, and are compared on dry
	// plans (first choices only, which decide cost and failures): fewer
	// unschedulable pods, then lower cost, then the earlier strategy. That
	// order is total, so the winner does not depend on which finishes first,
	// and losers are dropped as they finish to bound memory. Only the
	// winner is built in full.
	var (
		mu     sync.Mutex
		plan   *Plan
		packed *state // the winning strategy's state, for repacking
		rank   int
	)
	better := func(p *Plan, r int) bool {
		if plan == nil || len(p.Unschedulable) != len(plan.Unschedulable) {
			return plan == nil || len(p.Unschedulable) < len(plan.Unschedulable)
		}
		if d := p.CostPerHour - plan.CostPerHour; d < -1e-9 || d > 1e-9 {
			return d < 0
		}
		return r < rank
	}
	// A plan that places every pending pod at the LP's certified bound is
	// optimal: later strategies can only tie it, and ties go to the earlier
	// one. So once strategy r has one, strategies after r that have not
	// started are skipped; those before it still run, and the winner is the
	// same whichever finishes first.
	within := func(p *Plan, gap float64) bool {
		return guide != nil && guide.in != nil && len(p.Unschedulable) == 0 && p.CostPerHour <= guide.bound*(1+gap)
	}
	optimal := func(p *Plan) bool { return within(p, 1e-9) }
	firstOptimal := math.MaxInt // guarded by mu
	var bar *costBar
	if !hasCommitments(snap) && o.barEvery >= 0 {
		bar = newCostBar(cmp.Or(o.barEvery, costBarEvery))
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(runtime.GOMAXPROCS(0))
	if o.legacy || o.share {
		g.SetLimit(1) // shares are solved side by side, one core each
	}
	// The guided strategies start first: on large mixes they win, and the
	// bar they set stops the greedy ones early. Ranks stay as listed.
	order := make([]int, 0, len(strategies))
	for _, guided := range []bool{true, false} {
		for r, s := range strategies {
			if s.guided() == guided {
				order = append(order, r)
			}
		}
	}
	for _, r := range order {
		s := strategies[r]
		if s.guided() && guide == nil {
			continue
		}
		g.Go(func() error {
			mu.Lock()
			skip := r > firstOptimal
			mu.Unlock()
			if skip {
				return nil
			}
			st, err := pack(gctx, m, s, guide, bar)
			if errors.Is(err, errBeaten) {
				return nil
			}
			if err != nil {
				return err
			}
			p := st.finish(1, true)
			if len(p.Unschedulable) == 0 {
				bar.lower(p.CostPerHour)
			}
			mu.Lock()
			defer mu.Unlock()
			if optimal(p) {
				firstOptimal = min(firstOptimal, r)
			}
			if better(p, r) {
				plan, packed, rank = p, st, r
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	dry := plan
	if o.share && dry.CostPerHour >= o.shareWas-1e-9 {
		return restore(dry), nil // the zone stays as it was: no choices needed
	}
	plan = packed.finish(o.maxChoices, false)
	// Improving and repacking only keep cheaper plans: an optimal one skips
	// them. In the controller most passes end here (one GPU pod per
	// machine, or pods that fill whole machines).
	proven := optimal(dry)
	if o.strategy == StrategyBest && !o.noRepack && !o.legacy && !o.share && !within(dry, improveMinGap) {
		// The improvement phase works on a copy; like repacking, it is
		// kept only when the plan it builds is cheaper.
		var t0 time.Time
		if o.stats != nil {
			t0 = time.Now()
		}
		better, n := packed.improve()
		if o.stats != nil {
			o.stats.Improve = time.Since(t0)
		}
		if n > 0 {
			if p := better.finish(1, true); len(p.Unschedulable) <= len(dry.Unschedulable) && p.CostPerHour < dry.CostPerHour-1e-9 {
				packed, dry = better, p
				plan = packed.finish(o.maxChoices, false)
			}
		}
	}
	if o.strategy == StrategyBest && !o.noRepack && !o.share && !proven && packed.repack() > 0 {
		// Repacking runs once, on the winning strategy, and is kept only
		// when it helps, so the plan stays never worse than plain FFD.
		if p := packed.finish(1, true); len(p.Unschedulable) <= len(dry.Unschedulable) && p.CostPerHour < dry.CostPerHour-1e-9 {
			plan = packed.finish(o.maxChoices, false)
		}
	}
	if o.strategy == StrategyBest && !o.noRepack && !o.legacy && !o.noRezone && !o.share && !within(plan, improveMinGap) {
		packed, dry = nil, nil // the zones' solves need the memory more
		if plan, err = rezone(ctx, snap, m, guide, plan, o); err != nil {
			return nil, err
		}
	}
	gangOf := m.podGangs()
	keepGangsWhole(plan, gangOf)
	assignGangs(plan.NewNodes, gangOf)
	var boundStart time.Time
	if o.stats != nil {
		boundStart = time.Now()
	}
	if !o.share {
		plan.LowerBoundPerHour = lowerBound(m, plan, !o.legacy, guide)
	}
	if o.stats != nil {
		o.stats.Bound = time.Since(boundStart) + guideTime
		o.stats.Total = time.Since(start)
		o.stats.LPStopped = int(m.lpStopped.Load())
	}
	plan = restore(plan)
	log.FromContext(ctx).V(1).Info("solved", "pods", len(snap.Pods), "bindings", len(plan.Bindings),
		"newNodes", len(plan.NewNodes), "unschedulable", len(plan.Unschedulable),
		"costPerHour", plan.CostPerHour, "lowerBoundPerHour", plan.LowerBoundPerHour)
	return plan, nil
}

// pack is one strategy's pass: gangs first, all-or-nothing per zone, then the
// remaining shapes in first-fit-decreasing order; shapes whose hard spread
// counts pods it does not bind come after those pods (see spreadRanks).
func pack(ctx context.Context, m *model, strategy Strategy, guide *lpGuide, bar *costBar) (*state, error) {
	st := newState(m, strategy)
	if strategy.guided() {
		st.preopen(guide)
		defer st.dropEmpty()
	}
	rank := spreadRanks(m)
	var shapes []*shape
	for _, s := range m.shapes[:m.pending] {
		if s.gang != "" {
			continue
		}
		if s.err != nil {
			for _, pod := range s.pods {
				st.unsched = append(st.unsched, Unschedulable{Pod: pod, Reason: s.err.Error()})
			}
			continue
		}
		shapes = append(shapes, s)
	}
	slices.SortStableFunc(shapes, func(a, b *shape) int { return cmp.Compare(rank[a.idx], rank[b.idx]) })
	gangRank := func(g *gang) int {
		r := 0
		for _, si := range g.shapes {
			r = max(r, rank[si])
		}
		return r
	}
	gangs := slices.Clone(m.gangs)
	slices.SortStableFunc(gangs, func(a, b *gang) int { return cmp.Compare(gangRank(a), gangRank(b)) })
	// taken[s] is how many of s's pods, from the front, the fill placed.
	taken := make([]int, len(m.shapes))
	reasons := make([]string, len(m.shapes))
	placed := 0
	for r := 0; len(gangs) > 0 || len(shapes) > 0; r++ {
		for len(gangs) > 0 && gangRank(gangs[0]) <= r {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("solving: %w", err)
			}
			st = st.placeGang(gangs[0], rank)
			gangs = gangs[1:]
		}
		n := 0
		for n < len(shapes) && rank[shapes[n].idx] <= r {
			n++
		}
		if n == 0 {
			continue
		}
		if strategy == StrategyLPFill && r == 0 {
			st.fillGuided(shapes[:n], taken)
		}
		for _, pp := range placementOrder(shapes[:n], strategy) {
			if int(pp.i) < taken[pp.s.idx] {
				continue
			}
			if placed++; placed%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("solving: %w", err)
				}
			}
			if bar != nil && placed%bar.every == 0 && bar.passed(st.usedCost()) {
				return nil, errBeaten
			}
			s, pod := pp.s, pp.s.pods[pp.i]
			if st.place(s, pod) {
				continue
			}
			if reasons[s.idx] == "" {
				reasons[s.idx] = st.explain(s)
			}
			st.unsched = append(st.unsched, Unschedulable{Pod: pod, Reason: reasons[s.idx]})
		}
		shapes = shapes[n:]
	}
	return st, nil
}

// spreadRanks orders shapes for placement by their hard spread rules and
// required pod affinity. The scheduler checks a spread rule only for the pod
// that carries it, in whatever order it binds them, so a plan must hold with
// the rule's pods bound last. A shape whose hard spread counts pending pods
// that do not carry the same rule ranks above them: placed first, it would
// see counts the others then push past maxSkew. A shape whose required
// affinity selects other pending shapes ranks above them too: placed first,
// it finds none of them yet (workers that must run beside a smaller leader).
// Ranks follow chains of such rules; in a cycle (two apps each counting only
// the other) one side is placed first, and the scheduler may leave one of
// its pods pending.
func spreadRanks(m *model) []int {
	rank := make([]int, len(m.shapes))
	type edge struct{ from, to int } // from ranks above to
	var edges []edge
	for _, s := range m.shapes[:m.pending] {
		if s.err != nil {
			continue
		}
		for _, r := range s.levels[0].spread {
			if !r.hard {
				continue
			}
			for _, i := range m.groups[r.group].members {
				if o := m.shapes[i]; o != s && int(i) < m.pending && o.err == nil && !carries(o, r) {
					edges = append(edges, edge{s.idx, int(i)})
				}
			}
		}
		for _, r := range s.levels[0].aff {
			for _, i := range m.groups[r.group].members {
				if o := m.shapes[i]; o != s && int(i) < m.pending && o.err == nil && !hasAffinity(o, r.group) {
					edges = append(edges, edge{s.idx, int(i)})
				}
			}
		}
	}
	// Longest-path ranks by relaxation; a cycle stops growing at the bound.
	for range min(len(edges), maxSpreadRank) {
		changed := false
		for _, e := range edges {
			if rank[e.to]+1 > rank[e.from] {
				rank[e.from], changed = rank[e.to]+1, true
			}
		}
		if !changed {
			break
		}
	}
	return rank
}

// maxSpreadRank bounds the chains spreadRanks follows (and its work when
// rules form a cycle).
const maxSpreadRank = 16

// hasAffinity reports whether shape o has a required affinity term counting
// group g: shapes that share one (pods of one app, differing in requests)
// are placed together, with no order among them.
func hasAffinity(o *shape, g int) bool {
	return slices.ContainsFunc(o.levels[0].aff, func(q termRule) bool { return q.group == g })
}

// carries reports whether shape o has hard spread rule r: the same group at
// the same key, no looser.
func carries(o *shape, r spreadRule) bool {
	return slices.ContainsFunc(o.levels[0].spread, func(q spreadRule) bool {
		return q.hard && q.group == r.group && q.key == r.key && q.maxSkew <= r.maxSkew
	})
}

// costBar is the cost of the cheapest plan a strategy has finished that
// places every pending pod. Packing never makes a plan cheaper (a pod can
// only narrow its node's types or open a node), so a strategy whose used
// nodes already cost more cannot win, whatever its rank, and stops: the
// winner does not depend on which strategies got that far. Not used with
// commitments, whose marginal prices depend on the order nodes are priced.
type costBar struct {
	bits  atomic.Uint64
	every int // pods placed between looks
}

// costBarEvery spaces the looks: each costs a pass over the nodes.
const costBarEvery = 1024

// errBeaten stops a strategy that passed the bar.
var errBeaten = errors.New("beaten by a finished strategy")

func newCostBar(every int) *costBar {
	b := &costBar{every: every}
	b.bits.Store(math.Float64bits(math.Inf(1)))
	return b
}

// lower sets the bar to cost if that is lower.
func (b *costBar) lower(cost float64) {
	if b == nil {
		return
	}
	for {
		old := b.bits.Load()
		if cost >= math.Float64frombits(old) || b.bits.CompareAndSwap(old, math.Float64bits(cost)) {
			return
		}
	}
}

// passed reports whether a partial plan costing cost can no longer win.
func (b *costBar) passed(cost float64) bool {
	return b != nil && cost > math.Float64frombits(b.bits.Load())+1e-9
}

// shapePod is the i-th pending pod of shape s.
type shapePod struct {
	s *shape
	i int32
}

// placementOrder is shape by shape in first-fit-decreasing order, or for
// StrategyInterleaved each shape's pods spread evenly over the sequence
// (pod i of n at position (i+½)/n, ties in shape order), so the pods not yet
// placed keep the aggregate mix at every point.
func placementOrder(shapes []*shape, strategy Strategy) []shapePod {
	n := 0
	for _, s := range shapes {
		n += len(s.pods)
	}
	out := make([]shapePod, 0, n)
	for _, s := range shapes {
		for i := range s.pods {
			out = append(out, shapePod{s: s, i: int32(i)})
		}
	}
	if strategy == StrategyInterleaved || strategy == StrategyLPInterleaved {
		pos := func(p shapePod) float64 { return (float64(p.i) + 0.5) / float64(len(p.s.pods)) }
		slices.SortStableFunc(out, func(a, b shapePod) int { return cmpFloat(pos(a), pos(b)) })
	}
	return out
}

// placeGang plans every pending pod of a gang in one zone or none of them,
// trying each zone on a copy of the state and keeping the cheapest.
func (st *state) placeGang(g *gang, rank []int) *state {
	fail := func(reason string) *state {
		for _, si := range g.shapes {
			for _, pod := range st.m.shapes[si].pods {
				st.unsched = append(st.unsched, Unschedulable{Pod: pod, Reason: reason})
			}
		}
		return st
	}
	for _, si := range g.shapes {
		if err := st.m.shapes[si].err; err != nil {
			return fail(err.Error())
		}
	}
	if have := g.pending + g.present; have < g.size {
		return fail(fmt.Sprintf("pod group %s has %d of its %d pods", g.name, have, g.size))
	}
	zones := st.m.zones
	if len(g.zones) > 0 {
		zones = g.zones
	}
	shapes := slices.Clone(g.shapes)
	slices.SortStableFunc(shapes, func(a, b int) int { return cmp.Compare(rank[a], rank[b]) })
	var best *state
	firstReason := ""
	for _, z := range zones {
		c := st.clone()
		c.forceZone = z
		ok := true
		for _, si := range shapes {
			s := c.m.shapes[si]
			for _, pod := range s.pods {
				if !c.place(s, pod) {
					if firstReason == "" {
						firstReason = c.explain(s)
					}
					ok = false
					break
				}
			}
			if !ok {
				break
			}
		}
		if ok && (best == nil || c.cost() < best.cost()-1e-9) {
			best = c
		}
	}
	if best == nil {
		reason := fmt.Sprintf("pod group %s: its %d pods do not fit together in any one zone", g.name, g.pending)
		if firstReason != "" {
			reason += " (" + firstReason + ")"
		}
		return fail(reason)
	}
	best.forceZone = ""
	best.forgetAllowed() // its answers assumed the zone
	return best
}

// finish turns the state into a Plan: each new node's ordered choices,
// requests and requirements. A dry plan has each node's first choice only,
// enough to compare costs and failures. It leaves the state as it found it (limits are
// charged on copies), so a state can be finished again after repacking.
func (st *state) finish(maxChoices int, dry bool) *Plan {
	// Clipped, so appending here never writes into a slice an earlier plan holds.
	plan := &Plan{Bindings: slices.Clip(st.bindings), Unschedulable: slices.Clip(st.unsched)}
	remaining := slices.Clone(st.remaining)
	charged := make([]scheduling.Resources, len(st.nodes))
	for i, n := range st.nodes {
		charged[i] = n.charged
	}
	defer func() {
		st.remaining = remaining
		for i, n := range st.nodes {
			n.charged = charged[i]
		}
	}()
	reserved := map[string]int{}      // reservation key -> machines already planned into it
	committed := map[string]float64{} // commitment -> spent by machines already planned
	// Nodes that must be reserved pick their reservations before nodes that
	// merely find reserved capacity cheapest; the plan keeps creation order.
	built := make([]*NewNode, len(st.nodes))
	reasons := make([]string, len(st.nodes))
	for _, mustReserve := range []bool{true, false} {
		for i, n := range st.nodes {
			if st.onlyReserved(n) == mustReserve {
				built[i], reasons[i] = st.newNode(n, reserved, committed, maxChoices, dry)
			}
		}
	}
	for i, n := range st.nodes {
		if built[i] == nil {
			for _, pod := range n.pods {
				plan.Unschedulable = append(plan.Unschedulable, Unschedulable{Pod: pod, Reason: reasons[i]})
			}
			continue
		}
		plan.NewNodes = append(plan.NewNodes, built[i])
		plan.CostPerHour += built[i].PricePerHour()
	}
	return plan
}

// eachLaunchable calls yield, cheapest first, with the node's candidates and
// then the cost-aware cap's extras that meet the node's final requirements,
// until yield returns false.
func (st *state) eachLaunchable(n *newNode, yield func(*poolType) bool) {
	for _, ti := range n.cands {
		if !yield(n.pool.types[ti]) {
			return
		}
	}
	for _, ti := range n.extra {
		if t := n.pool.types[ti]; typeAdmits(t, n.pool, n.reqs) && !yield(t) {
			return
		}
	}
}

// onlyReserved reports whether every offering the node may still launch as
// is a reservation.
func (st *state) onlyReserved(n *newNode) bool {
	zone, ct := n.reqs.Get(v1.LabelZone), n.reqs.Get(v1.LabelCapacityType)
	for _, ti := range n.cands {
		t := n.pool.types[ti]
		if !n.used.Fits(&t.alloc) {
			continue
		}
		for _, o := range t.offs {
			if o.CapacityType != v1.CapacityTypeReserved && (zone == nil || zone.Allows(o.Zone)) && (ct == nil || ct.Allows(o.CapacityType)) {
				return false
			}
		}
	}
	return true
}

func settledReserved(reqs scheduling.Requirements) bool {
	r := reqs.Get(v1.LabelCapacityType)
	return r != nil && r.Len() == 1 && r.Allows(v1.CapacityTypeReserved)
}

func reservationKey(it string, o cloudprovider.Offering) string {
	return it + "/" + o.Zone + "/" + o.ReservationID
}

func (st *state) newNode(n *newNode, reserved map[string]int, committed map[string]float64, maxChoices int, dry bool) (*NewNode, string) {
	p := n.pool
	zone, ct := n.reqs.Get(v1.LabelZone), n.reqs.Get(v1.LabelCapacityType)
	less := func(a, b pick) int {
		return cmp.Or(compareOfferingPrice(a.o, b.o), cmp.Compare(a.t.it.Name, b.t.it.Name), compareOfferings(a.o, b.o))
	}
	// valid reports whether o of t may be a choice; each walks the candidates
	// cheapest first, so the top-k scan below can stop early.
	valid := func(t *poolType, o cloudprovider.Offering) bool {
		if (zone != nil && !zone.Allows(o.Zone)) || (ct != nil && !ct.Allows(o.CapacityType)) {
			return false
		}
		if o.Commitment != "" {
			// Covered by a commitment while it lasts, across every type and zone it covers.
			return committed[o.Commitment]+o.CommitmentCost <= o.CommitmentLeft+1e-9
		}
		return o.CapacityType != v1.CapacityTypeReserved || reserved[reservationKey(t.it.Name, o)] < o.ReservedCount
	}
	fits := func(t *poolType) bool {
		return n.used.Fits(&t.alloc) &&
			(!p.hasLimits || withinLimits(&p.limited, &st.remaining[p.idx], &n.charged, &t.capacity))
	}
	// Top maxChoices by (price, name, offering): types are sorted by their
	// cheapest offering, so once that exceeds the k-th best nothing later can enter.
	chosen := st.picks[:0] // scratch: copied into the node's Choices below
	defer func() { st.picks = chosen[:0] }()
	st.eachLaunchable(n, func(t *poolType) bool {
		if len(chosen) == maxChoices && t.minPrice > chosen[len(chosen)-1].o.PricePerHour {
			return false
		}
		if !fits(t) {
			return true
		}
		for _, o := range t.offs {
			if len(chosen) == maxChoices && o.PricePerHour > chosen[len(chosen)-1].o.PricePerHour {
				break // offerings are cheapest first
			}
			if !valid(t, o) {
				continue
			}
			pk := pick{t, o}
			// After its equals: a type's covered twins tie on everything but
			// their commitment, and are listed in the order the bill applies
			// commitments (pricing.ApplyCommitments), which the first must keep.
			i, _ := slices.BinarySearchFunc(chosen, pk, func(a, b pick) int { return cmp.Or(less(a, b), -1) })
			if i >= maxChoices {
				continue
			}
			chosen = slices.Insert(chosen, i, pk)
			if len(chosen) > maxChoices {
				chosen = chosen[:maxChoices]
			}
		}
		return true
	})
	if len(chosen) == 0 {
		return nil, fmt.Sprintf("nodepool %s: no offering left for the planned node (reservations used up)", p.name)
	}
	// minValues: the choices must span enough distinct values of each key.
	for _, key := range n.reqs.Keys() {
		r := n.reqs.Get(key)
		if r.MinValues == nil {
			continue
		}
		set := map[string]bool{}
		for _, pk := range chosen {
			if v, ok := offeringValue(pk.t, pk.o, key); ok {
				set[v] = true
			}
		}
		st.eachLaunchable(n, func(t *poolType) bool {
			if len(set) >= *r.MinValues {
				return false
			}
			if !fits(t) {
				return true
			}
			for _, o := range t.offs {
				if v, ok := offeringValue(t, o, key); ok && !set[v] && valid(t, o) {
					set[v] = true
					chosen = append(chosen, pick{t, o})
					break
				}
			}
			return true
		})
		if len(set) < *r.MinValues {
			return nil, fmt.Sprintf("nodepool %s requires at least %d distinct %s but only %d fit the pods", p.name, *r.MinValues, key, len(set))
		}
	}
	first := chosen[0]
	if first.o.CapacityType == v1.CapacityTypeReserved {
		reserved[reservationKey(first.t.it.Name, first.o)]++
	}
	if first.o.Commitment != "" {
		committed[first.o.Commitment] += first.o.CommitmentCost
	}
	if p.hasLimits {
		st.remaining[p.idx] = st.remaining[p.idx].Add(n.charged).Sub(first.t.capacity)
		n.charged = first.t.capacity
	}
	if dry {
		return &NewNode{NodePool: p.name, Pods: n.pods, Choices: []Choice{{InstanceType: first.t.it, Offering: first.o}}}, ""
	}
	out := &NewNode{NodePool: p.name, Pods: n.pods, Choices: make([]Choice, 0, len(chosen))}
	for _, pk := range chosen {
		out.Choices = append(out.Choices, Choice{InstanceType: pk.t.it, Offering: pk.o})
	}
	out.Requests = n.used.Add(first.t.daemon).ToList()
	reqs := n.reqs.Copy()
	// The choices' values of each key, gathered in one scratch list: no maps per node.
	narrow := func(key string, value func(pick) string) {
		values := st.names[:0]
		for _, pk := range chosen {
			values = append(values, value(pk))
		}
		reqs.Add(scheduling.MustRequirement(key, corev1.NodeSelectorOpIn, values...))
		st.names = values[:0]
	}
	narrow(v1.LabelInstanceType, func(pk pick) string { return pk.t.it.Name })
	narrow(v1.LabelZone, func(pk pick) string { return pk.o.Zone })
	narrow(v1.LabelCapacityType, func(pk pick) string { return pk.o.CapacityType })
	// The instance-type minValues, if any, still applies to the narrowed set.
	out.Requirements = reqs.ToAPI()
	return out, ""
}

// pick is one offering of one type, as a candidate choice.
type pick struct {
	t *poolType
	o cloudprovider.Offering
}

// compareOfferingPrice orders by price only, so equal prices fall through to names.
func compareOfferingPrice(a, b cloudprovider.Offering) int {
	return cmp.Compare(a.PricePerHour, b.PricePerHour)
}

// explain says, for humans, why no node can take a pod of shape s.
func (st *state) explain(s *shape) string {
	l := s.levels[st.level[s.idx]]
	if len(st.m.pools) == 0 {
		return "no nodepool can launch nodes and no existing node fits"
	}
	if r := st.zoneNobodyOffers(l); r != "" {
		return r
	}
	var reasons []string
	for _, p := range st.m.pools {
		reasons = append(reasons, st.explainPool(s, l, p))
	}
	return strings.Join(reasons, "; ")
}

// zoneNobodyOffers reports a zone requirement no pool can meet at all.
func (st *state) zoneNobodyOffers(l *level) string {
	for _, alt := range l.alts {
		zr := alt.Get(v1.LabelZone)
		if zr == nil || zr.Values() == nil {
			return ""
		}
		for _, p := range st.m.pools {
			for _, t := range p.types {
				if hasOffering(t, zr, nil) {
					return ""
				}
			}
		}
	}
	zr := l.alts[0].Get(v1.LabelZone)
	return fmt.Sprintf("requires zone %s which no nodepool offers", strings.Join(zr.Values(), " or "))
}

func (st *state) explainPool(s *shape, l *level, p *pool) string {
	if err := l.tolerates[p.idx]; err != nil {
		return fmt.Sprintf("nodepool %s: %v", p.name, err)
	}
	var maxAlloc scheduling.Resources
	anyViable := false
	var admitErr error
	for ai, alt := range l.alts {
		if err := p.reqs.Admits(alt); err != nil {
			admitErr = err
			continue
		}
		for ti, t := range p.types {
			if l.viable[ai][p.idx][ti] {
				anyViable = true
				maxAlloc = maxAlloc.Max(t.alloc)
			}
		}
	}
	if !anyViable {
		if admitErr != nil {
			return fmt.Sprintf("nodepool %s: pod %v", p.name, admitErr)
		}
		return fmt.Sprintf("nodepool %s: no instance type matches the pod's node requirements (%s)", p.name, l.alts[0])
	}
	if over := s.req.Exceeded(&maxAlloc); len(over) > 0 {
		return fmt.Sprintf("no instance type in nodepool %s has %s %s", p.name, formatAmount(over[0], s.req.Get(over[0])), over[0])
	}
	if p.hasLimits {
		var c scheduling.Resources
		for _, t := range p.types {
			if s.req.Fits(&t.alloc) {
				c = t.capacity
				break
			}
		}
		if over := c.Exceeded(&st.remaining[p.idx]); len(over) > 0 {
			for _, r := range over {
				if p.limited.Get(r) != 0 {
					return fmt.Sprintf("nodepool %s limits reached: %s", p.name, r)
				}
			}
		}
	}
	return fmt.Sprintf("nodepool %s: topology spread or pod (anti-)affinity cannot be satisfied", p.name)
}

func formatAmount(name corev1.ResourceName, v int64) string {
	switch name {
	case corev1.ResourceCPU:
		if v%1000 == 0 {
			return fmt.Sprint(v / 1000)
		}
		return fmt.Sprintf("%dm", v)
	case corev1.ResourceMemory, corev1.ResourceEphemeralStorage:
		return fmt.Sprintf("%.1fGi", float64(v)/(1<<30))
	}
	return fmt.Sprint(v)
}
