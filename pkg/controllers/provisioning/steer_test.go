package provisioning

import (
	"context"
	"testing"

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
