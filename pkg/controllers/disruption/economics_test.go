package disruption

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/commitments"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

// Consolidation's economics: what a node costs, what its replacement may
// cost, and which of several workable commands is kept.

func economicsEval(st *ClusterState, solve Solver, cloud InstanceTyper) *Evaluation {
	return NewEvaluation(st, &Simulator{Solver: solve, Cloud: cloud}, DefaultChurnGuard())
}

func realSolver() Solver {
	return SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
}

func parsePrice(s string) float64 {
	return claimPrice(&v1.NodeClaim{Status: v1.NodeClaimStatus{PricePerHour: s}})
}

// A spot node launched when the spot price was $2.00/h is recorded at that
// price; it costs $0.40/h now. Priced as recorded, consolidation "replaced"
// it with the very same offering for a $1.60/h saving: a GPU job restarted
// for nothing, and again on every later dip of the price.
func TestConsolidationPricesANodeAtItsOfferingNow(t *testing.T) {
	now := start.Add(time.Hour)
	gpu := catalog()[2] // gpu1: on-demand 1.00, spot 0.40
	ca, na := machine("a", "p", gpu, v1.CapacityTypeSpot, start)
	ca.Status.PricePerHour = "2" // the spot price at launch
	pods := []*corev1.Pod{pod("train", "a", "1", gpuRequest)}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca}, []*corev1.Node{na}, pods, nil)
	cloud := &fakeCloud{types: catalog()}
	e := economicsEval(st, SolverFunc(firstFit), cloud)
	cands := BuildCandidates(st, nil)
	Reprice(context.Background(), st, cloud, cands)
	cmd, err := Consolidation{}.ComputeCommand(context.Background(), e, cands)
	mustT(t, err)
	if !cmd.IsEmpty() {
		t.Errorf("consolidation = %q; the node costs the current spot price $0.40/h, so replacing it with the same offering saves nothing", cmd)
	}
}

// The replacement's fallback offerings are not limited to machines that
// still save money: the claim carries every offering that holds the pods,
// up to large on-demand (the candidate's own price) and gpu1 on-demand
// ($1.00/h, more than the candidate). If the first choice has no capacity
// the launch falls back to one of them, the replacement turns Ready and the
// candidate is drained: a "consolidation" that costs as much or more.
func TestReplacementFallbacksAllSave(t *testing.T) {
	now := start.Add(time.Hour)
	large := catalog()[1]
	ca, na := machine("a", "p", large, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("web", "a", "1")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca}, []*corev1.Node{na}, pods, nil)
	e := economicsEval(st, realSolver(), &fakeCloud{types: catalog()})
	cmd, err := Consolidation{}.ComputeCommand(context.Background(), e, BuildCandidates(st, nil))
	mustT(t, err)
	if len(cmd.Replacements) != 1 {
		t.Fatalf("consolidation = %q, want one replacement", cmd)
	}
	claim, err := ReplacementClaim(st.Pools["p"], cmd.Replacements[0], ca, now)
	mustT(t, err)
	old := priceOf(cmd.Candidates)
	g := DefaultChurnGuard()
	for _, o := range claim.Spec.Offerings {
		price := parsePrice(o.PricePerHour)
		if old-price < g.MinSavingsPerHour || old-price < g.MinSavingsFraction*old {
			t.Errorf("replacement claim may launch %s %s at $%s/h for a candidate costing $%.2f/h", o.InstanceType, o.CapacityType, o.PricePerHour, old)
		}
	}
}

// Multi-node consolidation keeps the longest feasible prefix, not the best
// one. Deleting a and b (their pods fit on d) saves $1.60/h and launches
// nothing; the longer prefix [a, b, c] needs c's GPU pods on a new on-demand
// gpu1 (spot has no capacity now) and saves only $1.00/h, yet it is chosen,
// disrupting a GPU job as well.
func TestMultiNodeKeepsTheBetterGroupNotTheLonger(t *testing.T) {
	now := start.Add(time.Hour)
	cat := catalog()
	large, gpu := cat[1], cat[2]
	cd, nd := machine("d", "p", large, v1.CapacityTypeOnDemand, start)
	ca, na := machine("a", "p", large, v1.CapacityTypeOnDemand, start)
	cb, nb := machine("b", "p", large, v1.CapacityTypeOnDemand, start)
	cc, nc := machine("c", "p", gpu, v1.CapacityTypeSpot, start)
	pods := []*corev1.Pod{
		blockedPod("d0", "d"), pod("d1", "d", "13"), // d: blocked, 2 CPUs free
		pod("a0", "a", "1"), pod("b0", "b", "1"),
		pod("c0", "c", "1", gpuRequest), pod("c1", "c", "1"),
	}
	// No spot capacity for gpu1 right now.
	for i := range cat[2].Offerings {
		if cat[2].Offerings[i].CapacityType == v1.CapacityTypeSpot {
			cat[2].Offerings[i].Available = false
		}
	}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb, cc, cd}, []*corev1.Node{na, nb, nc, nd}, pods, nil)
	e := economicsEval(st, realSolver(), &fakeCloud{types: cat})
	var cands []*Candidate
	for _, c := range BuildCandidates(st, nil) {
		if (Consolidation{}).ShouldDisrupt(e, c) {
			cands = append(cands, c)
		}
	}
	cmd, err := Consolidation{}.ComputeCommand(context.Background(), e, cands)
	mustT(t, err)
	if want := "multi-node delete [a, b], saving $1.6000/h"; cmd.String() != want {
		t.Errorf("consolidation = %q, want %q (a larger saving, nothing to launch, no GPU job disrupted)", cmd, want)
	}
}

