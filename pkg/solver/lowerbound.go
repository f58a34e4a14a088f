package solver

import (
	"math"
	"slices"

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
// DaemonSet overhead, an over-estimate) for price p_o; reserved offerings can
// be bought at most ReservedCount times. The cheapest way to supply R_d even
// with fractional machines is the LP relaxation of covering R_d, which the
// greedy "cheapest price per unit of d first" solves exactly. Any integral
// plan is feasible for that LP, so its cost is at least the LP optimum, and
// therefore at least the maximum of those optima over d.
//
// Two per-pod terms tighten it: a pod that fits in no existing node's free
// capacity needs some new machine able to hold it, so the bound is at least
// that machine's cheapest offering; and pods of a shape that allows at most
// one of its pods per node (hostname anti-affinity on itself), n of them,
// need at least n - E new machines when there are E existing nodes.
func lowerBound(m *model, plan *Plan) float64 {
	shapeOf := map[*corev1.Pod]*shape{}
	for _, s := range m.shapes[:m.pending] {
		for _, pod := range s.pods {
			shapeOf[pod] = s
		}
	}
	var demand scheduling.Resources
	placed := map[*shape]int{}
	add := func(pod *corev1.Pod) {
		if s := shapeOf[pod]; s != nil {
			demand = demand.Add(s.req)
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
	frees := make([]scheduling.Resources, len(m.nodes))
	var free scheduling.Resources
	for i, n := range m.nodes {
		var used scheduling.Resources
		for _, si := range m.nodePods[i] {
			used = used.Add(m.shapes[si].req)
		}
		f := scheduling.FromList(n.Allocatable).Sub(used)
		clampZero(&f)
		frees[i] = f
		free = free.Add(f)
	}
	residual := demand.Sub(free)
	clampZero(&residual)

	type supply struct {
		alloc scheduling.Resources
		price float64
		count int // machines available; math.MaxInt for spot and on-demand
	}
	var supplies []supply
	for _, p := range m.pools {
		for _, t := range p.types {
			full := t.alloc.Add(t.daemon)
			for _, o := range t.offs {
				n := math.MaxInt
				if o.CapacityType == v1.CapacityTypeReserved {
					n = o.ReservedCount
				}
				supplies = append(supplies, supply{alloc: full, price: o.PricePerHour, count: n})
			}
		}
	}
	var bound float64
	for _, name := range residual.Names() {
		need := float64(residual.Get(name))
		type unit struct {
			per   float64
			units float64
		}
		var units []unit
		for _, s := range supplies {
			if a := s.alloc.Get(name); a > 0 {
				units = append(units, unit{per: s.price / float64(a), units: float64(a) * float64(s.count)})
			}
		}
		slices.SortFunc(units, func(a, b unit) int { return cmpFloat(a.per, b.per) })
		var cost float64
		for _, u := range units {
			if need <= 0 {
				break
			}
			take := math.Min(need, u.units)
			cost += take * u.per
			need -= take
		}
		bound = math.Max(bound, cost)
	}
	cheapestFit := func(req *scheduling.Resources) float64 {
		best := math.Inf(1)
		for _, s := range supplies {
			if s.count > 0 && s.price < best && req.Fits(&s.alloc) {
				best = s.price
			}
		}
		return best
	}
	for s, n := range placed {
		fitsExisting := 0
		for i := range frees {
			if s.req.Fits(&frees[i]) {
				fitsExisting++
			}
		}
		c := cheapestFit(&s.req)
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

func clampZero(r *scheduling.Resources) {
	for i, v := range r.Fixed {
		r.Fixed[i] = max(v, 0)
	}
	for k, v := range r.Ext {
		r.Ext[k] = max(v, 0)
	}
}
