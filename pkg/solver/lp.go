package solver

import (
	"errors"
	"math"
)

// A small dense simplex for the lower bound's linear programs. They have at
// most a few hundred rows and columns (pod classes × a working set of
// offerings), where a dense tableau is fast and simple. Nothing here has to be
// exact for the bound to stay valid: the bound is certified afterwards from
// the duals (see lpBound), so a rounding error can only make it looser.

// rowKind is the sense of one constraint.
type rowKind int8

const (
	rowLE rowKind = iota // a·x <= b
	rowGE                // a·x >= b
	rowEQ                // a·x == b
)

// lpRow is one sparse constraint.
type lpRow struct {
	idx  []int
	val  []float64
	kind rowKind
	rhs  float64
}

// lp is min c·x subject to rows, x >= 0.
type lp struct {
	cost []float64
	rows []lpRow
}

func (p *lp) addVar(cost float64) int {
	p.cost = append(p.cost, cost)
	return len(p.cost) - 1
}

func (p *lp) addRow(r lpRow) int {
	p.rows = append(p.rows, r)
	return len(p.rows) - 1
}

var (
	errInfeasible = errors.New("lp: infeasible")
	errUnbounded  = errors.New("lp: unbounded")
	errIterations = errors.New("lp: iteration limit")
)

// lpResult is an optimal solution with its duals: dual[i] is the change of
// the optimum per unit of rows[i].rhs (>= 0 for rowGE, <= 0 for rowLE).
type lpResult struct {
	obj  float64
	x    []float64
	dual []float64
}

const lpEps = 1e-9

