package provisioning

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func planned(name string, ready bool, taints ...corev1.Taint) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodeClaim: "claim-a"}},
		Spec:       corev1.NodeSpec{ProviderID: "fake://" + name, Taints: taints},
		Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}},
	}
}

// Pods nominated to a claim get status.nominatedNodeName once the claim's
// node is Ready and registered, not before: the kube-scheduler clears it on
// every failed attempt, and tries that node first once it is set.
func TestSteerSetsNominatedNodeNameOnceTheNodeIsReady(t *testing.T) {
	f := newFixture(t, onePerPod)
	ctx := context.Background()
	pod := withPod(pendingPod("gpu-0"), tolerateGPU)
	if err := f.client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.cluster.UpdatePod(pod)
	f.cluster.UpdateNodeClaim(&v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "claim-a", Labels: map[string]string{v1.LabelNodePool: "gpu"}}})
	f.cluster.Nominate(pod, "claim-a")

	nnn := func() string {
		got := &corev1.Pod{}
		if err := f.client.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
			t.Fatal(err)
		}
		return got.Status.NominatedNodeName
	}
	steps := []struct {
		name string
		node *corev1.Node
		want string
	}{
		{"registered but not Ready", planned("n-a", false), ""},
		{"Ready but not yet registered by Stowage", planned("n-a", true, v1.UnregisteredTaint), ""},
		// The not-ready taint the node lifecycle controller lifts a moment
		// later does not matter: the pod must be nominated before it goes.
		{"Ready and registered", planned("n-a", true, corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}), "n-a"},
	}
	for _, s := range steps {
		f.cluster.UpdateNode(s.node)
		if err := f.ctrl.steer.steer(ctx, s.node.Name); err != nil {
			t.Fatalf("%s: steer: %v", s.name, err)
		}
		if got := nnn(); got != s.want {
			t.Errorf("%s: nominatedNodeName = %q, want %q", s.name, got, s.want)
		}
	}

	// The scheduler cleared it after a failed attempt: the pod's next
	// reconcile asks for it to be set again, and no new decision is made.
	cleared := pod.DeepCopy()
	f.cluster.UpdatePod(cleared)
	if _, err := f.ctrl.Reconcile(ctx, cleared); err != nil {
		t.Fatal(err)
	}
	if f.ctrl.steer.queue.Len() != 1 {
		t.Errorf("steer queue holds %d nodes after the pod lost its nominatedNodeName, want 1", f.ctrl.steer.queue.Len())
	}
}

// The kube-scheduler may preempt pods on another node for a pod Stowage
// planned (its planned node is Ready but cannot take it yet, e.g. its GPUs
// are not advertised): it sets nominatedNodeName there and binds the pod
// once the victims are gone. Stowage must not point the pod back at its
// planned node: that drops the room the scheduler holds for it, and the
// scheduler, no longer seeing its own nomination, preempts again.
func TestSteerLeavesTheSchedulersPreemptionAlone(t *testing.T) {
	f := newFixture(t, onePerPod)
	ctx := context.Background()
	pod := withPod(pendingPod("gpu-0"), tolerateGPU)
	if err := f.client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	f.cluster.UpdatePod(pod)
	f.cluster.UpdateNodeClaim(&v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "claim-a", Labels: map[string]string{v1.LabelNodePool: "gpu"}}})
	f.cluster.Nominate(pod, "claim-a")
	f.cluster.UpdateNode(planned("n-a", true))
	f.cluster.UpdateNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n-b"}})

	// The scheduler preempts on n-b for the pod.
	preempting := pod.DeepCopy()
	preempting.Status.NominatedNodeName = "n-b"
	if err := f.client.Status().Update(ctx, preempting); err != nil {
		t.Fatal(err)
	}
	f.cluster.UpdatePod(preempting)
	if _, err := f.ctrl.Reconcile(ctx, preempting); err != nil {
		t.Fatal(err)
	}
	if n := f.ctrl.steer.queue.Len(); n != 0 {
		t.Errorf("steer queue holds %d nodes after the scheduler nominated the pod elsewhere, want 0", n)
	}
	if err := f.ctrl.steer.steer(ctx, "n-a"); err != nil {
		t.Fatal(err)
	}
	got := &corev1.Pod{}
	if err := f.client.Get(ctx, client.ObjectKeyFromObject(pod), got); err != nil {
		t.Fatal(err)
	}
	if got.Status.NominatedNodeName != "n-b" {
		t.Errorf("nominatedNodeName = %q, want the scheduler's n-b", got.Status.NominatedNodeName)
	}
	// Nor is n-a held for it: it stays free for other pods.
	if pods := f.cluster.NominatedPods("n-a"); len(pods) != 0 {
		t.Errorf("%d pods still nominated to n-a, want none", len(pods))
	}
	// And nothing is bought for it, nor is it counted as planned again.
	lapsed := testutil.ToFloat64(nominationsLapsed)
	if r := f.schedule(t); len(r.Created) != 0 {
		t.Errorf("created %d nodeclaims for a pod the scheduler is preempting for, want none", len(r.Created))
	}
	if d := testutil.ToFloat64(nominationsLapsed) - lapsed; d != 0 {
		t.Errorf("nominations_lapsed_total rose by %v for a pod that is not planned again, want 0", d)
	}
}
