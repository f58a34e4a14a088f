package solver

import (
	"cmp"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Improvement is a large-neighbourhood search on the winning plan: destroy a
// few planned nodes, put their pods back (into the spare room of the other
// nodes first, then onto new nodes, most constrained pods first), and keep
// the result when it costs less. Merging (repack) only ever joins two nodes;
// this also moves pods into room that nodes which must exist anyway leave
// (hostname anti-affinity, GPU nodes), and splits a node whose mix was wrong.
const (
	// improveAttempts bounds the neighbourhoods tried, so the phase is
	// deterministic for a given snapshot and cheap beside packing.
	improveAttempts = 200
	// improveMaxNodes skips the phase on plans so large that copying the
	// state per attempt would cost more than packing (large plans rely on
	// the LP-guided strategies and repacking).
	improveMaxNodes = 400
	// improveMinGap skips the phase for a plan within this fraction of the
	// LP's certified bound, which is all the phase could gain: on a few
	// hundred nodes it costs several times the packing (bench-e2e's 1,000
	// pods solved at once took 175 ms instead of 35 ms, to stay 0.05% above
	// the bound). No neighbourhood the tests and scenarios accept starts
	// closer than 5%.
	improveMinGap   = 0.005
	improveSeeds    = 20 // most wasteful nodes destroyed, each with up to
	improvePartners = 9  // this many of the next most wasteful
)

// improve runs the search and returns how many neighbourhoods it accepted.
func (st *state) improve() (*state, int) {
	if len(st.nodes) < 2 || len(st.nodes) > improveMaxNodes {
		return st, 0
	}
	shapeOf := map[*corev1.Pod]*shape{}
	for _, s := range st.m.shapes[:st.m.pending] {
		for _, pod := range s.pods {
			shapeOf[pod] = s
		}
	}
	// Pods another pod's hard hostname spread counts stay where they are:
	// placing a pod checks its own rules, not those of the pods on the node
	// it lands on, and the first fill got them right by order (spreadRanks).
	for _, s := range st.m.shapes[:st.m.pending] {
		for _, r := range s.levels[st.level[s.idx]].spread {
			if r.hard && r.key == v1.LabelHostname {
				for _, i := range st.m.groups[r.group].members {
					for _, pod := range st.m.shapes[i].pods {
						shapeOf[pod] = nil
					}
				}
			}
		}
	}
	accepted, attempts := 0, 0
	for attempts < improveAttempts {
		order := st.wasteOrder(shapeOf)
		if len(order) < 1 {
			break
		}
		improved := false
	seeds:
		for ai, a := range order[:min(len(order), improveSeeds)] {
			sets := [][]*newNode{{a}}
			for _, b := range order[ai+1 : min(len(order), ai+1+improvePartners)] {
				if b.pool == a.pool {
					sets = append(sets, []*newNode{a, b})
				}
			}
			for _, set := range sets {
				if attempts++; attempts > improveAttempts {
					break seeds
				}
				if c, ok := st.rebuild(set, shapeOf); ok {
					st, improved = c, true
					accepted++
					break seeds // the order changed: start again from the most wasteful
				}
			}
		}
		if !improved {
			break
		}
	}
	return st, accepted
}

// wasteOrder lists the nodes the search may destroy, most wasteful first:
// price times the unused share of the resource they use most. Nodes holding
// a reservation, gang pods, pods counted at a zone-like topology key or by a
// hard hostname spread (a nil shape in shapeOf) stay as they are (moving
// those could break what was checked when they landed).
func (st *state) wasteOrder(shapeOf map[*corev1.Pod]*shape) []*newNode {
	type scored struct {
		n     *newNode
		waste float64
		idx   int
	}
	var out []scored
	for i, n := range st.nodes {
		if n.reserved || n.pool.hasReserved || !st.movable(n, shapeOf) {
			continue
		}
		ti := st.firstFit(n, &noResources)
		if ti < 0 {
			continue
		}
		t := n.pool.types[n.cands[ti]]
		used := 0.0
		for d, a := range t.alloc.Fixed {
			if a > 0 {
				used = max(used, float64(n.used.Fixed[d])/float64(a))
			}
		}
		out = append(out, scored{n, t.minPrice * (1 - min(used, 1)), i})
	}
	slices.SortStableFunc(out, func(a, b scored) int { return cmp.Or(cmpFloat(b.waste, a.waste), cmp.Compare(a.idx, b.idx)) })
	nodes := make([]*newNode, len(out))
	for i, s := range out {
		nodes[i] = s.n
	}
	return nodes
}

func (st *state) movable(n *newNode, shapeOf map[*corev1.Pod]*shape) bool {
	for _, pod := range n.pods {
		s := shapeOf[pod]
		if s == nil || s.gang != "" || len(s.pinKeys) > 0 || len(s.levels[st.level[s.idx]].keys) > 0 {
			return false
		}
	}
	return true
}

// rebuild destroys set on a copy of the state and places their pods again;
// it returns the copy when every pod found a place and the plan got cheaper.
func (st *state) rebuild(set []*newNode, shapeOf map[*corev1.Pod]*shape) (*state, bool) {
	before := st.cost()
	c := st.clone()
	var freed []*corev1.Pod
	drop := map[int]bool{}
	for i, n := range st.nodes {
		if slices.Contains(set, n) {
			drop[i] = true
		}
	}
	kept := c.nodes[:0:0]
	for i, n := range c.nodes {
		if !drop[i] {
			kept = append(kept, n)
			continue
		}
		for _, pod := range n.pods {
			s := shapeOf[pod]
			c.uncount(s, n)
			c.left[s.idx]++
			c.demand = c.demand.Add(s.req)
			freed = append(freed, pod)
		}
		if n.pool.hasLimits {
			c.remaining[n.pool.idx] = c.remaining[n.pool.idx].Add(n.charged)
		}
	}
	c.nodes = kept
	for i := range c.cursorN {
		c.cursorN[i] = 0
	}
	// Most constrained first (fewest types that can hold the pod), then largest.
	viableTypes := func(s *shape) int {
		n := 0
		l := s.levels[c.level[s.idx]]
		for _, alt := range l.viable {
			for pi, row := range alt {
				if l.tolerates[pi] != nil {
					continue
				}
				for _, ok := range row {
					if ok {
						n++
					}
				}
			}
		}
		return n
	}
	slices.SortStableFunc(freed, func(a, b *corev1.Pod) int {
		sa, sb := shapeOf[a], shapeOf[b]
		return cmp.Or(cmp.Compare(viableTypes(sa), viableTypes(sb)), cmp.Compare(sb.size, sa.size), cmp.Compare(sa.idx, sb.idx))
	})
	// New nodes may grow into any type of their pool: the cheapest that
	// holds what they packed is chosen when the plan is built.
	strategy := c.strategy
	c.strategy = StrategyFFD
	for _, pod := range freed {
		if !c.place(shapeOf[pod], pod) {
			return nil, false
		}
	}
	c.strategy = strategy
	if c.cost() < before-1e-9 {
		return c, true
	}
	return nil, false
}

// uncount is count's inverse, for a pod leaving a planned node.
func (st *state) uncount(s *shape, n *newNode) {
	if len(s.groups) > 0 {
		st.forgetAllowed()
	}
	for _, g := range s.groups {
		clear(st.minCache[g]) // keeps the map: a pod is counted per placement
		n.groupCount.add(g, -1)
		st.total[g]--
		for _, key := range st.m.groups[g].keys {
			if v, ok := n.value(key); ok {
				if c := st.counts[key][v]; c != nil {
					c[g]--
				}
			}
		}
	}
}