// solve runs a two-phase tableau simplex: Dantzig's rule, switching to
// Bland's (which cannot cycle) after a run of degenerate pivots.
func (p *lp) solve(maxPivots int) (*lpResult, error) {
	m, n := len(p.rows), len(p.cost)
	// Columns: n structural, then one slack or surplus per inequality, then
	// one artificial per row that needs one.
	sign := make([]float64, m) // +1, or -1 where the row was negated to make rhs >= 0
	kinds := make([]rowKind, m)
	slackCol := make([]int, m)
	artCol := make([]int, m)
	cols := n
	for i, r := range p.rows {
		sign[i], kinds[i] = 1, r.kind
		if r.rhs < 0 {
			sign[i] = -1
			switch r.kind {
			case rowLE:
				kinds[i] = rowGE
			case rowGE:
				kinds[i] = rowLE
			}
		}
		slackCol[i], artCol[i] = -1, -1
		if kinds[i] != rowEQ {
			slackCol[i] = cols
			cols++
		}
	}
	for i := range p.rows {
		if kinds[i] != rowLE {
			artCol[i] = cols
			cols++
		}
	}
	w := cols + 1 // last column is the rhs
	t := make([]float64, (m+1)*w)
	row := func(i int) []float64 { return t[i*w : (i+1)*w] }
	basis := make([]int, m)
	for i, r := range p.rows {
		tr := row(i)
		for k, j := range r.idx {
			tr[j] += sign[i] * r.val[k]
		}
		tr[cols] = sign[i] * r.rhs
		switch kinds[i] {
		case rowLE:
			tr[slackCol[i]] = 1
			basis[i] = slackCol[i]
		case rowGE:
			tr[slackCol[i]] = -1
			tr[artCol[i]] = 1
			basis[i] = artCol[i]
		case rowEQ:
			tr[artCol[i]] = 1
			basis[i] = artCol[i]
		}
	}
	obj := row(m)
	artSet := make([]bool, cols)
	for _, j := range artCol {
		if j >= 0 {
			artSet[j] = true
		}
	}
	pivots := 0
	var nz []int // the pivot row's nonzero columns: most are zero
	pivot := func(r, c int) {
		pr := row(r)
		inv := 1 / pr[c]
		for j := range pr {
			pr[j] *= inv
		}
		pr[c] = 1
		nz = nz[:0]
		for j, v := range pr {
			if v != 0 {
				nz = append(nz, j)
			}
		}
		for i := 0; i <= m; i++ {
			if i == r {
				continue
			}
			ri := row(i)
			f := ri[c]
			if f == 0 {
				continue
			}
			for _, j := range nz {
				ri[j] -= f * pr[j]
			}
			ri[c] = 0
		}
		basis[r] = c
		pivots++
	}
	// iterate minimises the objective row's function; allowed says which
	// columns may enter.
	iterate := func(allowed func(int) bool) error {
		degenerate := 0
		for {
			if pivots > maxPivots {
				return errIterations
			}
			bland := degenerate > 50
			enter := -1
			best := -lpEps
			for j := 0; j < cols; j++ {
				if !allowed(j) {
					continue
				}
				if d := obj[j]; d < best {
					enter, best = j, d
					if bland {
						break
					}
				}
			}
			if enter < 0 {
				return nil
			}
			leave := -1
			ratio := math.Inf(1)
			for i := range m {
				a := row(i)[enter]
				if a <= lpEps {
					continue
				}
				// A basic value below zero is rounding (or worse): read
				// as zero, it cannot pick a negative step that raises the
				// objective and spoils the tableau further.
				q := math.Max(row(i)[cols], 0) / a
				if q < ratio-lpEps || (q < ratio+lpEps && leave >= 0 && bland && basis[i] < basis[leave]) {
					leave, ratio = i, q
				}
			}
			if leave < 0 {
				return errUnbounded
			}
			if ratio < lpEps {
				degenerate++
			} else {
				degenerate = 0
			}
			pivot(leave, enter)
		}
	}
	// Phase I: minimise the sum of artificials. The objective row holds
	// reduced costs, -z in the rhs column.
	hasArt := false
	for i := range p.rows {
		if artCol[i] >= 0 {
			hasArt = true
			obj[artCol[i]] = 1
		}
	}
	if hasArt {
		for i := range m {
			if artSet[basis[i]] {
				ri := row(i)
				for j := range obj {
					obj[j] -= ri[j]
				}
			}
		}
		if err := iterate(func(j int) bool { return true }); err != nil && err != errUnbounded {
			return nil, err
		}
		if -obj[cols] > 1e-7*math.Max(1, maxAbsRHS(p.rows)) {
			return nil, errInfeasible
		}
		// Drive artificials out of the basis where a non-artificial column can replace them.
		for i := range m {
			if !artSet[basis[i]] {
				continue
			}
			ri := row(i)
			for j := 0; j < cols; j++ {
				if !artSet[j] && math.Abs(ri[j]) > 1e-7 {
					pivot(i, j)
					break
				}
			}
		}
	}
	// Phase II.
	for j := range obj {
		obj[j] = 0
	}
	for j := range n {
		obj[j] = p.cost[j]
	}
	for i := range m {
		if b := basis[i]; b < n && p.cost[b] != 0 {
			ri := row(i)
			f := p.cost[b]
			for j := range obj {
				obj[j] -= f * ri[j]
			}
		}
	}
	if err := iterate(func(j int) bool { return !artSet[j] }); err != nil {
		return nil, err
	}
	res := &lpResult{obj: -obj[cols], x: make([]float64, n), dual: make([]float64, m)}
	for i := range m {
		if b := basis[i]; b < n {
			res.x[b] = row(i)[cols]
		}
	}
	// Duals from the reduced costs of each row's slack (or artificial):
	// rc = cost - y·column, with the column σ·e_i for a slack of sign σ.
	for i := range p.rows {
		var y float64
		switch kinds[i] {
		case rowLE:
			y = -obj[slackCol[i]]
		case rowGE:
			y = obj[slackCol[i]]
		case rowEQ:
			y = -obj[artCol[i]]
		}
		res.dual[i] = sign[i] * y
	}
	return res, nil
}

func maxAbsRHS(rows []lpRow) float64 {
	var m float64
	for _, r := range rows {
		m = math.Max(m, math.Abs(r.rhs))
	}
	return m
}