// Node r runs on a capacity reservation (paid whether used or not: marginal
// $0.0001/h) with one small pod; node d is on-demand ($0.80/h) with two pods
// that fit on r. Deleting d saves $0.80/h. Single-node consolidation takes
// the first candidate that works, fewest pods first, and deletes r instead:
// a pod is evicted and paid-for capacity left idle for a "saving" of
// $0.0001/h; deletes pass no minimum-saving guard.
func TestNoDeleteOfANodeThatCostsNothing(t *testing.T) {
	now := start.Add(time.Hour)
	large := instanceType("large", "16", "64Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.80, v1.CapacityTypeReserved: 0.0001})
	cr, nr := machine("r", "p", large, v1.CapacityTypeReserved, start)
	cd, nd := machine("d", "p", large, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("r0", "r", "1"), pod("d0", "d", "5"), pod("d1", "d", "5")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{cr, cd}, []*corev1.Node{nr, nd}, pods, nil)
	e := economicsEval(st, realSolver(), &fakeCloud{types: []*cloudprovider.InstanceType{large}})
	cmds, err := Consolidation{}.ComputeCommands(context.Background(), e, BuildCandidates(st, nil))
	mustT(t, err)
	var got []string
	for _, c := range cmds {
		got = append(got, c.String())
	}
	if want := "single-node delete [d], saving $0.8000/h"; len(got) != 1 || got[0] != want {
		t.Errorf("consolidation = %q, want [%q]", got, want)
	}
}

// Exactly the minimum saving of five cents is refused when the prices do not
// subtract exactly in binary: $0.60 -> $0.55 saves $0.0500/h, which the
// guard reports as "below the minimum ($0.05/h)", while $1.00 -> $0.95 is
// allowed (TestChurnGuard, "5% and 5 cents exactly").
func TestGuardMinimumToleratesFloatError(t *testing.T) {
	now := start.Add(2 * time.Hour)
	claim, node := machine("n", "p", catalog()[2], v1.CapacityTypeSpot, start)
	c := &Candidate{Claim: claim, Node: node, PricePerHour: 0.60}
	repl := []*solver.NewNode{{Choices: []solver.Choice{{InstanceType: &cloudprovider.InstanceType{Name: "x"},
		Offering: cloudprovider.Offering{PricePerHour: 0.55}}}}}
	if _, why := DefaultChurnGuard().AllowsReplace(now, []*Candidate{c}, repl); why != "" {
		t.Errorf("AllowsReplace($0.60 -> $0.55) refused: %s", why)
	}
}

// An earlier command replaces node a (its 15-CPU pod) with r, a large that
// is Ready and empty while a drains: the pod arrives only once a's copy is
// gone (a StatefulSet's pod is recreated only then; a GPU job checkpoints
// for minutes). r is rightly no candidate, but what-ifs saw its whole room
// as free: consolidation deleted x by moving x's 2-CPU pod onto r. When a drains, its pod no longer
// fits r, goes pending, and provisioning buys another machine: the "saving"
// is churn.
func TestWhatIfLeavesAReplacementsRoomToItsPredecessorsPods(t *testing.T) {
	now := start.Add(time.Hour)
	large := catalog()[1]
	ca, na := machine("a", "p", large, v1.CapacityTypeOnDemand, start)
	rec, err := json.Marshal(commandRecord{ID: "a-1", Method: "single-node", Reason: v1.DisruptionReasonUnderutilized,
		Replacements: 1, Started: now.Add(-time.Minute)})
	mustT(t, err)
	ca.Annotations = map[string]string{AnnotationCommand: string(rec)}
	// r turned Ready; a is draining (its pod terminates slowly).
	ca.DeletionTimestamp = ptr.To(metav1.NewTime(now.Add(-10 * time.Second)))
	ca.Finalizers = []string{"stowage.dev/termination"}
	na.Spec.Taints = []corev1.Taint{disruptedTaint}
	cr, nr := machine("r", "p", large, v1.CapacityTypeOnDemand, now.Add(-time.Minute))
	cr.Annotations = map[string]string{AnnotationReplacementFor: "a-1", AnnotationReplacedAt: now.Add(-time.Minute).Format(time.RFC3339)}
	cx, nx := machine("x", "p", large, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("a0", "a", "15"), pod("x0", "x", "2")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cr, cx}, []*corev1.Node{na, nr, nx}, pods, nil)
	e := economicsEval(st, realSolver(), &fakeCloud{types: catalog()})
	cmd, err := Consolidation{}.ComputeCommand(context.Background(), e, BuildCandidates(st, nil))
	mustT(t, err)
	for _, b := range cmd.Bindings {
		if b.NodeName == "r" {
			t.Errorf("consolidation = %q moves %s onto r, whose room is promised to a's pod (15 CPUs of 16)", cmd, b.Pod.Name)
		}
	}
}

