package solver

import (
	"cmp"
	"errors"
	"maps"
	"math"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// lpBound is the value of a linear-programming relaxation of the plan that
// respects who may run where, certified by a feasible dual solution.
//
// The relaxation. Placed pods form classes c of equal requests r_c and equal
// eligibility (the offerings whose pool's taints they tolerate, whose type
// their most relaxed node requirements admit and whose allocatable holds
// them); n_c pods of c are placed. A supply j is an offering as in lowerBound
// (price p_j, allocatable a_j capped by usableCaps and rounded down to a
// multiple of its classes' requests (roundAllocs), count_j machines at most
// for reservations), plus, when there are existing nodes, one supply of price
// 0 and count 1 holding their summed free capacity, eligible for the classes
// that fit some existing node they may run on. For each eligible pair, k_cj is
// a cap on the pods of c one machine of j holds: how many fit by requests
// and, when every shape in c allows at most q of its pods per node, the sum
// of those q. Any plan gives a feasible point of
//
//	min Σ_j p_j y_j  s.t.  Σ_j x_cj >= n_c;  Σ_c r_cd x_cj <= a_jd y_j;
//	                       x_cj <= k_cj y_j;  Σ_{j takes c} y_j >= L_c;
//	                       y_j <= count_j;  x, y >= 0
//
// by letting y_j count the machines bought as j (each costs at least p_j,
// since unlimited supplies carry a type's cheapest offering; the existing
// nodes' supply counts 1 when used) and x_cj the pods of c on them. The
// machine-count row holds with L_c = ceil(n_c / max_j k_cj): the machines
// holding c's pods are whole, each holds at most max_j k_cj of them, and
// all are of supplies that take c. So its optimum is at most the cost of
// any plan.
//
// The certificate. For weights u >= 0 on the classes and μ >= 0 on the
// machine-count rows let K_j(u) be the most one machine of j can hold:
// max Σ_c u_c x_c over 0 <= x_c <= k_cj (eligible c) with Σ_c r_c x_c <= a_j.
// Its LP dual says K_j(u) <= φ_j(v) = a_j·v + Σ_c k_cj max(0, u_c - r_c·v)
// for every v >= 0. Let W_j = φ_j(v) + Σ_{c eligible on j} μ_c. If s·W_j <= p_j
// for every unlimited j, then (s·u, s·μ, the v's scaled, z_j = max(0,
// s·W_j - p_j)) is feasible for the dual of the program above, whose value
// s·Σ_c (n_c u_c + L_c μ_c) - Σ_limited count_j·max(0, s·W_j - p_j) is
// therefore a lower bound on every plan (weak duality). The bound holds for any u and v, so
// the simplex only has to find good ones: its rounding errors can loosen the
// bound but never break it.
//
// u comes from column generation: the program restricted to a working set of
// supplies is solved exactly; every supply's K_j at its duals is computed;
// supplies whose machine is worth more than its price join the set, until
// none does or the round limit is reached.
//
// With zones, the program also gets the zone rows of hard zone spreads (see
// zoneRow), and lpBound returns 0 when there are none. Plans are guided by
// the program without them: packing follows the zone rules itself. warm,
// when not nil, is where an earlier run over the same pods and supplies
// ended (the guide's, lpGuide.start): starting there saves most master
// solves.
func lpBound(m *model, placed map[*shape]int, frees []scheduling.Resources, residual *scheduling.Resources, supplies []supply, idx *fitIndex, zones bool, warm *lpStart) (float64, *lpGuide) {
	dims := residual.Names()
	if len(dims) == 0 || len(placed) == 0 {
		return 0, nil
	}
	// Every placed pod requests a pod slot; keep the other dimensions too
	// even when existing nodes cover them.
	b := &lpBuilder{m: m, dims: dims, start: lpStart{caps: map[capKey]bool{}}}
	if warm != nil {
		b.start = lpStart{set: slices.Clone(warm.set), caps: maps.Clone(warm.caps)}
	}
	b.scale = make([]float64, len(dims))
	for _, sp := range supplies {
		for d, name := range dims {
			b.scale[d] = math.Max(b.scale[d], float64(sp.alloc.Get(name)))
		}
	}
	for d := range b.scale {
		if b.scale[d] == 0 {
			b.scale[d] = 1
		}
	}
	b.supplies = make([]lpSupply, 0, len(supplies)+1)
	for i := range supplies {
		sp := &supplies[i]
		offered := m.pools[sp.pool].types[sp.typ].zones
		b.supplies = append(b.supplies, lpSupply{alloc: b.vec(&sp.alloc), raw: b.raw(&sp.alloc), price: sp.price, count: sp.count, zones: offered})
	}
	existing := -1
	var free scheduling.Resources
	for i := range frees {
		free = free.Add(frees[i])
	}
	if !free.IsZero() {
		existing = len(b.supplies)
		var onNodes uint64
		for _, n := range m.nodes {
			if bit := m.zoneBits[n.Labels[v1.LabelZone]]; bit != 0 {
				onNodes |= bit
			} else {
				onNodes = math.MaxUint64 // a node of no known zone: any
			}
		}
		b.supplies = append(b.supplies, lpSupply{alloc: b.vec(&free), raw: b.raw(&free), price: 0, count: 1, zones: onNodes})
	}
	if !b.buildClasses(placed, frees, idx, existing) {
		return 0, nil
	}
	rows := b.zoneRows(placed)
	if zones {
		if len(rows) == 0 {
			return 0, nil
		}
		b.rows = rows
		b.indexRows()
		b.signatures()
		b.dominance()
	}
	bound := b.run()
	bound = math.Max(bound, b.integerCover(bound))
	bound = math.Max(bound, b.smallExact(existing))
	g := b.guide(supplies, existing)
	if g != nil {
		start := b.start // a copy: the guide keeps none of the builder
		g.zoneRows, g.start = len(rows), &start
	}
	return bound, g
}

// lpGuide is the LP's fractional plan, for the LP-guided strategies: the
// machines it buys per instance type, and per shape the types it puts the
// shape's class on.
type lpGuide struct {
	// placed and bound: the pods the LP was solved for and its certified
	// bound, reused by lowerBound when the plan places exactly those pods.
	placed map[*shape]int
	bound  float64
	// classOf is each shape's LP class (-1: none). prefer is, per class,
	// the set of machines (a bit per type of each pool, see model.typeBit)
	// the LP puts its pods on, nil for none: first fit tries started
	// machines of those types first. quota is, per class and type bit, how
	// many of its pods the LP puts there (x_cj summed over the type's
	// offerings). States copy prefer and quota (see preopen).
	classOf []int32
	prefer  [][]uint64
	quota   []map[int]float64
	// zoneRows is how many zone rows the pods' spreads give (see zoneRow),
	// which the guide's program leaves out; start is where its run ended,
	// to start the program with the rows from.
	zoneRows int
	start    *lpStart
	// machines are the LP's machines per instance type (y_j), priciest first.
	machines []lpMachines
	// in and idx are the bound's input and fit index for placed, which
	// lowerBound reuses rather than rebuilding over every type and offering;
	// nil when the guide left pods out. Only read after packing.
	in  *boundInput
	idx *fitIndex
}

// lpMachines is y_j: how many machines of a type the LP buys.
type lpMachines struct {
	pool, typ int
	count     float64
	price     float64
}

func (b *lpBuilder) guide(supplies []supply, existing int) *lpGuide {
	if b.y == nil {
		return nil
	}
	// Pods open nodes in the heaviest pool that takes them (pools are
	// sorted heaviest first), so a machine is started only in a pool that
	// is the heaviest for every class the LP puts on it.
	heaviest := make([]int, len(b.classes))
	for ci := range heaviest {
		heaviest[ci] = math.MaxInt
	}
	for j := range b.supplies {
		if j == existing {
			continue
		}
		for _, ci := range b.supplies[j].classes {
			heaviest[ci] = min(heaviest[ci], supplies[j].pool)
		}
	}
	ok := map[int]bool{}
	for j := range b.y {
		ok[j] = true
	}
	for key, x := range b.x {
		if j, ci := key[0], key[1]; j != existing && x > 1e-6 && supplies[j].pool != heaviest[ci] {
			ok[j] = false
		}
	}
	g := &lpGuide{
		classOf: make([]int32, len(b.m.shapes)),
		prefer:  make([][]uint64, len(b.classes)),
		quota:   make([]map[int]float64, len(b.classes)),
	}
	for i := range g.classOf {
		g.classOf[i] = -1
	}
	for s, ci := range b.classOf {
		g.classOf[s.idx] = int32(ci)
	}
	for key, x := range b.x {
		if j, ci := key[0], key[1]; j != existing && x > 1e-6 {
			if g.prefer[ci] == nil {
				g.prefer[ci] = make([]uint64, (b.m.numTypes+63)/64)
				g.quota[ci] = map[int]float64{}
			}
			bit := b.m.typeBit(supplies[j].pool, supplies[j].typ)
			g.prefer[ci][bit/64] |= 1 << (bit % 64)
			g.quota[ci][bit] += x
		}
	}
	for j, y := range b.y {
		if j == existing || y < 1e-6 || supplies[j].count != math.MaxInt || !ok[j] {
			continue
		}
		sp := supplies[j]
		g.machines = append(g.machines, lpMachines{pool: sp.pool, typ: sp.typ, count: y, price: sp.price})
	}
	slices.SortFunc(g.machines, func(a, b lpMachines) int {
		return cmp.Or(cmpFloat(b.price, a.price), cmp.Compare(a.pool, b.pool), cmp.Compare(a.typ, b.typ))
	})
	return g
}

type lpSupply struct {
	alloc []float64 // scaled allocatable per dimension, see roundAllocs
	raw   []int64   // allocatable per dimension, unscaled
	price float64
	count int
	// classes eligible on this supply, with their caps.
	classes []int
	caps    []float64 // k_cj: pods of the class one machine holds at most
	// capRow marks the caps tighter than requests alone imply.
	capRow []bool
	// sig is shared by supplies of equal allocatable, classes and caps,
	// whose knapsacks are equal.
	sig int
	// dominated: another unlimited supply is no pricier, holds at least as
	// much in every dimension, takes every class this one takes and counts
	// in every zone row this one counts in, so its knapsack is at least this
	// one's; a certificate that holds for it holds here, and this one is
	// never priced.
	dominated bool
	// zones are the zone bits the type is offered in (model.zoneBits), for
	// the zone rows; rowsAt[k] the zone rows classes[k] counts in here.
	zones  uint64
	rowsAt [][]int
}

type lpClass struct {
	n float64
	// machines is L_c: the least number of machines that can hold the
	// class, ceil(n / the largest cap of a supply that takes it).
	machines float64
	req      []float64 // scaled requests per dimension
	raw      []int64   // requests per dimension, unscaled
	perNode  float64   // summed per-node caps of its shapes; 0 when unbounded
}

type lpBuilder struct {
	m        *model
	dims     []corev1.ResourceName
	scale    []float64
	supplies []lpSupply
	classes  []lpClass
	nsig     int
	classOf  map[*shape]int
	// x and y are the last master's primal: pods per (supply, class) and
	// machines per supply.
	x map[[2]int]float64
	y map[int]float64
	// kmemo caches knapsack values per signature for the weights kmemoU.
	kmemo  []float64
	kmemoU []float64
	// rows are the zone cuts (see zoneRow); their duals follow the
	// machine-count weights in u. rowZones is the union of their zones.
	rows     []zoneRow
	rowZones uint64
	// cheapest caches cheapestUnlimited.
	cheapest []int
	// start is where run starts (see lpBound's warm) and, after it, where
	// it ended.
	start lpStart
}

// lpStart is a state of the column generation: the working set of supplies
// and the cap rows the master has found binding (see master). Both only
// shape the path to the optimum, never the bound's validity.
type lpStart struct {
	set  []int
	caps map[capKey]bool
}

// capKey is the cap row x_cj <= k_cj y_j of supply j and its k-th class.
type capKey struct{ j, k int }

func (b *lpBuilder) raw(r *scheduling.Resources) []int64 {
	out := make([]int64, len(b.dims))
	for d, name := range b.dims {
		out[d] = r.Get(name)
	}
	return out
}

func (b *lpBuilder) vec(r *scheduling.Resources) []float64 {
	out := make([]float64, len(b.dims))
	for d, name := range b.dims {
		out[d] = float64(r.Get(name)) / b.scale[d]
	}
	return out
}

// buildClasses groups the placed shapes by requests, eligibility and per-node
// caps, and records each supply's eligible classes. It reports false when some
// placed pod has no eligible supply (the bound then stays with the other terms).
func (b *lpBuilder) buildClasses(placed map[*shape]int, frees []scheduling.Resources, idx *fitIndex, existing int) bool {
	byKey := map[string]int{}
	b.classOf = map[*shape]int{}
	shapes := make([]*shape, 0, len(placed))
	for s := range placed {
		shapes = append(shapes, s)
	}
	slices.SortFunc(shapes, func(x, y *shape) int { return x.idx - y.idx })
	fitsOf := make([][]int, 0)
	for _, s := range shapes {
		fits := idx.of(s)
		onExisting := existing >= 0 && b.fitsExisting(s, frees)
		perNode := s.levels[len(s.levels)-1].perNode
		key := fitKey(s) + "\x00" + strconv.FormatBool(onExisting) + "\x00" + strconv.Itoa(min(perNode, 1))
		ci, ok := byKey[key]
		if !ok {
			ci = len(b.classes)
			byKey[key] = ci
			b.classes = append(b.classes, lpClass{req: b.vec(&s.req), raw: b.raw(&s.req)})
			f := slices.Clone(fits)
			if onExisting {
				f = append(f, existing)
			}
			if len(f) == 0 {
				return false
			}
			fitsOf = append(fitsOf, f)
		}
		b.classOf[s] = ci
		c := &b.classes[ci]
		n := float64(placed[s])
		c.n += n
		if perNode > 0 {
			c.perNode += math.Min(float64(perNode), n)
		}
	}
	maxCap := make([]float64, len(b.classes))
	for ci, fits := range fitsOf {
		c := &b.classes[ci]
		for _, j := range fits {
			sp := &b.supplies[j]
			implied := math.Inf(1)
			for d, r := range c.req {
				if r > 0 {
					implied = math.Min(implied, sp.alloc[d]/r)
				}
			}
			k := math.Floor(implied*(1+1e-9) + 1e-9)
			perNode := c.perNode
			if j == existing {
				// The free capacity of many nodes: no whole-pod rounding,
				// and the per-node cap once per node.
				k, perNode = implied, perNode*float64(len(b.m.nodes))
			}
			if perNode > 0 {
				k = math.Min(k, perNode)
			}
			if k <= 0 {
				continue
			}
			sp.classes = append(sp.classes, ci)
			sp.caps = append(sp.caps, k)
			maxCap[ci] = math.Max(maxCap[ci], k)
			// A cap row only where it cuts materially: whole pods on big
			// machines, or a per-node cap.
			sp.capRow = append(sp.capRow, k < 0.95*implied)
		}
	}
	for ci := range b.classes {
		if maxCap[ci] > 0 {
			b.classes[ci].machines = math.Ceil(b.classes[ci].n/maxCap[ci] - 1e-9)
		}
	}
	b.roundAllocs()
	b.signatures()
	b.dominance()
	return true
}

// roundAllocs lowers each supply's allocatable, per dimension, to a multiple
// of the greatest common divisor g of its classes' requests. The pods on a
// machine request a sum of such requests, a multiple of g no larger than the
// allocatable, so the rounded allocatable still holds them and the argument
// of lpBound stands. It matters on small machines: a t3a.micro's 625 MiB
// hold at most 512 MiB of pods whose requests are multiples of 128 MiB, and
// without rounding the relaxation fills the other 113 MiB with pod fractions.
// Caps k_cj are unchanged: floor(a/r) = floor(floor(a/g)·g/r) when g divides r.
func (b *lpBuilder) roundAllocs() {
	for j := range b.supplies {
		sp := &b.supplies[j]
		for d := range b.dims {
			var g int64
			for _, ci := range sp.classes {
				g = gcd(g, b.classes[ci].raw[d])
			}
			if g > 1 {
				sp.alloc[d] = float64(sp.raw[d]/g*g) / b.scale[d]
			}
		}
	}
}

func gcd(a, b int64) int64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// signatures numbers the supplies by what their knapsack reads.
func (b *lpBuilder) signatures() {
	ids := map[string]int{}
	var key []byte
	for j := range b.supplies {
		sp := &b.supplies[j]
		key = key[:0]
		for _, a := range sp.alloc {
			key = strconv.AppendFloat(key, a, 'g', -1, 64)
			key = append(key, ',')
		}
		key = strconv.AppendUint(key, sp.zones&b.rowZones, 16)
		key = append(key, ',')
		for k, ci := range sp.classes {
			key = strconv.AppendInt(key, int64(ci), 10)
			key = append(key, ':')
			key = strconv.AppendFloat(key, sp.caps[k], 'g', -1, 64)
			key = append(key, ',')
		}
		id, ok := ids[string(key)]
		if !ok {
			id = len(ids)
			ids[string(key)] = id
		}
		sp.sig = id
	}
	b.nsig = len(ids)
}

// dominance marks the unlimited supplies another one dominates (see
// lpSupply.dominated). Ties are broken by index, so of equal supplies one
// stays.
func (b *lpBuilder) dominance() {
	idx := make([]int, 0, len(b.supplies))
	for j := range b.supplies {
		if b.supplies[j].count == math.MaxInt {
			idx = append(idx, j)
		}
	}
	// Cheapest first: a dominator is never pricier than what it dominates.
	slices.SortStableFunc(idx, func(x, y int) int { return cmpFloat(b.supplies[x].price, b.supplies[y].price) })
	var kept []int
	for _, j := range idx {
		sp := &b.supplies[j]
		sp.dominated = false
		for _, i := range kept {
			if b.dominates(&b.supplies[i], sp) {
				sp.dominated = true
				break
			}
		}
		if !sp.dominated {
			kept = append(kept, j)
		}
	}
}

// dominates reports whether a is no pricier than d, holds at least as much in
// every dimension and takes every class d takes with at least its cap.
func (b *lpBuilder) dominates(a, d *lpSupply) bool {
	if a.price > d.price || (d.zones&^a.zones)&b.rowZones != 0 {
		return false
	}
	for i, v := range d.alloc {
		if a.alloc[i] < v {
			return false
		}
	}
	k := 0
	for di, ci := range d.classes {
		for k < len(a.classes) && a.classes[k] < ci {
			k++
		}
		if k == len(a.classes) || a.classes[k] != ci || a.caps[k] < d.caps[di] {
			return false
		}
	}
	return true
}

// fitsExisting reports whether a pod of s fits some existing node's free
// capacity and may run there (taints and most relaxed node requirements).
func (b *lpBuilder) fitsExisting(s *shape, frees []scheduling.Resources) bool {
	l := s.levels[len(s.levels)-1]
	for i, n := range b.m.nodes {
		if !s.req.Fits(&frees[i]) || scheduling.Tolerates(s.pc.Tolerations, n.Taints) != nil {
			continue
		}
		for _, alt := range l.alts {
			if alt.Matches(n.Labels) {
				return true
			}
		}
	}
	return false
}

const (
	lpMaxRounds   = 40
	lpAddPerRound = 8
	lpMaxPivots   = 50000
)

// lpPivotLimit bounds one simplex run on a program of the given rows. The
// programs here take at most about 7 pivots per row (every scenario; the
// most, 1,540 on 240 rows). A run far beyond that has lost precision to a
// tiny pivot element and only wanders: on a single-zone GPU/CPU mix of
// 24,000 pods two runs each spent 50,000 pivots (7 s) that way. Stopping
// it costs nothing but that round: the previous round's duals still
// certify a bound and its primal still guides.
func lpPivotLimit(rows int) int { return min(lpMaxPivots, 20*rows+1000) }

// stopped counts a run that reached its pivot limit.
func (b *lpBuilder) stopped(err error) {
	if errors.Is(err, errIterations) {
		b.m.lpStopped.Add(1)
	}
}

// run is the column generation and the certificate.
func (b *lpBuilder) run() float64 {
	inSet := make([]bool, len(b.supplies))
	var set []int
	add := func(j int) {
		if !inSet[j] {
			inSet[j] = true
			set = append(set, j)
		}
	}
	defer func() { b.start.set = set }()
	for _, j := range b.start.set {
		if j < len(b.supplies) {
			add(j)
		}
	}
	// Start with every limited supply (reservations, existing nodes) and each
	// class's cheapest supply per pod, so the master is feasible.
	for j := range b.supplies {
		if b.supplies[j].count != math.MaxInt {
			add(j)
		}
	}
	for ci, best := range b.cheapestUnlimited() {
		if best < 0 {
			for j := range b.supplies {
				if slices.Contains(b.supplies[j].classes, ci) {
					best = j
					break
				}
			}
		}
		add(best)
	}
	// And for each zone row the cheapest supply per pod offered in its zone.
	for _, row := range b.rows {
		if j := b.cheapestIn(row); j >= 0 {
			add(j)
		}
	}
	var u []float64
	for range lpMaxRounds {
		duals, ok := b.master(set)
		if !ok {
			break
		}
		u = duals
		type viol struct {
			j     int
			ratio float64
		}
		var viols []viol
		for j := range b.supplies {
			sp := &b.supplies[j]
			if inSet[j] || sp.dominated || b.cheapBound(j, u) <= sp.price*(1+1e-6) {
				continue
			}
			k := b.knapsack(j, u)
			if k > sp.price*(1+1e-6)+1e-12 {
				viols = append(viols, viol{j, k / math.Max(sp.price, 1e-12)})
			}
		}
		if len(viols) == 0 {
			break
		}
		slices.SortStableFunc(viols, func(x, y viol) int { return cmpFloat(y.ratio, x.ratio) })
		for _, v := range viols[:min(len(viols), lpAddPerRound)] {
			add(v.j)
		}
	}
	if u == nil {
		return 0
	}
	return b.certify(u)
}

// master solves the program restricted to the supplies in set and returns the
// duals of the demand rows. Cap rows are added lazily: only those the
// previous solution violates, which keeps the tableau small.
func (b *lpBuilder) master(set []int) ([]float64, bool) {
	active := b.start.caps // kept across rounds: the same rows bind again
	for iter := range 8 {
		p := &lp{}
		// Rows 0..C-1: demand; C..2C-1: each class needs at least L_c
		// machines of the supplies that take it; then the zone rows.
		demand := make([]lpRow, 2*len(b.classes)+len(b.rows))
		for ci, c := range b.classes {
			// x is measured as a share of the class (x' = x / n_c), so every
			// demand row is "≥ 1" whatever the pod counts: far better
			// conditioned for the simplex than rows of 1 to 100,000.
			demand[ci] = lpRow{kind: rowGE, rhs: 1}
			demand[len(b.classes)+ci] = lpRow{kind: rowGE, rhs: c.machines}
		}
		for r := range b.rows {
			// Scaled to "≥ 1" like the demand rows, and each a little
			// above it: equal right-hand sides made the simplex cycle
			// between degenerate bases until its pivot limit. Any duals
			// certify a bound, so the perturbation cannot break it.
			demand[2*len(b.classes)+r] = lpRow{kind: rowGE, rhs: 1 + 1e-6*float64(r+1)}
		}
		type capVar struct {
			key  capKey
			x, y int
		}
		type xVar struct{ j, ci, x int }
		var xVars []xVar
		var yVars [][2]int
		var capVars []capVar
		var rows []lpRow
		for _, j := range set {
			sp := &b.supplies[j]
			y := p.addVar(sp.price)
			yVars = append(yVars, [2]int{j, y})
			res := make([]lpRow, len(b.dims))
			for d := range b.dims {
				res[d] = lpRow{kind: rowLE, idx: []int{y}, val: []float64{-sp.alloc[d]}}
			}
			for _, ci := range sp.classes {
				mr := &demand[len(b.classes)+ci]
				mr.idx, mr.val = append(mr.idx, y), append(mr.val, 1)
			}
			for k, ci := range sp.classes {
				x := p.addVar(0)
				xVars = append(xVars, xVar{j, ci, x})
				demand[ci].idx = append(demand[ci].idx, x)
				demand[ci].val = append(demand[ci].val, 1)
				if sp.rowsAt != nil {
					for _, r := range sp.rowsAt[k] {
						zr := &demand[2*len(b.classes)+r]
						zr.idx, zr.val = append(zr.idx, x), append(zr.val, b.classes[ci].n/b.rows[r].need)
					}
				}
				n := b.classes[ci].n
				for d, r := range b.classes[ci].req {
					if r > 0 {
						res[d].idx = append(res[d].idx, x)
						res[d].val = append(res[d].val, r*n)
					}
				}
				if sp.capRow[k] {
					key := capKey{j, k}
					capVars = append(capVars, capVar{key, x, y})
					if active[key] {
						rows = append(rows, lpRow{kind: rowLE, idx: []int{x, y}, val: []float64{n, -sp.caps[k]}})
					}
				}
			}
			for d := range res {
				if len(res[d].idx) > 1 {
					rows = append(rows, res[d])
				}
			}
			if sp.count != math.MaxInt {
				rows = append(rows, lpRow{kind: rowLE, idx: []int{y}, val: []float64{1}, rhs: float64(sp.count)})
			}
		}
		p.rows = append(demand, rows...)
		res, err := p.solve(lpPivotLimit(len(p.rows)))
		if err != nil {
			b.stopped(err)
			return nil, false
		}
		added := false
		for _, cv := range capVars {
			sp := &b.supplies[cv.key.j]
			if !active[cv.key] && res.x[cv.x]*b.classes[sp.classes[cv.key.k]].n > sp.caps[cv.key.k]*res.x[cv.y]+1e-7 {
				active[cv.key], added = true, true
			}
		}
		// u holds the class weights, then the machine-count weights μ,
		// then the zone rows' weights.
		u := make([]float64, 2*len(b.classes)+len(b.rows))
		for i := range u {
			u[i] = math.Max(0, res.dual[i])
		}
		for ci, c := range b.classes {
			u[ci] /= c.n // back from shares to pods
		}
		for r, row := range b.rows {
			u[2*len(b.classes)+r] /= row.need // back from the scaled row to pods
		}
		b.x, b.y = map[[2]int]float64{}, map[int]float64{}
		for _, yv := range yVars {
			if v := res.x[yv[1]]; v > 0 {
				b.y[yv[0]] = v
			}
		}
		for _, xv := range xVars {
			if v := res.x[xv.x]; v > 0 {
				b.x[[2]int{xv.j, xv.ci}] = v * b.classes[xv.ci].n
			}
		}
		if !added || iter == 7 {
			// Any weights certify a bound; these are the best found.
			return u, true
		}
	}
	return nil, false
}

// knapsack returns an upper bound on K_j(u), the most one machine of supply j
// holds at class weights u, with the dual prices v that certify it: φ_j(v).
func (b *lpBuilder) knapsack(j int, u []float64) float64 {
	sig := b.supplies[j].sig
	if !slices.Equal(b.kmemoU, u) {
		b.kmemoU = slices.Clone(u)
		b.kmemo = make([]float64, b.nsig)
		for i := range b.kmemo {
			b.kmemo[i] = -1
		}
	}
	if k := b.kmemo[sig]; k >= 0 {
		return k
	}
	k := b.solveKnapsack(j, u) + b.machineWeight(j, u)
	b.kmemo[sig] = k
	return k
}

// machineWeight is Σ μ_c over the classes supply j takes: what one machine
// of j is worth to the machine-count rows.
func (b *lpBuilder) machineWeight(j int, u []float64) float64 {
	var out float64
	if len(u) <= len(b.classes) {
		return 0
	}
	for _, ci := range b.supplies[j].classes {
		out += u[len(b.classes)+ci]
	}
	return out
}

func (b *lpBuilder) solveKnapsack(j int, u []float64) float64 {
	sp := &b.supplies[j]
	p := &lp{}
	res := make([]lpRow, len(b.dims))
	for d := range b.dims {
		res[d] = lpRow{kind: rowLE, rhs: sp.alloc[d]}
	}
	var caps []lpRow
	any := false
	for k, ci := range sp.classes {
		val := b.value(sp, k, ci, u)
		if val <= 0 {
			p.addVar(0)
			continue
		}
		any = true
		x := p.addVar(-val)
		for d, r := range b.classes[ci].req {
			if r > 0 {
				res[d].idx = append(res[d].idx, x)
				res[d].val = append(res[d].val, r)
			}
		}
		caps = append(caps, lpRow{kind: rowLE, idx: []int{x}, rhs: sp.caps[k], val: []float64{1}})
	}
	v := make([]float64, len(b.dims))
	if !any {
		return 0
	}
	p.rows = append(res, caps...)
	if r, err := p.solve(lpPivotLimit(len(p.rows))); err == nil {
		for d := range b.dims {
			v[d] = math.Max(0, -r.dual[d])
		}
	} else {
		b.stopped(err)
	}
	return b.phi(j, u, v)
}

// cheapBound is φ_j at v = 0, Σ_c k_cj u_c: an upper bound on K_j(u)
// without solving anything.
func (b *lpBuilder) cheapBound(j int, u []float64) float64 {
	sp := &b.supplies[j]
	out := b.machineWeight(j, u)
	for k, ci := range sp.classes {
		out += sp.caps[k] * math.Max(0, b.value(sp, k, ci, u))
	}
	return out
}

// cheapestUnlimited is, per class, the unlimited supply that holds its pods
// at the lowest price per pod (-1 for none), computed once per builder.
func (b *lpBuilder) cheapestUnlimited() []int {
	if b.cheapest != nil {
		return b.cheapest
	}
	b.cheapest = make([]int, len(b.classes))
	for ci := range b.cheapest {
		best, bestPer := -1, math.Inf(1)
		for j := range b.supplies {
			if per := b.perPod(j, ci); b.supplies[j].count == math.MaxInt && per < bestPer {
				best, bestPer = j, per
			}
		}
		b.cheapest[ci] = best
	}
	return b.cheapest
}

// value is what a pod of class ci (at position k of sp.classes) is worth on
// a machine of sp: its demand weight plus the weights of the zone rows it
// counts in there.
func (b *lpBuilder) value(sp *lpSupply, k, ci int, u []float64) float64 {
	v := u[ci]
	if sp.rowsAt != nil && len(u) > 2*len(b.classes) {
		for _, r := range sp.rowsAt[k] {
			v += u[2*len(b.classes)+r]
		}
	}
	return v
}

// indexRows records, per supply and eligible class, the zone rows the class
// counts in on that supply.
func (b *lpBuilder) indexRows() {
	b.rowZones = 0
	for _, row := range b.rows {
		b.rowZones |= row.bit
	}
	for j := range b.supplies {
		sp := &b.supplies[j]
		sp.rowsAt = nil
		for k, ci := range sp.classes {
			for r, row := range b.rows {
				if sp.zones&row.bit != 0 && slices.Contains(row.classes, ci) {
					if sp.rowsAt == nil {
						sp.rowsAt = make([][]int, len(sp.classes))
					}
					sp.rowsAt[k] = append(sp.rowsAt[k], r)
				}
			}
		}
	}
}

// phi is the weak-duality bound a_j·v + Σ_c k_cj max(0, u_c - r_c·v) >= K_j(u).
func (b *lpBuilder) phi(j int, u, v []float64) float64 {
	sp := &b.supplies[j]
	var out float64
	for d, a := range sp.alloc {
		out += a * v[d]
	}
	for k, ci := range sp.classes {
		var rv float64
		for d, r := range b.classes[ci].req {
			rv += r * v[d]
		}
		if e := b.value(sp, k, ci, u) - rv; e > 0 {
			out += sp.caps[k] * e
		}
	}
	return out
}

// certify turns class weights u into the bound of lpBound's proof: the best
// scale s in (0, t], t the largest with s·K_j(u) <= p_j for every unlimited j.
func (b *lpBuilder) certify(u []float64) float64 {
	var value float64
	for ci, c := range b.classes {
		value += c.n*u[ci] + c.machines*u[len(b.classes)+ci]
	}
	for r, row := range b.rows {
		value += row.need * u[2*len(b.classes)+r]
	}
	if value <= 0 {
		return 0
	}
	t := math.Inf(1)
	type limited struct{ k, price, count float64 }
	var lims []limited
	// Exact knapsacks where the cheap bound could lower t, cheapest rate
	// first so t falls fast; dominated supplies are covered by their
	// dominators.
	type cand struct {
		j     int
		cheap float64
	}
	var cands []cand
	for j := range b.supplies {
		sp := &b.supplies[j]
		if sp.count != math.MaxInt {
			if k := b.knapsack(j, u); k > 0 {
				lims = append(lims, limited{k, sp.price, float64(sp.count)})
			}
			continue
		}
		if sp.dominated {
			continue
		}
		if c := b.cheapBound(j, u); c > 0 {
			cands = append(cands, cand{j, c})
		}
	}
	slices.SortStableFunc(cands, func(x, y cand) int {
		return cmpFloat(b.supplies[x.j].price/x.cheap, b.supplies[y.j].price/y.cheap)
	})
	for _, c := range cands {
		sp := &b.supplies[c.j]
		if sp.price/c.cheap >= t {
			continue // even the cheap bound cannot lower t
		}
		if k := b.knapsack(c.j, u); k > 0 {
			t = math.Min(t, sp.price/k)
		}
	}
	if math.IsInf(t, 1) {
		return 0
	}
	at := func(s float64) float64 {
		out := s * value
		for _, l := range lims {
			out -= l.count * math.Max(0, s*l.k-l.price)
		}
		return out
	}
	best := math.Max(0, at(t))
	for _, l := range lims {
		if s := l.price / l.k; s < t {
			best = math.Max(best, at(s))
		}
	}
	return best
}

// newLPGuide solves the LP for every pending pod, as if all were placed, for
// StrategyLP; nil when there is nothing to guide.
func newLPGuide(m *model) *lpGuide {
	placed := map[*shape]int{}
	for _, s := range m.shapes[:m.pending] {
		if s.err == nil && len(s.levels) > 0 {
			placed[s] = len(s.pods)
		}
	}
	if len(placed) == 0 {
		return nil
	}
	in := newBoundInput(m, placed)
	idx := newFitIndex(in.supplies)
	// Pods nothing can hold would make the LP infeasible: leave them out.
	all := len(placed)
	for s := range placed {
		if len(idx.of(s)) == 0 {
			delete(placed, s)
		}
	}
	bound, g := lpBound(m, placed, in.frees, &in.residual, in.supplies, idx, false, nil)
	if g != nil {
		g.placed, g.bound = placed, bound
		if len(placed) == all {
			g.in, g.idx = in, idx // built for exactly g.placed
		}
	}
	return g
}
