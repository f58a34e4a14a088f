package solver

import (
	"cmp"
	"math"
	"slices"
)

// integerCover returns the largest IC_c over the classes whose IC_c could
// exceed floor, where IC_c is the cheapest way to hold class c's pods alone
// on whole machines:
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
func (b *lpBuilder) integerCover(floor float64) float64 {
	best := 0.0
	byClass := make([][]coverItem, len(b.classes))
	for j := range b.supplies {
		sp := &b.supplies[j]
		for k, ci := range sp.classes {
			if c := int(math.Floor(sp.caps[k] + 1e-9)); c > 0 {
				byClass[ci] = append(byClass[ci], coverItem{c, sp.price, sp.count})
			}
		}
	}
	for ci, items := range byClass {
		n := int(math.Round(b.classes[ci].n))
		if n <= 0 || len(items) == 0 {
			continue
		}
		// An upper bound on IC_c: the best price per pod, in whole
		// machines. When even that cannot beat floor, skip the program.
		upper := math.Inf(1)
		for _, it := range items {
			if it.count == math.MaxInt || it.count*it.k >= n {
				upper = math.Min(upper, math.Ceil(float64(n)/float64(it.k))*it.price)
			}
		}
		if upper <= max(floor, best)*(1+1e-9) {
			continue
		}
		best = math.Max(best, coverDP(n, paretoItems(items, n)))
	}
	return best
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
