package solver

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// zoneRow is a cut the LP adds for a hard zone spread: at least need pods of
// the classes in classes run on machines of types offered in zone (bit).
//
// Why it holds for every plan. Take a group g whose placed members all
// spread themselves over zones with the same hard rule (maxSkew S, the same
// eligible zones D at every relaxation level). The solver admits a pod of g
// into zone v only while count(v)+1 - min_D count <= S, and counts only
// grow, so at the end every zone that received pods has f_v <= M + S, M the
// final minimum, and every other zone keeps its existing e_v. With z0 a
// zone at the minimum, E + n = Σ f_v <= M + Σ_{v != z0} max(e_v, M+S) <=
// R(M) := M + Σ_v max(e_v, M+S) - min_v max(e_v, M+S), and R grows with M,
// so M >= M*, the least M with R(M) >= E + n, and zone z receives at least
// M* - e_z of g's pods. Those pods are of g's classes and sit on machines of
// types offered in z, so the plan's x satisfies the row; classes shared with
// other shapes only add to its left side.
type zoneRow struct {
	bit     uint64
	classes []int
	need    float64
	// premium is the least a pod of the row's classes pays per pod for
	// running in the zone over its cheapest price anywhere; need times it
	// is about what the row can add to the LP's value.
	premium float64
}

// zoneRows finds the rows worth adding: those whose zone is dearer for
// every class of the row, less the smallest whose summed gain would stay
// under zoneRowSlack of the demand's cost. Each row makes the LP larger,
// and any row makes the bound solve a second LP (see lowerBound), so rows
// that can add nothing measurable are left out. Leaving a row out only
// weakens the bound; it stays valid.
func (b *lpBuilder) zoneRows(placed map[*shape]int) []zoneRow {
	m := b.m
	if m.zoneBits == nil {
		return nil
	}
	var rows []zoneRow
	// Groups of the same classes and zone share one row, their needs
	// summed, when no shape is in two of them (the pods counted are then
	// distinct): fewer rows keep the master small.
	type rowKey struct {
		bit     uint64
		classes string
	}
	merged := map[rowKey]int{}
	claimed := map[rowKey]map[int32]bool{}
	for gi, g := range m.groups {
		domains, skew, ok := b.zoneSpread(gi, g, placed)
		if !ok {
			continue
		}
		n := 0.0
		var classes []int
		for _, si := range g.members {
			if s := m.shapes[si]; placed[s] > 0 {
				n += float64(placed[s])
				if ci, ok := b.classOf[s]; ok && !slices.Contains(classes, ci) {
					classes = append(classes, ci)
				}
			}
		}
		slices.Sort(classes)
		existing := b.existingByZone(g, domains)
		least := leastMinimum(existing, float64(skew), n)
		for d, zone := range domains {
			need := least - existing[d]
			bit := m.zoneBits[zone]
			if need <= 0 || bit == 0 {
				continue
			}
			row := zoneRow{bit: bit, classes: classes, need: need}
			if row.premium = b.zonePremium(row); row.premium <= 0 {
				continue
			}
			key := rowKey{bit, fmt.Sprint(row.classes)}
			if r, ok := merged[key]; ok && disjoint(claimed[key], g.members) {
				rows[r].need += need
			} else {
				merged[key] = len(rows)
				claimed[key] = map[int32]bool{}
				rows = append(rows, row)
			}
			for _, si := range g.members {
				claimed[key][si] = true
			}
		}
	}
	return b.worthwhile(rows)
}

// worthwhile drops the rows of least gain (need times premium) while their
// summed gain stays under zoneRowSlack of what the demand costs with each
// pod at its cheapest price per pod. Kept rows keep their order.
func (b *lpBuilder) worthwhile(rows []zoneRow) []zoneRow {
	if len(rows) == 0 {
		return nil
	}
	cost := 0.0
	for ci, j := range b.cheapestUnlimited() {
		if j >= 0 {
			cost += b.classes[ci].n * b.perPod(j, ci)
		}
	}
	order := make([]int, len(rows))
	for i := range order {
		order[i] = i
	}
	gain := func(i int) float64 { return rows[i].need * rows[i].premium }
	slices.SortStableFunc(order, func(a, c int) int { return cmp.Compare(gain(a), gain(c)) })
	drop := make([]bool, len(rows))
	dropped := 0.0
	for _, i := range order {
		if dropped+gain(i) > zoneRowSlack*cost {
			break
		}
		dropped += gain(i)
		drop[i] = true
	}
	kept := rows[:0]
	for i, r := range rows {
		if !drop[i] {
			kept = append(kept, r)
		}
	}
	return kept
}

