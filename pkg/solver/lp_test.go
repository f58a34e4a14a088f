package solver

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestLPSmall(t *testing.T) {
	// min -x - y s.t. x + 2y <= 4, 3x + y <= 6: optimum at (1.6, 1.2), -2.8;
	// duals -0.4 and -0.2.
	p := &lp{}
	x, y := p.addVar(-1), p.addVar(-1)
	p.addRow(lpRow{idx: []int{x, y}, val: []float64{1, 2}, kind: rowLE, rhs: 4})
	p.addRow(lpRow{idx: []int{x, y}, val: []float64{3, 1}, kind: rowLE, rhs: 6})
	r, err := p.solve(1000)
	if err != nil {
		t.Fatal(err)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-7 }
	if !near(r.obj, -2.8) || !near(r.x[0], 1.6) || !near(r.x[1], 1.2) || !near(r.dual[0], -0.4) || !near(r.dual[1], -0.2) {
		t.Errorf("got obj %v x %v duals %v", r.obj, r.x, r.dual)
	}
	// Covering: min 2a + 3b s.t. a + b >= 2, a <= 1, b - a == 0 (so a = b = 1): 5.
	p = &lp{}
	a, b := p.addVar(2), p.addVar(3)
	p.addRow(lpRow{idx: []int{a, b}, val: []float64{1, 1}, kind: rowGE, rhs: 2})
	p.addRow(lpRow{idx: []int{a}, val: []float64{1}, kind: rowLE, rhs: 1})
	p.addRow(lpRow{idx: []int{a, b}, val: []float64{-1, 1}, kind: rowEQ, rhs: 0})
	if r, err = p.solve(1000); err != nil || !near(r.obj, 5) {
		t.Errorf("covering: %v %v", r, err)
	}
	// Infeasible: x >= 2, x <= 1.
	p = &lp{}
	x = p.addVar(1)
	p.addRow(lpRow{idx: []int{x}, val: []float64{1}, kind: rowGE, rhs: 2})
	p.addRow(lpRow{idx: []int{x}, val: []float64{1}, kind: rowLE, rhs: 1})
	if _, err := p.solve(1000); err != errInfeasible {
		t.Errorf("infeasible LP: err %v", err)
	}
	// Negative right-hand side: -x <= -3 means x >= 3; min x = 3, dual of the row -1.
	p = &lp{}
	x = p.addVar(1)
	p.addRow(lpRow{idx: []int{x}, val: []float64{-1}, kind: rowLE, rhs: -3})
	if r, err = p.solve(1000); err != nil || !near(r.obj, 3) || !near(r.dual[0], -1) {
		t.Errorf("negative rhs: %+v %v", r, err)
	}
}

// TestLPDuality: on random feasible covering LPs the duals are feasible for
// the dual program and their objective equals the primal optimum.
func TestLPDuality(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for k := range 200 {
		m, n := 1+r.IntN(8), 1+r.IntN(10)
		p := &lp{}
		A := make([][]float64, m)
		for range n {
			p.addVar(0.1 + r.Float64())
		}
		for i := range m {
			A[i] = make([]float64, n)
			row := lpRow{kind: rowGE, rhs: r.Float64() * 5}
			for j := range n {
				if r.IntN(2) == 0 {
					A[i][j] = r.Float64()
					row.idx, row.val = append(row.idx, j), append(row.val, A[i][j])
				}
			}
			if len(row.idx) == 0 {
				A[i][0] = 1
				row.idx, row.val = []int{0}, []float64{1}
			}
			p.addRow(row)
		}
		res, err := p.solve(10000)
		if err != nil {
			t.Fatalf("case %d: %v", k, err)
		}
		var dobj float64
		for i := range m {
			if res.dual[i] < -1e-9 {
				t.Fatalf("case %d: negative dual %v on a >= row", k, res.dual[i])
			}
			dobj += res.dual[i] * p.rows[i].rhs
		}
		for j := range n {
			var s float64
			for i := range m {
				s += res.dual[i] * A[i][j]
			}
			if s > p.cost[j]+1e-7 {
				t.Fatalf("case %d: dual infeasible in column %d: %v > %v", k, j, s, p.cost[j])
			}
		}
		if math.Abs(dobj-res.obj) > 1e-6*math.Max(1, res.obj) {
			t.Fatalf("case %d: dual objective %v, primal %v", k, dobj, res.obj)
		}
	}
}
