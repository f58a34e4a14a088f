package solver

import (
	"maps"
	"math"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// lowerBound is a cost no plan that places the same pods as plan can beat.
//
// Proof sketch. Let D be the summed requests of the pods plan places, F the
// free capacity of the existing nodes, and R = max(0, D - F) per resource d.
// Whatever a plan puts on existing nodes is at most F, so its new nodes must
// together supply at least R_d of every resource d. A new machine of type t
// bought as offering o supplies at most alloc_t[d] (its allocatable before
// DaemonSet overhead, an over-estimate, capped at what the pods could use of
// it: see usableCaps) for price p_o; reserved offerings can
// be bought at most ReservedCount times. For any weights y >= 0 the machines
// then also supply at least sum_d y_d R_d of the composite resource
// sum_d y_d alloc_t[d]. The cheapest way to supply that, even with fractional
// machines, is the LP relaxation of one covering constraint, which the greedy
// "cheapest price per unit first" solves exactly. Any integral plan is
// feasible for that LP, so it costs at least the LP optimum, for every y; the
// bound is the best over each resource alone and a sweep of pairwise mixes.
//
// Two per-pod terms tighten it: a pod that fits in no existing node's free
// capacity needs some new machine able to hold it, so the bound is at least
// that machine's cheapest offering; and pods of a shape that allows at most
// one of its pods per node (hostname anti-affinity on itself), n of them,
// need at least n - E new machines when there are E existing nodes. Two
// combined terms tighten it further, each proved where it is computed: pods
// that pairwise cannot share a machine (exclusiveBound) and pods that only
// fit machines of at least their size (sizeClassBound). "Able to hold"
// always includes the pod's node requirements and taints (canHold).
func lowerBound(m *model, plan *Plan, withLP bool, guide *lpGuide) float64 {
	shapeOf := map[*corev1.Pod]*shape{}
	for _, s := range m.shapes[:m.pending] {
		for _, pod := range s.pods {
			shapeOf[pod] = s
		}
	}
	// Shape requests are summed per placed pod.
	placed := map[*shape]int{}
	add := func(pod *corev1.Pod) {
		if s := shapeOf[pod]; s != nil {
			placed[s]++
		}
	}
	for _, b := range plan.Bindings {
		add(b.Pod)
	}
	for _, n := range plan.NewNodes {
		for _, pod := range n.Pods {
			add(pod)
		}
	}
	// The guide solved the LP for every pending pod; when the plan places
	// exactly those, its bound and (if it kept them) its input hold here.
	same := guide != nil && maps.Equal(placed, guide.placed)
	reuse := same && guide.in != nil
	var in *boundInput
	var idx *fitIndex
	if reuse {
		in, idx = guide.in, guide.idx // the same pods: the same input
	} else {
		in = newBoundInput(m, placed)
		idx = newFitIndex(in.supplies)
	}
	placed, frees, free, residual, supplies := in.placed, in.frees, in.free, in.residual, in.supplies
	// The LP relaxation first: it sees who may run where, and it is cheap.
	var bound float64
	switch {
	case !withLP:
	case same:
		bound = guide.bound // solved for these very pods before packing
	default:
		bound, _ = lpBound(m, placed, frees, &residual, supplies, idx, false, nil)
	}
	// Then with the zone rows, where hard zone spreads force pods into
	// zones whose machines cost more, which the first program cannot see.
	if withLP && (!same || guide.zoneRows > 0) && bound < 0.995*plan.CostPerHour {
		var warm *lpStart
		if reuse {
			warm = guide.start // the same classes and supplies, in the same order
		}
		if zb, _ := lpBound(m, placed, frees, &residual, supplies, idx, true, warm); zb > bound {
			bound = zb
		}
	}
	// The closed-form terms are the floor. With an LP bound they sweep
	// fewer resource mixes: the full sweep costs more than the LP on small
	// snapshots, and the LP already weighs the resources together.
	weights := weightVectors(&residual)
	if bound > 0 {
		weights = weightSweep(&residual, 4)
	}
	// When the bound is already within 0.5% of the plan, no term can add
	// more than that: the costlier ones are skipped.
	tight := func() bool { return bound >= 0.995*plan.CostPerHour }
	for _, w := range weights {
		if tight() {
			break
		}
		bound = math.Max(bound, coverCost(&residual, w, supplies))
	}
	if !tight() {
		bound = math.Max(bound, exclusiveBound(m, placed, frees, &residual, idx, weights))
	}
	if !tight() {
		bound = math.Max(bound, sizeClassBound(m, placed, &free, &residual, idx, weights))
	}
	for s, n := range placed {
		fitsExisting := 0
		for i := range frees {
			if s.req.Fits(&frees[i]) {
				fitsExisting++
			}
		}
		c := idx.cheapest(s)
		if math.IsInf(c, 1) {
			continue
		}
		if fitsExisting == 0 {
			bound = math.Max(bound, c)
		}
		if l := s.levels[0]; l.perNode == 1 && n > fitsExisting {
			bound = math.Max(bound, float64(n-fitsExisting)*c)
		}
	}
	return bound
}

// boundInput is what every bound term reads: the placed pods, the existing
// nodes' free capacity, the residual demand new machines must supply, and
// the supplies (offerings as machines to buy).
type boundInput struct {
	placed   map[*shape]int
	frees    []scheduling.Resources
	free     scheduling.Resources
	residual scheduling.Resources
	supplies []supply
}

func newBoundInput(m *model, placed map[*shape]int) *boundInput {
	in := &boundInput{placed: placed}
	var demand scheduling.Resources
	for s, n := range placed {
		for range n {
			demand = demand.Add(s.req)
		}
	}
	in.frees = make([]scheduling.Resources, len(m.nodes))
	for i, n := range m.nodes {
		var used scheduling.Resources
		for _, si := range m.nodePods[i] {
			used = used.Add(m.shapes[si].req)
		}
		f := scheduling.FromList(n.Allocatable).Sub(used)
		clampZero(&f)
		in.frees[i] = f
		in.free = in.free.Add(f)
	}
	in.residual = demand.Sub(in.free)
	clampZero(&in.residual)
	usable := usableCaps(placed)
	for _, p := range m.pools {
		for ti, t := range p.types {
			full := t.alloc.Add(t.daemon)
			usable(&full)
			// Of a type's unlimited offerings only the cheapest matters: the
			// others supply the same for more.
			unlimited := math.Inf(1)
			for _, o := range t.offs {
				switch {
				case o.CapacityType == v1.CapacityTypeReserved:
					in.supplies = append(in.supplies, supply{alloc: full, price: o.PricePerHour, count: o.ReservedCount, pool: p.idx, typ: ti})
				case o.Commitment != "":
					// At most this many machines of this type fit what the
					// commitment has left; counting each type (and zone) on
					// its own only loosens the bound.
					n := int(o.CommitmentLeft/o.CommitmentCost + 1e-9)
					in.supplies = append(in.supplies, supply{alloc: full, price: o.PricePerHour, count: n, pool: p.idx, typ: ti})
				default:
					unlimited = math.Min(unlimited, o.PricePerHour)
				}
			}
			if !math.IsInf(unlimited, 1) {
				in.supplies = append(in.supplies, supply{alloc: full, price: unlimited, count: math.MaxInt, pool: p.idx, typ: ti})
			}
		}
	}
	return in
}

// usableCaps returns a function that lowers a machine's allocatable to what
// the placed pods could ever use of it. For resources d and e, every pod
// requests at most ratio[d][e] × its e-request of d, so the pods on a machine
// with e-capacity E request at most ratio[d][e] × E of d together. A machine
// whose memory only fits a sliver of any pod therefore supplies almost no
// CPU either, however many cores it has; without this, the fractional cover
// buys CPU from tiny burstable types no pod fits on and memory elsewhere.
// Capping only removes capacity no plan can use, so every argument in
// lowerBound holds with the capped allocatable; a pod (or set of pods) that
// fits a type still fits its capped allocatable.
func usableCaps(placed map[*shape]int) func(*scheduling.Resources) {
	const n = int(scheduling.NumSlots)
	var ratio [n][n]float64 // max over pods of req_d / req_e; +Inf when some pod needs d but no e
	for s := range placed {
		for d, rd := range s.req.Fixed {
			if rd <= 0 {
				continue
			}
			for e, re := range s.req.Fixed {
				switch {
				case e == d:
				case re <= 0:
					ratio[d][e] = math.Inf(1)
				default:
					ratio[d][e] = math.Max(ratio[d][e], float64(rd)/float64(re))
				}
			}
		}
	}
	return func(r *scheduling.Resources) {
		orig := r.Fixed
		for d := range n {
			for e := range n {
				if e == d || math.IsInf(ratio[d][e], 1) {
					continue
				}
				// Rounded up, with slack, so float error never drops a fitting pod.
				c := math.Ceil(float64(orig[e]) * ratio[d][e] * (1 + 1e-9))
				if c < float64(r.Fixed[d]) {
					r.Fixed[d] = int64(c)
				}
			}
		}
	}
}

// supply is one way to buy machines: what each holds, its price, and how
// many can be bought (math.MaxInt for spot and on-demand).
type supply struct {
	alloc scheduling.Resources
	price float64
	count int
	// pool and typ index the model's pools and the pool's types.
	pool, typ int
}

// weight prices a composite resource: the sum of amount(name) × factor.
type weight []wterm

// wterm is one resource of a weight: a fixed slot (fast) or an extended name.
type wterm struct {
	slot int // -1 for an extended resource
	name corev1.ResourceName
	f    float64
}

func newWeight(kv ...any) weight {
	var w weight
	for i := 0; i < len(kv); i += 2 {
		name, f := kv[i].(corev1.ResourceName), kv[i+1].(float64)
		t := wterm{slot: -1, name: name, f: f}
		for sl := range scheduling.NumSlots {
			if scheduling.SlotName(sl) == name {
				t.slot = int(sl)
			}
		}
		w = append(w, t)
	}
	return w
}

// of is the weighted total of r.
func (w weight) of(r *scheduling.Resources) float64 {
	var v float64
	for _, t := range w {
		if t.slot >= 0 {
			v += t.f * float64(r.Fixed[t.slot])
		} else {
			v += t.f * float64(r.Ext[t.name])
		}
	}
	return v
}

// weightVectors are the resource mixes the bound is evaluated for: each
// resource alone, and for every pair a sweep of mixes normalised by demand.
// Any non-negative mix gives a valid bound (see coverCost), so more mixes only
// tighten it; the pair sweep catches plans bound by two resources at once
// (typically CPU and memory), which single resources miss.
func weightVectors(residual *scheduling.Resources) []weight {
	return weightSweep(residual, 16)
}

// weightSweep is weightVectors with steps mixes per pair.
func weightSweep(residual *scheduling.Resources, steps int) []weight {
	names := residual.Names()
	var out []weight
	for _, n := range names {
		out = append(out, newWeight(n, 1.0))
	}
	for i, a := range names {
		for _, b := range names[i+1:] {
			ra, rb := float64(residual.Get(a)), float64(residual.Get(b))
			for k := 1; k < steps; k++ {
				theta := math.Pi / 2 * float64(k) / float64(steps)
				out = append(out, newWeight(a, math.Cos(theta)/ra, b, math.Sin(theta)/rb))
			}
		}
	}
	return out
}

// coverCost is the cheapest way to supply the demand's weighted total with
// fractional machines. For any plan, every new machine supplies at most its
// allocatable, so the plan's machines together supply at least the residual
// in every resource, hence at least its weighted total; buying that total
// cheapest-per-unit first, within each offering's count, is the optimum of
// the fractional (LP) relaxation of that one covering constraint, so no plan
// costs less.
func coverCost(residual *scheduling.Resources, w weight, supplies []supply) float64 {
	need := w.of(residual)
	// Unlimited supplies never run out, so only the cheapest rate among
	// them matters, and only limited ones (reservations) cheaper than it
	// need sorting.
	type unit struct{ per, units float64 }
	var limited []unit
	unlimited := math.Inf(1)
	for i := range supplies {
		s := &supplies[i]
		a := w.of(&s.alloc)
		if a <= 0 {
			continue
		}
		if s.count == math.MaxInt {
			unlimited = math.Min(unlimited, s.price/a)
		} else {
			limited = append(limited, unit{per: s.price / a, units: a * float64(s.count)})
		}
	}
	limited = slices.DeleteFunc(limited, func(u unit) bool { return u.per >= unlimited })
	slices.SortFunc(limited, func(x, y unit) int { return cmpFloat(x.per, y.per) })
	var cost float64
	for _, u := range limited {
		if need <= 1e-12 {
			break
		}
		take := math.Min(need, u.units)
		cost += take * u.per
		need -= take
	}
	if need > 1e-12 && !math.IsInf(unlimited, 1) {
		cost += need * unlimited
	}
	return cost
}

func clampZero(r *scheduling.Resources) {
	for i, v := range r.Fixed {
		r.Fixed[i] = max(v, 0)
	}
	for k, v := range r.Ext {
		r.Ext[k] = max(v, 0)
	}
}

// exclusive is a set of n pods of one shape that need a new machine each.
type exclusive struct {
	s     *shape
	n     int
	fits  []int   // indexes of the supplies able to hold one pod of s
	price float64 // the cheapest of fits
}

// exclusiveBound combines the fractional cover with pods that provably need
// a new machine each.
//
// Proof. Pick pods B that fit in no existing node's free capacity (so each is
// on a new machine) and pairwise cannot share a machine: their summed requests
// exceed every type's allocatable, or a hostname anti-affinity (own or
// symmetric) separates them. Each pod i in B then sits on its own new machine,
// of some offering that can hold i. Fix weights w >= 0 and a rate λ with
// 0 <= λ <= p_o / a_o for every unlimited (spot, on-demand) offering o, where
// a_o is o's weighted allocatable. Any plan's cost splits as
//
//	Σ_nodes p = λ Σ_nodes a + Σ_nodes (p - λ a).
//
// The new machines' a sum to at least the weighted residual demand N (see
// lowerBound). A node holding pod i of B contributes p - λa >= e_i, the
// minimum of p_o - λ a_o over offerings able to hold i. Every other node
// contributes at least min(0, p - λa), which is negative only for reserved
// offerings, each bought at most ReservedCount times. Hence
//
//	cost >= λ N - Σ_reserved count·max(0, λ a_o - p_o) + Σ_{i in B} e_i.
//
// λ = 0 gives Σ_{i in B} (cheapest offering holding i); λ at the cheapest
// unlimited rate gives at least the fractional cover plus each B pod's excess
// over that rate. The right-hand side is concave in λ, so a grid between the
// two is evaluated for each weighting.
func exclusiveBound(m *model, placed map[*shape]int, frees []scheduling.Resources, residual *scheduling.Resources, idx *fitIndex, weights []weight) float64 {
	supplies := idx.supplies
	var cands []exclusive
	for _, s := range m.shapes[:m.pending] {
		n := placed[s]
		if n == 0 || slices.ContainsFunc(frees, func(f scheduling.Resources) bool { return s.req.Fits(&f) }) {
			continue
		}
		fits := idx.of(s)
		if len(fits) == 0 {
			continue
		}
		if !separated(m, s, s, supplies) {
			n = 1
		}
		cands = append(cands, exclusive{s: s, n: n, fits: fits, price: idx.cheapest(s)})
	}
	// Greedy: the priciest pods first, each kept if it is separated from
	// every pod already kept. Any such set is valid; this one is large where
	// it matters.
	slices.SortStableFunc(cands, func(a, b exclusive) int { return cmpFloat(b.price, a.price) })
	var set []exclusive
	for _, c := range cands {
		if !slices.ContainsFunc(set, func(e exclusive) bool { return !separated(m, c.s, e.s, supplies) }) {
			set = append(set, c)
		}
	}
	if len(set) == 0 {
		return 0
	}
	var bound float64
	for _, e := range set {
		bound += float64(e.n) * e.price
	}
	if residual.IsZero() {
		return bound
	}
	a := make([]float64, len(supplies))
	for _, w := range weights {
		need := w.of(residual)
		rate := math.Inf(1)
		for i, s := range supplies {
			a[i] = w.of(&s.alloc)
			if s.count == math.MaxInt && a[i] > 0 {
				rate = math.Min(rate, s.price/a[i])
			}
		}
		if math.IsInf(rate, 1) {
			continue
		}
		const steps = 8
		for k := 1; k <= steps; k++ {
			lambda := rate * float64(k) / steps
			v := lambda * need
			for i, s := range supplies {
				if s.count != math.MaxInt && lambda*a[i] > s.price {
					v -= float64(s.count) * (lambda*a[i] - s.price)
				}
			}
			for _, e := range set {
				excess := math.Inf(1)
				for _, i := range e.fits {
					excess = math.Min(excess, supplies[i].price-lambda*a[i])
				}
				v += float64(e.n) * excess
			}
			bound = math.Max(bound, v)
		}
	}
	return bound
}

// separated reports whether a pod of shape a and a different pod of shape b
// can never share a machine: no type holds both, or a hostname anti-affinity
// (own or symmetric, both hard) keeps them apart.
func separated(m *model, a, b *shape, supplies []supply) bool {
	for _, x := range [][2]*shape{{a, b}, {b, a}} {
		for _, r := range x[0].levels[0].anti {
			if r.key == v1.LabelHostname && m.groups[r.group].has(x[1].idx) {
				return true
			}
		}
	}
	both := a.req.Add(b.req)
	for i := range supplies {
		if canHold(a, &supplies[i], &both) && canHold(b, &supplies[i], &both) {
			return false
		}
	}
	return true
}

// fitIndex memoises, per class of shapes, the supplies able to hold one pod.
type fitIndex struct {
	supplies []supply
	memo     map[string]*fitEntry
	byShape  map[*shape]*fitEntry
}

// fitEntry is the supplies able to hold a pod of a shape, and the cheapest.
type fitEntry struct {
	fits     []int
	cheapest float64
}

func newFitIndex(supplies []supply) *fitIndex {
	return &fitIndex{supplies: supplies, memo: map[string]*fitEntry{}, byShape: map[*shape]*fitEntry{}}
}

// of lists the supplies able to hold one pod of s. Shared: do not modify.
func (f *fitIndex) of(s *shape) []int { return f.entry(s).fits }

// cheapest is the lowest price of a supply able to hold one pod of s, +Inf
// when there is none. Several terms ask it per shape; it is computed once.
func (f *fitIndex) cheapest(s *shape) float64 { return f.entry(s).cheapest }

func (f *fitIndex) entry(s *shape) *fitEntry {
	if e, ok := f.byShape[s]; ok {
		return e
	}
	key := fitKey(s)
	e, ok := f.memo[key]
	if !ok {
		e = &fitEntry{cheapest: math.Inf(1)}
		for i := range f.supplies {
			if canHold(s, &f.supplies[i], &s.req) {
				e.fits = append(e.fits, i)
				e.cheapest = math.Min(e.cheapest, f.supplies[i].price)
			}
		}
		f.memo[key] = e
	}
	f.byShape[s] = e
	return e
}

// fitKey identifies everything canHold reads of a shape: its requests, its
// most relaxed node requirements and the pools whose taints it tolerates.
func fitKey(s *shape) string {
	l := s.levels[len(s.levels)-1]
	var b strings.Builder
	b.WriteString(s.req.Key())
	for _, alt := range l.alts {
		b.WriteString("\x00")
		b.WriteString(alt.String())
	}
	b.WriteString("\x00")
	for _, err := range l.tolerates {
		b.WriteByte(byte('0' + b2i(err == nil)))
	}
	return b.String()
}

// canHold reports whether a machine bought as sp could hold req for a pod of
// shape s: the amount fits, some is left to buy, and the pod may run on the
// type at all (its most relaxed node requirements and the pool's taints).
func canHold(s *shape, sp *supply, req *scheduling.Resources) bool {
	if sp.count <= 0 || !req.Fits(&sp.alloc) {
		return false
	}
	l := s.levels[len(s.levels)-1]
	if l.tolerates[sp.pool] != nil {
		return false
	}
	for ai := range l.alts {
		if l.viable[ai][sp.pool][sp.typ] {
			return true
		}
	}
	return false
}

// sizeClassScanMax is the most thresholds sizeClassBound finds rates for by
// a scan per threshold rather than by sorting the supplies.
var sizeClassScanMax = 16

// sizeClassBound strengthens the fractional cover with where pods can go: a
// pod only fits machines at least its size, so cheap small machines cannot
// supply the demand of big pods.
//
// Proof. Fix weights w >= 0, write a_o for offering o's weighted allocatable
// and, for each placed shape s, m_s for the least a_o over offerings that can
// hold one pod of s. For a threshold θ > 0 let D(θ) be the weighted requests
// of the placed pods with m_s >= θ, less the existing nodes' weighted free
// capacity F_w: those pods sit on existing nodes or on new machines with
// a_o >= θ, so in any plan the new machines with a_o >= θ supply at least
// D(θ). With thresholds 0 = θ_0 < θ_1 < ... < θ_K (θ_0 standing for the whole
// residual demand N), these are the constraints of a covering LP whose every
// integral plan is feasible. Its dual is feasible for λ_k >= 0 with, for each
// unlimited offering o, Σ_{k: θ_k <= a_o} λ_k a_o <= p_o. Let r_k be the least
// price per unit of an unlimited offering with a_o >= θ_k (non-decreasing in
// k) and λ_0 = r_0, λ_k = r_k - r_{k-1}: the sum telescopes to r_j for the
// largest θ_j <= a_o, and r_j a_o <= p_o by definition of r_j. Reserved
// offerings may be cheaper than that; each is bought at most ReservedCount
// times, which weak duality charges as count · max(0, r_j a_o - p_o). So
//
//	cost >= Σ_k λ_k D(θ_k) - Σ_reserved count·max(0, r_j a_o - p_o).
func sizeClassBound(m *model, placed map[*shape]int, free, residual *scheduling.Resources, idx *fitIndex, weights []weight) float64 {
	supplies := idx.supplies
	type class struct {
		s    *shape
		n    int
		fits []int
	}
	// Shapes with equal requests and equal placement options form one
	// class: thousands of shapes that differ only in labels cost one.
	var classes []class
	byKey := map[string]int{}
	for _, s := range m.shapes[:m.pending] {
		if placed[s] == 0 {
			continue
		}
		key := fitKey(s)
		if ci, ok := byKey[key]; ok {
			classes[ci].n += placed[s]
			continue
		}
		if fits := idx.of(s); len(fits) > 0 {
			byKey[key] = len(classes)
			classes = append(classes, class{s: s, n: placed[s], fits: fits})
		}
	}
	if len(classes) == 0 || residual.IsZero() {
		return 0
	}
	weighted := func(w weight, r *scheduling.Resources) float64 { return w.of(r) }
	a := make([]float64, len(supplies))
	byA := make([]int, len(supplies)) // supply indexes, largest a first
	type threshold struct{ theta, demand float64 }
	var best float64
	for _, w := range weights {
		for i := range supplies {
			a[i] = weighted(w, &supplies[i].alloc)
		}
		ths := make([]threshold, 0, len(classes))
		for _, c := range classes {
			theta := math.Inf(1)
			for _, i := range c.fits {
				theta = math.Min(theta, a[i])
			}
			if theta > 0 {
				ths = append(ths, threshold{theta: theta, demand: float64(c.n) * weighted(w, &c.s.req)})
			}
		}
		// Largest threshold first: D accumulates, and the least unlimited
		// rate over a_o >= θ is a running minimum down the sorted supplies.
		slices.SortFunc(ths, func(x, y threshold) int { return cmpFloat(y.theta, x.theta) })
		type step struct{ theta, rate, demand float64 }
		var steps []step // largest θ first
		var demand float64
		// rate is the least unlimited rate over supplies with a >= θ: with
		// few thresholds a scan per threshold, with many a running minimum
		// down the supplies sorted by a (sorting every supply once per
		// weighting was most of the bound's time on small snapshots). Both
		// take the minimum over the same supplies.
		rate, j, sorted := math.Inf(1), 0, len(ths) > sizeClassScanMax
		if sorted {
			for i := range byA {
				byA[i] = i
			}
			slices.SortFunc(byA, func(x, y int) int { return cmpFloat(a[y], a[x]) })
		}
		down := func(theta float64) {
			if !sorted {
				for i, s := range supplies {
					if s.count == math.MaxInt && a[i] > 0 && a[i] >= theta {
						rate = math.Min(rate, s.price/a[i])
					}
				}
				return
			}
			for ; j < len(byA) && a[byA[j]] >= theta; j++ {
				if s := supplies[byA[j]]; s.count == math.MaxInt && a[byA[j]] > 0 {
					rate = math.Min(rate, s.price/a[byA[j]])
				}
			}
		}
		for _, th := range ths {
			demand += th.demand
			down(th.theta)
			if len(steps) > 0 && steps[len(steps)-1].theta == th.theta {
				steps[len(steps)-1].demand = demand
				continue
			}
			steps = append(steps, step{theta: th.theta, rate: rate, demand: demand})
		}
		down(math.Inf(-1))
		if math.IsInf(rate, 1) {
			continue
		}
		// θ_0: the whole residual at the global least rate.
		steps = append(steps, step{theta: 0, rate: rate, demand: weighted(w, residual) + weighted(w, free)})
		slices.Reverse(steps) // smallest θ first
		freeW := weighted(w, free)
		var v, prev float64
		for _, st := range steps {
			if math.IsInf(st.rate, 1) {
				break // no unlimited supply that large: stop at a feasible dual
			}
			v += (st.rate - prev) * math.Max(0, st.demand-freeW)
			prev = st.rate
		}
		for i, s := range supplies {
			if s.count == math.MaxInt || a[i] <= 0 {
				continue
			}
			// r_j: the rate of the largest threshold the offering reaches.
			r := 0.0
			for _, st := range steps {
				if math.IsInf(st.rate, 1) || st.theta > a[i] {
					break
				}
				r = st.rate
			}
			v -= float64(s.count) * math.Max(0, r*a[i]-s.price)
		}
		best = math.Max(best, v)
	}
	return best
}