// zoneRowSlack is the share of the demand's cost the rows left out may
// add up to (see worthwhile).
const zoneRowSlack = 0.001

// zoneSpread reports the eligible zones and maxSkew of g's hard zone spread
// when every placed member carries it, self-counted, at every level with the
// same zones; ok is false otherwise (the argument needs one rule for all).
func (b *lpBuilder) zoneSpread(gi int, g *group, placed map[*shape]int) (domains []string, skew int32, ok bool) {
	for _, si := range g.members {
		s := b.m.shapes[si]
		if placed[s] == 0 {
			continue // on nodes already (existingByZone), or not placed
		}
		for _, l := range s.levels {
			found := false
			for _, r := range l.spread {
				if r.group != gi || r.key != v1.LabelZone {
					continue
				}
				if !r.hard || !r.self {
					return nil, 0, false
				}
				d := l.domains[v1.LabelZone]
				if !ok {
					domains, skew, ok = d, r.maxSkew, true
				} else if r.maxSkew != skew || !slices.Equal(d, domains) {
					return nil, 0, false
				}
				found = true
			}
			if !found {
				return nil, 0, false
			}
		}
	}
	return domains, skew, ok && len(domains) > 0
}

// existingByZone counts g's pods already on nodes, per zone of domains.
func (b *lpBuilder) existingByZone(g *group, domains []string) []float64 {
	out := make([]float64, len(domains))
	for i, n := range b.m.nodes {
		d := slices.Index(domains, n.Labels[v1.LabelZone])
		if d < 0 {
			continue
		}
		for _, si := range b.m.nodePods[i] {
			if _, ok := slices.BinarySearch(g.members, int32(si)); ok {
				out[d]++
			}
		}
	}
	return out
}

// leastMinimum is M*: the least M >= 0 with R(M) >= E + n (see zoneRow).
func leastMinimum(existing []float64, skew, n float64) float64 {
	total := n
	for _, e := range existing {
		total += e
	}
	r := func(m float64) float64 {
		sum, low := 0.0, math.Inf(1)
		for _, e := range existing {
			v := math.Max(e, m+skew)
			sum += v
			low = math.Min(low, v)
		}
		return m + sum - low
	}
	m := 0.0
	for r(m) < total {
		m++
	}
	return m
}

// cheapestIn is the supply offered in row's zone that holds a pod of one of
// its classes at the lowest price per pod, unlimited ones first; -1 if none.
func (b *lpBuilder) cheapestIn(row zoneRow) int {
	best, bestPer, bestLimited := -1, math.Inf(1), true
	for j := range b.supplies {
		sp := &b.supplies[j]
		if sp.zones&row.bit == 0 {
			continue
		}
		limited := sp.count != math.MaxInt
		for k, ci := range sp.classes {
			if !slices.Contains(row.classes, ci) {
				continue
			}
			per := sp.price / sp.caps[k]
			if (bestLimited && !limited) || (limited == bestLimited && per < bestPer) {
				best, bestPer, bestLimited = j, per, limited
			}
		}
	}
	return best
}

func disjoint(set map[int32]bool, members []int32) bool {
	for _, si := range members {
		if set[si] {
			return false
		}
	}
	return true
}

// zonePremium is, over the row's classes, the least extra per pod a pod
// pays in the row's zone over its cheapest price anywhere: 0 when a class's
// cheapest supply is offered there (the LP meets the row with that class
// at no cost), or when no supply there takes it.
func (b *lpBuilder) zonePremium(row zoneRow) float64 {
	cheapest := b.cheapestUnlimited()
	premium := math.Inf(1)
	for _, ci := range row.classes {
		j := cheapest[ci]
		if j < 0 || b.supplies[j].zones&row.bit != 0 {
			return 0
		}
		best := math.Inf(1)
		for i := range b.supplies {
			if sp := &b.supplies[i]; sp.zones&row.bit != 0 {
				best = math.Min(best, b.perPod(i, ci))
			}
		}
		if math.IsInf(best, 1) {
			return 0
		}
		premium = math.Min(premium, best-b.perPod(j, ci))
	}
	if math.IsInf(premium, 1) {
		return 0
	}
	return premium
}

// perPod is supply j's price per pod of class ci, +Inf if it does not take it.
func (b *lpBuilder) perPod(j, ci int) float64 {
	sp := &b.supplies[j]
	if k := slices.Index(sp.classes, ci); k >= 0 {
		return sp.price / sp.caps[k]
	}
	return math.Inf(1)
}
