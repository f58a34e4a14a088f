package solver

import (
	"cmp"
	"math"
	"slices"
)

// integerCover returns a bound from IC_c, the cheapest way to hold class c's
// pods alone on whole machines:
//
//	IC_c = min Σ_j p_j y_j  s.t.  Σ_j k_cj y_j >= n_c,  y_j <= count_j,  y_j integer
//
// over the supplies j that take c. Why every plan costs at least IC_c: the
// machines a plan puts c's pods on are machines of such supplies (as in
// lpBound's argument), each holds at most k_cj of them and costs at least
// p_j, so counting them gives a feasible y. The LP relaxes the integrality,
// which matters for few pods and big machines: 20 pods of one MIG slice
// each, 7 slices on the cheapest machine, need 3 machines, where the LP
// buys 20/56 of an 8-GPU one.
//
// Classes that share no supply, directly or through other classes, are
// held by disjoint sets of machines (a machine is of one supply), so the
// bound is the sum, over such groups, of the largest IC_c in each: CPU pods
// in one pool and GPU pods in a tainted other each need their own machines.
// It returns 0 when that sum cannot exceed floor.
func (b *lpBuilder) integerCover(floor float64) float64 {
	byClass := make([][]coverItem, len(b.classes))
	group := make([]int, len(b.classes)) // union-find over classes
	for ci := range group {
		group[ci] = ci
	}
	find := func(x int) int {
		for group[x] != x {
			group[x] = group[group[x]]
			x = group[x]
		}
		return x
	}
	for j := range b.supplies {
		sp := &b.supplies[j]
		for k, ci := range sp.classes {
			if c := int(math.Floor(sp.caps[k] + 1e-9)); c > 0 {
				byClass[ci] = append(byClass[ci], coverItem{c, sp.price, sp.count})
			}
			group[find(ci)] = find(sp.classes[0])
		}
	}
	// upper[ci] bounds IC_c from above: the best price per pod, in whole
	// machines. A group's largest upper bounds what it can add.
	upper := make([]float64, len(b.classes))
	groupUpper := map[int]float64{}
	for ci, items := range byClass {
		n := math.Round(b.classes[ci].n)
		upper[ci] = math.Inf(1)
		for _, it := range items {
			if it.count == math.MaxInt || float64(it.count*it.k) >= n {
				upper[ci] = math.Min(upper[ci], math.Ceil(n/float64(it.k))*it.price)
			}
		}
		if math.IsInf(upper[ci], 1) {
			upper[ci] = 0 // no single supply covers it: left to the LP
		}
		g := find(ci)
		groupUpper[g] = math.Max(groupUpper[g], upper[ci])
	}
	total := 0.0
	for _, u := range groupUpper {
		total += u
	}
	if total <= floor*(1+1e-9) {
		return 0
	}
	order := make([]int, len(b.classes))
	for ci := range order {
		order[ci] = ci
	}
	slices.SortStableFunc(order, func(x, y int) int { return cmpFloat(upper[y], upper[x]) })
	best := map[int]float64{}
	for _, ci := range order {
		n := int(math.Round(b.classes[ci].n))
		g := find(ci)
		if n <= 0 || len(byClass[ci]) == 0 || upper[ci] <= best[g]*(1+1e-9) {
			continue
		}
		items := paretoItems(byClass[ci], n)
		if n*len(items) > coverDPWork {
			best[g] = math.Max(best[g], fractionalCover(n, items))
			continue
		}
		best[g] = math.Max(best[g], coverDP(n, items))
	}
	sum := 0.0
	for _, v := range best {
		if !math.IsInf(v, 1) {
			sum += v
		}
	}
	return sum
}

// coverDPWork bounds coverDP's table (pods × supplies); past it the
// fractional cover, which bounds IC_c from below, stands in.
const coverDPWork = 4_000_000

// fractionalCover is the relaxation of coverDP: pods bought at the best
// price per pod first, within each supply's count.
func fractionalCover(n int, items []coverItem) float64 {
	items = slices.Clone(items)
	slices.SortFunc(items, func(x, y coverItem) int { return cmpFloat(x.price/float64(x.k), y.price/float64(y.k)) })
	left, out := float64(n), 0.0
	for _, it := range items {
		take := left
		if it.count != math.MaxInt {
			take = math.Min(take, float64(it.count*it.k))
		}
		out += take * it.price / float64(it.k)
		if left -= take; left <= 0 {
			return out
		}
	}
	return math.Inf(1)
}

// coverItem is a supply as coverDP sees it: k pods per machine at price,
// count machines at most (math.MaxInt: unlimited).
type coverItem struct {
	k     int
	price float64
	count int
}

// paretoItems drops the unlimited supplies another unlimited one beats
// (holds as many, costs no more) and caps k at n, where more is no use.
func paretoItems(items []coverItem, n int) []coverItem {
	out := make([]coverItem, 0, len(items))
	var unlimited []coverItem
	for _, it := range items {
		c := coverItem{min(it.k, n), it.price, it.count}
		if c.count == math.MaxInt {
			unlimited = append(unlimited, c)
		} else {
			out = append(out, c)
		}
	}
	// Largest k first, cheapest first within a k: keep an item only if it
	// is cheaper than every item holding more.
	slices.SortFunc(unlimited, func(x, y coverItem) int { return cmp.Or(cmp.Compare(y.k, x.k), cmpFloat(x.price, y.price)) })
	cheapest := math.Inf(1)
	for _, it := range unlimited {
		if it.price < cheapest {
			out = append(out, it)
			cheapest = it.price
		}
	}
	return out
}

