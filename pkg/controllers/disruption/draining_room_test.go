package disruption

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// A command of an earlier pass deleted node a (its pod fits on x); a is
// still draining, its pod a0 not yet evicted. A later what-if for b must
// leave x's room to a0: planning b's pod there too sends one of them to
// Pending once both drains finish, though each command said its pods had
// a place.
func TestWhatIfLeavesRoomToPodsOfADrainingNode(t *testing.T) {
	realSolver := func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }
	for name, solve := range map[string]SolverFunc{"first fit": firstFit, "solver": realSolver} {
		t.Run(name, func(t *testing.T) { testWhatIfLeavesRoomToPodsOfADrainingNode(t, solve) })
	}
}

func testWhatIfLeavesRoomToPodsOfADrainingNode(t *testing.T, solve SolverFunc) {
	now := start.Add(time.Hour)
	small := catalog()[0] // 4 CPU
	ca, na := draining("a", small, now)
	cb, nb := machine("b", "p", small, v1.CapacityTypeOnDemand, start)
	cx, nx := machine("x", "p", small, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("a0", "a", "3"), pod("b0", "b", "3"), pod("x0", "x", "1", annotated(v1.AnnotationDoNotDisrupt, "true"))}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb, cx}, []*corev1.Node{na, nb, nx}, pods, nil)
	e := NewEvaluation(st, &Simulator{Solver: solve, Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	b := candidate(BuildCandidates(st, nil), "b")
	if b == nil {
		t.Fatal("b is no candidate")
	}
	sim, err := e.simulate(context.Background(), []*Candidate{b})
	if err != nil {
		t.Fatal(err)
	}
	if len(sim.Plan.NewNodes) != 1 {
		t.Errorf("the what-if buys %d machines, want 1 for b0 (x's room is a0's)", len(sim.Plan.NewNodes))
	}
	for _, bd := range sim.Plan.Bindings {
		if bd.NodeName == "x" && bd.Pod.Name == "b0" {
			t.Errorf("the what-if puts b0 on x, whose room a0 (draining off a) needs")
		}
	}
}

// Removing the node whose room a draining pod is to take sends that pod
// elsewhere too: here it needs a machine, so the what-if buys one.
func TestWhatIfPlacesAgainPodsWhoseRoomItRemoves(t *testing.T) {
	now := start.Add(time.Hour)
	small := catalog()[0] // 4 CPU
	ca, na := draining("a", small, now)
	cb, nb := machine("b", "p", small, v1.CapacityTypeOnDemand, start)
	cx, nx := machine("x", "p", small, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("a0", "a", "3"), pod("b0", "b", "1"), pod("x0", "x", "3", annotated(v1.AnnotationDoNotDisrupt, "true"))}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb, cx}, []*corev1.Node{na, nb, nx}, pods, nil)
	e := NewEvaluation(st, &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	b := candidate(BuildCandidates(st, nil), "b")
	if b == nil {
		t.Fatal("b is no candidate")
	}
	sim, err := e.simulate(context.Background(), []*Candidate{b})
	if err != nil {
		t.Fatal(err)
	}
	var placed []string
	for _, n := range sim.Plan.NewNodes {
		for _, p := range n.Pods {
			placed = append(placed, p.Name)
		}
	}
	if len(sim.Plan.NewNodes) != 1 || len(placed) != 1 || placed[0] != "a0" {
		t.Errorf("new machines hold %v, want one holding a0 (its room on b is going)", placed)
	}
	if !sim.Feasible() {
		t.Errorf("what-if leaves pods without a place: %+v", sim.Plan.Unschedulable)
	}
}

