package provisioning

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// Kueue counts a pod group's succeeded members toward its total count, and
// they need no room. Of a group of 4, one succeeded, two run and one (a
// failed member's replacement) is pending: the group is whole and the
// replacement gets a machine, instead of waiting for a fourth live member
// that never comes. A failed member is replaced, so it does not count.
func TestKueueGroupSucceededMembersCount(t *testing.T) {
	f := newFixture(t, nil)
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	f.cluster.UpdateNode(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelZone: "us-east-1b"}},
		Status: corev1.NodeStatus{Allocatable: res("cpu", "4", "nvidia.com/gpu", "3", "pods", "110"),
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
	member := func(p *corev1.Pod) {
		p.Labels = map[string]string{scheduling.LabelKueuePodGroup: "train"}
		p.Annotations = map[string]string{scheduling.AnnotationKueuePodGroupTotal: "4"}
	}
	on := func(phase corev1.PodPhase) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Spec.NodeName, p.Status = "n1", corev1.PodStatus{Phase: phase} }
	}
	f.cluster.UpdatePod(withPod(pendingPod("w0"), tolerateGPU, member, on(corev1.PodSucceeded)))
	f.cluster.UpdatePod(withPod(pendingPod("w1"), tolerateGPU, member, on(corev1.PodFailed)))
	f.cluster.UpdatePod(withPod(pendingPod("w2"), tolerateGPU, member, on(corev1.PodRunning)))
	f.cluster.UpdatePod(withPod(pendingPod("w3"), tolerateGPU, member, on(corev1.PodRunning)))
	f.cluster.UpdatePod(withPod(pendingPod("w1-replacement"), tolerateGPU, member))
	r := f.schedule(t)
	if len(r.Plan.Unschedulable) != 0 {
		for _, u := range r.Plan.Unschedulable {
			t.Errorf("unschedulable %s: %s", u.Pod.Name, u.Reason)
		}
		t.Fatal("the replacement of a pod group whose other members ran or run waits for a member that never comes")
	}
	// The node has room for the replacement: the finished members hold none.
	if len(r.Created) != 0 || len(r.Plan.Bindings) != 1 || r.Plan.Bindings[0].NodeName != "n1" {
		t.Errorf("created %d machines, bindings %+v; want the replacement on n1, where the finished members left room", len(r.Created), r.Plan.Bindings)
	}
}
