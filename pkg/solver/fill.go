package solver

import (
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// fillTries bounds the pods of one request size that may fail to join a
// machine before fillGuided gives up on that size for it: the fill is a
// heuristic ahead of first fit, which places whatever it leaves.
const fillTries = 32

// fillGroup is the pending shapes of equal requests, in placement order.
type fillGroup struct {
	req    scheduling.Resources
	shapes []*shape
	live   []*shape // of shapes, those that may still join the current type
}

// fillGuided packs the machines preopen started, one at a time, before
// first fit: each takes, among the pods the LP puts on its type, the one
// whose requests best match the room the machine has left (the largest dot
// product of the two, each as a share of the type's allocatable), until no
// such pod fits. First fit in size order gives a small machine its largest
// pod and strands the rest (a 1.5-CPU, 512-MiB pod alone on a 2-CPU,
// 0.6-GiB machine); matching pods to room packs small machines about as
// full as the LP counts on. Machines with accelerators are left to first
// fit, which gives them the largest pods that need them, and so are pods
// with extended resources or preferred pod (anti-)affinity, which first
// fit places on the nodes they prefer. taken[s] counts the pods of s (from
// the front) it placed; first fit skips them.
func (st *state) fillGuided(shapes []*shape, taken []int) {
	if st.guide == nil {
		return
	}
	var groups []*fillGroup
	byReq := map[[scheduling.NumSlots]int64]int{}
	for _, s := range shapes {
		l := s.levels[st.level[s.idx]]
		if st.guide.classOf[s.idx] < 0 || len(s.req.Ext) > 0 || len(l.prefAff)+len(l.prefAnti) > 0 {
			continue
		}
		gi, ok := byReq[s.req.Fixed]
		if !ok {
			gi = len(groups)
			byReq[s.req.Fixed] = gi
			groups = append(groups, &fillGroup{req: scheduling.Resources{Fixed: s.req.Fixed}})
		}
		groups[gi].shapes = append(groups[gi].shapes, s)
	}
	if len(groups) == 0 {
		return
	}
	f := &filler{st: st, taken: taken, failedOn: make([]int, len(st.m.shapes)), blocked: make([]bool, len(groups))}
	start := 0
	for _, b := range st.guideBlocks {
		if b.bit >= 0 && start < b.end {
			f.fillBlock(groups, start, b.end, b.bit)
		}
		start = b.end
	}
}

// filler is fillGuided's working state.
type filler struct {
	st    *state
	taken []int
	// failedOn[s] is 1 + the node a pod of s last failed to join.
	failedOn []int
	blocked  []bool // per group, for the current node
}

// fillBlock fills the started nodes [start, end), all of the type bit.
func (f *filler) fillBlock(groups []*fillGroup, start, end, bit int) {
	st := f.st
	n0 := st.nodes[start]
	alloc := &n0.pool.types[n0.guided].alloc
	if accelerated(alloc) {
		return
	}
	for _, g := range groups {
		g.live = g.live[:0]
		for _, s := range g.shapes {
			if q := st.quota[st.guide.classOf[s.idx]][bit]; q > 0 && f.taken[s.idx] < len(s.pods) {
				g.live = append(g.live, s)
			}
		}
	}
	for i := start; i < end; i++ {
		n := st.nodes[i]
		if len(n.pods) > 0 { // gangs came first
			continue
		}
		clear(f.blocked)
		for {
			best, bestScore := -1, -1.0
			for gi, g := range groups {
				if f.blocked[gi] || len(g.live) == 0 || !scheduling.FitsSum(&n.used, &g.req, alloc) {
					continue
				}
				score := 0.0
				for d, a := range alloc.Fixed {
					if a > 0 && g.req.Fixed[d] > 0 {
						score += float64(g.req.Fixed[d]) * float64(a-n.used.Fixed[d]) / (float64(a) * float64(a))
					}
				}
				if score > bestScore {
					best, bestScore = gi, score
				}
			}
			if best < 0 {
				break
			}
			if !f.fillFrom(groups[best], i, bit) {
				f.blocked[best] = true
			}
		}
	}
}

// fillFrom places on started node i the next pod of the first live shape
// of g that may run there, and drops from g.live the shapes that can no
// longer join a machine of the type: no pods or no quota left, or refused
// by an empty one (what keeps a pod off an empty machine, such as a zone
// spread that needs a zone the type is not offered in, keeps it off the
// others too until first fit has placed more).
func (f *filler) fillFrom(g *fillGroup, i, bit int) bool {
	st := f.st
	n := st.nodes[i]
	empty := len(n.pods) == 0
	live := g.live[:0]
	placed, fails := false, 0
	for k, s := range g.live {
		if placed || fails >= fillTries {
			live = append(live, g.live[k:]...)
			break
		}
		ci := st.guide.classOf[s.idx]
		if f.taken[s.idx] >= len(s.pods) || st.quota[ci][bit] <= 0 {
			continue
		}
		if f.failedOn[s.idx] == i+1 {
			live = append(live, s)
			continue
		}
		pod := s.pods[f.taken[s.idx]]
		if ok, _ := st.tryNew(s, s.levels[st.level[s.idx]], n, pod); !ok {
			f.failedOn[s.idx] = i + 1
			fails++
			if !empty {
				live = append(live, s)
			}
			continue
		}
		f.taken[s.idx]++
		st.left[s.idx]--
		st.demand = st.demand.Sub(s.req)
		st.touchPlanned(i)
		st.consume(s, i)
		placed = true
		if f.taken[s.idx] < len(s.pods) && st.quota[ci][bit] > 0 {
			live = append(live, s)
		}
	}
	clear(g.live[len(live):])
	g.live = live
	return placed
}

// accelerated reports whether a type has GPUs, accelerators or devices.
func accelerated(alloc *scheduling.Resources) bool {
	return alloc.Fixed[scheduling.SlotNvidiaGPU]+alloc.Fixed[scheduling.SlotAMDGPU]+
		alloc.Fixed[scheduling.SlotNeuron]+alloc.Fixed[scheduling.SlotDevices] > 0 || len(alloc.Ext) > 0
}
