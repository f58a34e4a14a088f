package solver

import (
	"math"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// repackTries bounds how many earlier nodes each node tries to merge into,
// keeping the pass near linear in the number of nodes.
const repackTries = 48

// bin is a planned node the repacking pass may grow by merging others in.
type bin struct {
	n      *newNode
	idx    int // the node's position in the plan, kept for determinism
	price  float64
	shapes []*shape
	fixed  bool // holds or may need a reservation: left alone
}

// repack merges planned nodes when one machine holding the pods of both
// costs less than the two. Greedy packing opens nodes shape by shape, so
// pods that must be spread one per node (hostname anti-affinity or spread)
// each open a small machine even where pods of other apps could share a
// bigger, cheaper-per-pod one. Nodes are visited priciest first and each is
// merged into the first earlier node that accepts it at a saving.
//
// A merge keeps every constraint: both nodes come from the same pool (so the
// pods tolerate its taints and are within its limits, rechecked), their
// requirements must be compatible and their intersection admits the merged
// type, and hostname rules are checked on the merged counts. Counts per zone
// or other topology keys do not change: a node whose pods are counted at, or
// constrained on, a key has that key settled, and compatible settled values
// are equal, so every pod stays in the domain it was counted in.
// It returns how many merges it made.
func (st *state) repack() int {
	if len(st.nodes) < 2 {
		return 0
	}
	shapeOf := map[*corev1.Pod]*shape{}
	for _, s := range st.m.shapes[:st.m.pending] {
		for _, pod := range s.pods {
			shapeOf[pod] = s
		}
	}
	bins := make([]*bin, len(st.nodes))
	for i, n := range st.nodes {
		b := &bin{n: n, idx: i, fixed: n.reserved || n.pool.hasReserved}
		for _, pod := range n.pods {
			if s := shapeOf[pod]; s != nil && !slices.Contains(b.shapes, s) {
				b.shapes = append(b.shapes, s)
			}
		}
		price, ok := st.cheapestType(n.pool, n.reqs, &n.used, &n.charged, math.Inf(1))
		b.price, b.fixed = price, b.fixed || !ok
		bins[i] = b
	}
	order := slices.Clone(bins)
	slices.SortStableFunc(order, func(a, b *bin) int { return cmpFloat(b.price, a.price) })
	var kept []*bin
	merges := 0
	for _, b := range order {
		if !b.fixed && st.mergeIntoKept(kept, b) {
			merges++
		} else {
			kept = append(kept, b)
		}
	}
	slices.SortFunc(kept, func(a, b *bin) int { return a.idx - b.idx })
	st.nodes = st.nodes[:0]
	for _, b := range kept {
		st.nodes = append(st.nodes, b.n)
	}
	st.rooms = nil
	return merges
}

// mergeIntoKept merges b into the first kept bin that takes it at a saving.
func (st *state) mergeIntoKept(kept []*bin, b *bin) bool {
	tries := 0
	for _, a := range kept {
		if a.fixed || a.n.pool != b.n.pool {
			continue
		}
		used := a.n.used.Add(b.n.used)
		if !used.Fits(&a.n.pool.maxAlloc) || !st.hostnameRulesAllow(a, b) {
			continue
		}
		if tries++; tries > repackTries {
			return false
		}
		// Cheap test first: some type under budget must hold the sum at all.
		if !mayHold(a.n.pool, &used, a.price+b.price) || !a.n.reqs.CompatibleWith(b.n.reqs) {
			continue
		}
		reqs := a.n.reqs.Intersect(b.n.reqs)
		charged := a.n.charged.Add(b.n.charged)
		price, ok := st.cheapestType(a.n.pool, reqs, &used, &charged, a.price+b.price-1e-9)
		if !ok {
			continue
		}
		st.merge(a, b, reqs, used, price)
		return true
	}
	return false
}

// hostnameRulesAllow checks every hostname rule of the pods of a and b
// against the counts the merged node would have.
func (st *state) hostnameRulesAllow(a, b *bin) bool {
	check := func(x, y *bin) bool {
		for _, s := range x.shapes {
			l := s.levels[st.level[s.idx]]
			for _, r := range l.anti {
				if r.key == v1.LabelHostname && y.n.groupCount.get(r.group) > 0 {
					return false
				}
			}
			for _, r := range l.spread {
				if r.key == v1.LabelHostname && x.n.groupCount.get(r.group)+y.n.groupCount.get(r.group) > r.maxSkew {
					return false
				}
			}
		}
		return true
	}
	return check(a, b) && check(b, a)
}

// cheapestType is the price of the cheapest non-reserved offering, below
// budget, of a type of pool p that holds used under reqs and the pool's
// limits (with charged already counted against them).
func (st *state) cheapestType(p *pool, reqs scheduling.Requirements, used, charged *scheduling.Resources, budget float64) (float64, bool) {
	zone, ct := reqs.Get(v1.LabelZone), reqs.Get(v1.LabelCapacityType)
	best, found := budget, false
	for _, t := range p.types {
		if t.minPrice >= best {
			break // types are sorted by their cheapest offering
		}
		if !st.holds(p, t, reqs, used, charged) {
			continue
		}
		for _, o := range t.offs {
			if o.PricePerHour >= best {
				break // offerings are cheapest first
			}
			if o.CapacityType != v1.CapacityTypeReserved && o.Commitment == "" && (zone == nil || zone.Allows(o.Zone)) && (ct == nil || ct.Allows(o.CapacityType)) {
				best, found = o.PricePerHour, true
				break
			}
		}
	}
	return best, found
}

func (st *state) holds(p *pool, t *poolType, reqs scheduling.Requirements, used, charged *scheduling.Resources) bool {
	return used.Fits(&t.alloc) && typeAdmits(t, p, reqs) &&
		(!p.hasLimits || withinLimits(&p.limited, &st.remaining[p.idx], charged, &t.capacity))
}

// merge moves b's pods onto a, whose candidates become every type of the
// pool that holds them all under the merged requirements.
func (st *state) merge(a, b *bin, reqs scheduling.Requirements, used scheduling.Resources, price float64) {
	n, o, p := a.n, b.n, a.n.pool
	charged := n.charged.Add(o.charged)
	zone, ct := reqs.Get(v1.LabelZone), reqs.Get(v1.LabelCapacityType)
	var cands []int32
	for ti, t := range p.types {
		if st.holds(p, t, reqs, &used, &charged) && hasOffering(t, zone, ct) {
			cands = append(cands, int32(ti))
		}
	}
	n.cands, n.owned, n.extra = cands, true, nil
	n.refreshMaxAlloc()
	n.reqs = reqs
	n.used = used
	n.possMemo = [possMemoSize]possEntry{}
	n.pods = append(n.pods, o.pods...)
	for _, e := range o.groupCount {
		n.groupCount.add(int(e.g), e.c)
	}
	for _, k := range o.merged {
		if !slices.Contains(n.merged, k) {
			n.merged = append(n.merged, k)
		}
	}
	if p.hasLimits {
		c := p.types[cands[0]].capacity
		st.remaining[p.idx] = st.remaining[p.idx].Add(charged).Sub(c)
		n.charged = c
	}
	for _, s := range b.shapes {
		if !slices.Contains(a.shapes, s) {
			a.shapes = append(a.shapes, s)
		}
	}
	a.price = price
}

// mayHold reports whether some type of p cheaper than budget holds used,
// ignoring requirements and limits.
func mayHold(p *pool, used *scheduling.Resources, budget float64) bool {
	for _, t := range p.types {
		if t.minPrice >= budget {
			return false
		}
		if used.Fits(&t.alloc) {
			return true
		}
	}
	return false
}