// coverDP solves min Σ price·y s.t. Σ k·y >= n, y <= count, y integer, by
// dynamic programming over the pods covered; +Inf when nothing covers n.
func coverDP(n int, items []coverItem) float64 {
	dp := make([]float64, n+1)
	for x := 1; x <= n; x++ {
		dp[x] = math.Inf(1)
	}
	for _, it := range items {
		if it.count == math.MaxInt {
			for x := 1; x <= n; x++ {
				dp[x] = math.Min(dp[x], dp[max(0, x-it.k)]+it.price)
			}
			continue
		}
		// Bounded: binary splitting into 0/1 items of 1, 2, 4, ... machines.
		left := min(it.count, (n+it.k-1)/it.k)
		for m := 1; left > 0; m *= 2 {
			take := min(m, left)
			left -= take
			k, p := take*it.k, float64(take)*it.price
			for x := n; x >= 1; x-- {
				dp[x] = math.Min(dp[x], dp[max(0, x-k)]+p)
			}
		}
	}
	return dp[n]
}

// smallExactStates bounds the states of smallExact's program.
const smallExactStates = 2000

// smallExact is, for few pods with no existing nodes, the cheapest way to
// put every placed pod on whole machines when each machine may hold any set
// of pods that fits it: min over partitions of the pods into machine loads
// of Σ the cheapest supply holding each load. A supply holds a load when it
// takes every class in it, within its caps k_cj, and the load's summed
// requests fit its allocatable. Every plan is such a partition (each of its
// machines is a supply that holds its pods and costs at least p_j), so this
// bounds every plan; it leaves out zones, spreads, gangs and reservation
// counts, which only make plans dearer. The LP relaxes whole machines
// away, and on small fleets with big machines among the choices even the
// relaxation over whole machine configurations stays well below the
// optimum (cpu-web: $0.549/h against $0.5715/h). Computed by dynamic
// programming over how many pods of each class are left, when there are at
// most smallExactStates such states; 0 otherwise.
func (b *lpBuilder) smallExact(existing int) float64 {
	if existing >= 0 || len(b.classes) == 0 {
		return 0
	}
	radix := make([]int, len(b.classes))
	states := 1
	for ci, c := range b.classes {
		radix[ci] = int(math.Round(c.n)) + 1
		if states *= radix[ci]; states > smallExactStates {
			return 0
		}
	}
	// Digits of every state, once: the loops below read them often.
	w := len(radix)
	digits := make([]int32, states*w)
	for x := range states {
		y := x
		for i, r := range radix {
			digits[x*w+i], y = int32(y%r), y/r
		}
	}
	// price[x] is the cheapest supply holding load x, +Inf for none:
	// the first that holds it, cheapest first.
	byPrice := make([]int, len(b.supplies))
	for j := range byPrice {
		byPrice[j] = j
	}
	slices.SortStableFunc(byPrice, func(x, y int) int { return cmpFloat(b.supplies[x].price, b.supplies[y].price) })
	price := make([]float64, states)
	sum := make([]int64, len(b.dims))
	var loads []int // the loads some supply holds
	for x := 1; x < states; x++ {
		price[x] = math.Inf(1)
		for _, j := range byPrice {
			if sp := &b.supplies[j]; b.holds(sp, digits[x*w:(x+1)*w], sum) {
				price[x] = sp.price
				loads = append(loads, x)
				break
			}
		}
	}
	cost := make([]float64, states)
	for x := 1; x < states; x++ {
		left := digits[x*w : (x+1)*w]
		// Each partition is counted once: the machine holding a pod of
		// the first class left is chosen here.
		first := slices.IndexFunc(left, func(n int32) bool { return n > 0 })
		cost[x] = math.Inf(1)
	loads:
		for _, y := range loads {
			if y > x {
				break // loads are in increasing order; a bigger one holds more than is left
			}
			take := digits[y*w : (y+1)*w]
			if take[first] == 0 {
				continue
			}
			for i, t := range take {
				if t > left[i] {
					continue loads
				}
			}
			// No digit borrows, so the rest is x - y.
			cost[x] = math.Min(cost[x], price[y]+cost[x-y])
		}
	}
	if math.IsInf(cost[states-1], 1) {
		return 0
	}
	return cost[states-1]
}

// holds reports whether one machine of sp can hold load (pods per class):
// it takes every class in the load within its caps, and the summed
// requests fit its allocatable. sum is scratch space, one per dimension.
func (b *lpBuilder) holds(sp *lpSupply, load []int32, sum []int64) bool {
	clear(sum)
	for ci, n := range load {
		if n == 0 {
			continue
		}
		k := slices.Index(sp.classes, ci)
		if k < 0 || float64(n) > sp.caps[k]+1e-9 {
			return false
		}
		for d, r := range b.classes[ci].raw {
			sum[d] += int64(n) * r
		}
	}
	for d, s := range sum {
		if s > sp.raw[d] {
			return false
		}
	}
	return true
}
