package disruption

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// The interruption controller marks a claim Interrupted before it taints
// the node (and retries the taint when that write fails). In between, a
// what-if must not offer the node the cloud is taking back as a place for
// another node's pods: consolidation would delete a and send its pod to a
// machine that is about to disappear.
func TestWhatIfNeverMovesPodsOntoAnInterruptedNode(t *testing.T) {
	now := start.Add(time.Hour)
	large := catalog()[1]
	ca, na := machine("a", "p", large, v1.CapacityTypeOnDemand, start)
	cb, nb := machine("b", "p", large, v1.CapacityTypeOnDemand, start)
	withCondition(cb, v1.ConditionInterrupted, "SpotReclaim", now)
	pods := []*corev1.Pod{pod("a0", "a", "1"), pod("b0", "b", "1")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb}, []*corev1.Node{na, nb}, pods, nil)
	e := NewEvaluation(st, &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	cands := BuildCandidates(st, nil)
	if len(cands) != 1 || cands[0].Name() != "a" {
		t.Fatalf("candidates %v, want a alone", names(cands))
	}
	sim, err := e.simulate(context.Background(), cands)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range sim.Plan.Bindings {
		if b.NodeName == "b" {
			t.Errorf("the what-if moves pod %s onto interrupted node b", b.Pod.Name)
		}
	}
}
