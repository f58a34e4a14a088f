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
// need at least n - E new machines when there are E existing nodes.
func lowerBound(m *model, plan *Plan) float64 {
	shapeOf := map[*corev1.Pod]*shape{}
	for _, s := range m.shapes[:m.pending] {
		for _, pod := range s.pods {
			shapeOf[pod] = s
		}
	}
	var demand scheduling.Resources
	// Shape requests are summed per placed pod.
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
	for _, w := range weightVectors(&residual) {
		bound = math.Max(bound, coverCost(&residual, w, supplies))
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

// supply is one way to buy machines: what each holds, its price, and how
// many can be bought (math.MaxInt for spot and on-demand).
type supply struct {
	alloc scheduling.Resources
	price float64
	count int
}

// weight prices a composite resource: the sum of amount(name) × factor.
type weight map[corev1.ResourceName]float64

// weightVectors are the resource mixes the bound is evaluated for: each
// resource alone, and for every pair a sweep of mixes normalised by demand.
// Any non-negative mix gives a valid bound (see coverCost), so more mixes only
// tighten it; the pair sweep catches plans bound by two resources at once
// (typically CPU and memory), which single resources miss.
func weightVectors(residual *scheduling.Resources) []weight {
	names := residual.Names()
	var out []weight
	for _, n := range names {
		out = append(out, weight{n: 1})
	}
	const steps = 16
	for i, a := range names {
		for _, b := range names[i+1:] {
			ra, rb := float64(residual.Get(a)), float64(residual.Get(b))
			for k := 1; k < steps; k++ {
				theta := math.Pi / 2 * float64(k) / steps
				out = append(out, weight{a: math.Cos(theta) / ra, b: math.Sin(theta) / rb})
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
	var need float64
	for n, f := range w {
		need += f * float64(residual.Get(n))
	}
	type unit struct{ per, units float64 }
	units := make([]unit, 0, len(supplies))
	for _, s := range supplies {
		var a float64
		for n, f := range w {
			a += f * float64(s.alloc.Get(n))
		}
		if a > 0 {
			units = append(units, unit{per: s.price / a, units: a * float64(s.count)})
		}
	}
	slices.SortFunc(units, func(x, y unit) int { return cmpFloat(x.per, y.per) })
	var cost float64
	for _, u := range units {
		if need <= 1e-12 {
			break
		}
		take := math.Min(need, u.units)
		cost += take * u.per
		need -= take
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