// Two consolidation commands of one pass spend the same Reserved Instance.
// The RI pays for one "l" machine and none runs. Nodes a and b ("m" spot at
// $0.40/h, one 7-CPU pod each; two such pods do not fit one "l") are each
// replaced by an "l": the first on the covered offering ($0.0001/h), the
// second, decided in the same pass on top of the first, is offered the same
// coverage again (the pass prices types once and the overlay does not spend
// commitments). The second replacement is really billed at list, $0.80/h,
// twice what b costs.
func TestCommitmentNotSpentTwiceInOnePass(t *testing.T) {
	now := start.Add(time.Hour)
	cat := []*cloudprovider.InstanceType{
		instanceType("m", "8", "32Gi", 0, map[string]float64{v1.CapacityTypeSpot: 0.40, v1.CapacityTypeOnDemand: 1.00}),
		instanceType("l", "12", "48Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.80}),
	}
	ca, na := machine("a", "p", cat[0], v1.CapacityTypeSpot, start)
	cb, nb := machine("b", "p", cat[0], v1.CapacityTypeSpot, start)
	ri := &v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: "ri"}, Spec: v1.CommitmentSpec{
		Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(1)),
		Requirements: []v1.NodeSelectorRequirementWithMinValues{{
			Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"l"}}},
	}}
	kube := cloudtest.NewClientBuilder().WithObjects(ri, ca.DeepCopy(), cb.DeepCopy()).Build()
	pricer := commitments.NewPricer(&fakeCloud{types: cat}, kube, nil)
	pods := []*corev1.Pod{pod("a0", "a", "7"), pod("b0", "b", "7")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb}, []*corev1.Node{na, nb}, pods, nil)
	e := economicsEval(st, realSolver(), pricer)
	cmds, err := Consolidation{}.ComputeCommands(context.Background(), e, BuildCandidates(st, nil))
	mustT(t, err)
	covered := 0
	var got []string
	for _, cmd := range cmds {
		got = append(got, cmd.String())
		for _, r := range cmd.Replacements {
			if r.Choices[0].Offering.Commitment != "" {
				covered++
			}
		}
	}
	if covered > 1 {
		t.Errorf("commands %q put %d replacements on a commitment that covers one machine", got, covered)
	}
}

// A machine is priced at what commitments make it cost now, not at launch.
// Node a ("l", on-demand, one 1-CPU pod) launched on a Reserved Instance
// and recorded $0.0001/h; the RI has since ended, so a costs its $0.80/h
// list price and a $0.10/h "s" holds its pod. Node b is the converse: it
// launched at list, and an RI bought since covers it, so replacing it saves
// nothing (the RI is paid whether b runs or not).
func TestConsolidationPricesCommitmentCoverageNow(t *testing.T) {
	now := start.Add(time.Hour)
	cat := []*cloudprovider.InstanceType{
		instanceType("s", "2", "8Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.10}),
		instanceType("l", "12", "48Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.80}),
	}
	riFor := func(name string, end *metav1.Time) *v1.Commitment {
		return &v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.CommitmentSpec{
			Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(1)), EndTime: end,
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{
				Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"l"}}},
		}}
	}
	for _, tt := range []struct {
		name        string
		ri          *v1.Commitment
		launchPrice string
		wantReplace bool
	}{
		{"covered at launch, RI ended", riFor("ended", &metav1.Time{Time: now.Add(-time.Minute)}), "0.0001", true},
		{"list at launch, RI bought since", riFor("new", nil), "0.8", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ca, na := machine("a", "p", cat[1], v1.CapacityTypeOnDemand, start)
			ca.Status.PricePerHour = tt.launchPrice
			kube := cloudtest.NewClientBuilder().WithObjects(tt.ri, ca.DeepCopy()).Build()
			pricer := commitments.NewPricer(&fakeCloud{types: cat}, kube, clocktesting.NewFakeClock(now))
			st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca}, []*corev1.Node{na}, []*corev1.Pod{pod("web", "a", "1")}, nil)
			e := economicsEval(st, realSolver(), pricer)
			cands := BuildCandidates(st, nil)
			Reprice(context.Background(), st, pricer, cands)
			cmd, err := Consolidation{}.ComputeCommand(context.Background(), e, cands)
			mustT(t, err)
			if got := len(cmd.Replacements) == 1; got != tt.wantReplace {
				t.Errorf("consolidation = %q; want a replacement: %v", cmd, tt.wantReplace)
			}
		})
	}
}
