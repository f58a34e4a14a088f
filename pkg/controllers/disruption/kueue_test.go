package disruption

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

func kueueGroup(total string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Labels[scheduling.LabelKueuePodGroup] = "train"
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[scheduling.AnnotationKueuePodGroupTotal] = total
	}
}

func succeeded(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }

// The running members of a Kueue pod group one of whose pods succeeded
// move as a gang of those still running: Kueue counts the succeeded pod
// toward the total, and waiting for it would keep their node forever.
func TestWhatIfMovesKueueGroupLessItsSucceededMembers(t *testing.T) {
	now := start.Add(time.Hour)
	small := catalog()[0] // 4 CPU
	ca, na := machine("a", "p", small, v1.CapacityTypeOnDemand, start)
	cx, nx := machine("x", "p", small, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{
		pod("k0", "a", "1", kueueGroup("3")), pod("k1", "a", "1", kueueGroup("3")),
		pod("k2", "x", "1", kueueGroup("3"), succeeded),
	}
	c := cloudtest.NewClientBuilder().WithObjects(ca, cx, na, nx, pods[0], pods[1], pods[2]).Build()
	st, err := ReadState(context.Background(), c, now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"default/train": 1}, st.KueueSucceeded); diff != "" {
		t.Errorf("succeeded Kueue members (-want +got):\n%s", diff)
	}
	st.Pools = map[string]*v1.NodePool{"p": pool("p")}
	solve := func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }
	s := &Simulator{Solver: SolverFunc(solve), Cloud: &fakeCloud{types: catalog()}}
	sim, err := s.Simulate(context.Background(), st, []*Candidate{{Claim: ca, Node: na, Pods: st.PodsByNode["a"]}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !sim.Feasible() || len(sim.Plan.Bindings) != 2 {
		var why []string
		for _, u := range sim.Plan.Unschedulable {
			why = append(why, u.Pod.Name+": "+u.Reason)
		}
		t.Errorf("plan binds %d pods, leaves %v; want k0 and k1 moved to x", len(sim.Plan.Bindings), why)
	}
}