// A what-if for a going node itself (the interruption controller's) counts
// its pods once: they are the ones to place, not also holding room.
func TestWhatIfOfAGoingNodeCountsItsPodsOnce(t *testing.T) {
	now := start.Add(time.Hour)
	small := catalog()[0] // 4 CPU
	ca, na := machine("a", "p", small, v1.CapacityTypeSpot, start)
	withCondition(ca, v1.ConditionInterrupted, "SpotInterruption", now)
	cx, nx := machine("x", "p", small, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("a0", "a", "3"), pod("x0", "x", "1")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cx}, []*corev1.Node{na, nx}, pods, nil)
	s := &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}
	sim, err := s.Simulate(context.Background(), st, []*Candidate{{Claim: ca, Node: na, Pods: st.PodsByNode["a"]}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(sim.Plan.NewNodes) != 0 || len(sim.Plan.Bindings) != 1 || sim.Plan.Bindings[0].NodeName != "x" {
		t.Errorf("plan binds %v and buys %d machines, want a0 on x and nothing bought", sim.Plan.Bindings, len(sim.Plan.NewNodes))
	}
}

// An empty node whose room a draining node's pod is to take is kept.
func TestEmptinessKeepsRoomHeldForPodsOfADrainingNode(t *testing.T) {
	now := start.Add(time.Hour)
	small := catalog()[0] // 4 CPU
	ca, na := draining("a", small, now)
	cy, ny := machine("y", "p", small, v1.CapacityTypeOnDemand, start)
	cz, nz := machine("z", "p", small, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("a0", "a", "3")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cy, cz}, []*corev1.Node{na, ny, nz}, pods, nil)
	e := NewEvaluation(st, &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	var empty []*Candidate
	for _, c := range BuildCandidates(st, nil) {
		if (Emptiness{}).ShouldDisrupt(e, c) {
			empty = append(empty, c)
		}
	}
	if len(empty) != 2 {
		t.Fatalf("%d empty candidates, want y and z", len(empty))
	}
	cmds, err := Emptiness{}.ComputeCommands(context.Background(), e, empty)
	if err != nil {
		t.Fatal(err)
	}
	var deleted []string
	for _, cmd := range cmds {
		for _, c := range cmd.Candidates {
			deleted = append(deleted, c.Name())
		}
	}
	if len(deleted) != 1 || deleted[0] != "z" {
		t.Errorf("emptiness deletes %v, want only z (a0 is to land on y)", deleted)
	}
}

// A do-not-disrupt pod on a draining node is left to finish there: it holds
// no room elsewhere, which could otherwise be held for good.
func TestDoNotDisruptPodOfADrainingNodeHoldsNoRoom(t *testing.T) {
	now := start.Add(time.Hour)
	small := catalog()[0] // 4 CPU
	ca, na := draining("a", small, now)
	cy, ny := machine("y", "p", small, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("a0", "a", "3", annotated(v1.AnnotationDoNotDisrupt, "true"))}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cy}, []*corev1.Node{na, ny}, pods, nil)
	held, err := (&Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}).held(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 0 {
		t.Errorf("room held: %v, want none", held)
	}
}

// draining is a machine a command of an earlier pass deleted and tainted,
// its pods not evicted yet.
func draining(name string, it *cloudprovider.InstanceType, now time.Time) (*v1.NodeClaim, *corev1.Node) {
	c, n := machine(name, "p", it, v1.CapacityTypeOnDemand, start)
	c.DeletionTimestamp = &metav1.Time{Time: now.Add(-time.Minute)}
	c.Finalizers = []string{v1.TerminationFinalizer}
	n.Spec.Taints = []corev1.Taint{disruptedTaint}
	return c, n
}

// Drift plans d's pod onto the empty node y; emptiness, deciding after it
// in the same pass, must not delete y: once both ran, d0 would go Pending
// and a machine be bought, though drift said it had a place.
func TestPassEmptinessKeepsANodeAnotherCommandMovesPodsOnto(t *testing.T) {
	d := mach("d", 0, v1.CapacityTypeOnDemand)
	withCondition(d[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	e := newEnv(t, objects(pool("p"), d, mach("y", 0, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("d0", "d", "3")))
	e.pass(t)
	e.validate(t)
	if diff := cmp.Diff([]string{"y"}, e.claims(t)); diff != "" {
		t.Fatalf("claims (-want +got):\n%s", diff)
	}
}

// An empty node decided at one pass whose room the pods of a node that
// started draining since are to take is kept at validation.
func TestPassEmptinessValidationKeepsRoomHeldForDrainingPods(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 0, v1.CapacityTypeOnDemand), mach("y", 0, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("a0", "a", "3", annotated(v1.AnnotationDoNotDisrupt, "true"))))
	e.pass(t) // decides: y is empty; a is blocked
	// a starts draining (an interruption, say) before the validation; a0 is to land on y.
	node := &corev1.Node{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: "a"}, node))
	node.Spec.Taints = []corev1.Taint{disruptedTaint}
	mustT(t, e.client.Update(context.Background(), node))
	p := &corev1.Pod{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "a0"}, p))
	p.Annotations = nil
	mustT(t, e.client.Update(context.Background(), p))
	e.validate(t)
	if !slices.Contains(e.claims(t), "y") || e.tainted(t, "y") {
		t.Fatalf("claims %v, y tainted %v: y was deleted though a0 is to land on it", e.claims(t), e.tainted(t, "y"))
	}
}
