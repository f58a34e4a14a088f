package steer

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func pod(name, uid, nominated, bound string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: k8stypes.UID(uid)},
		Spec:       corev1.PodSpec{NodeName: bound},
		Status:     corev1.PodStatus{NominatedNodeName: nominated},
	}
}

// The scheduler cleared nominatedNodeName after a failed attempt, but the
// cached copy still shows it: the pod must be steered again, not skipped.
func TestPodsSetsTheNominationAStaleCopyStillShows(t *testing.T) {
	ctx := context.Background()
	stored := []client.Object{
		pod("cleared", "u1", "", ""),
		pod("pending", "u2", "", ""),
		pod("bound", "u3", "", "other-node"),
	}
	c := fake.NewClientBuilder().WithObjects(stored...).WithStatusSubresource(&corev1.Pod{}).Build()
	cached := []*corev1.Pod{
		pod("cleared", "u1", "n1", ""),
		pod("pending", "u2", "", ""),
		// Bound in the copy: skipped. Gone: skipped without an error. (The
		// API server's refusals, of a nomination on a pod bound meanwhile and
		// of a UID that changed, are beyond this fake client.)
		pod("bound", "u3", "", "other-node"),
		pod("gone", "u4", "", ""),
	}
	n, err := Pods(ctx, c, cached, "n1")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"cleared": "n1", "pending": "n1", "bound": ""}
	for name, nnn := range want {
		got := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, got); err != nil {
			t.Fatal(err)
		}
		if got.Status.NominatedNodeName != nnn {
			t.Errorf("pod %s: nominatedNodeName = %q, want %q", name, got.Status.NominatedNodeName, nnn)
		}
	}
	if n != 2 {
		t.Errorf("Pods reported %d patched, want 2", n)
	}
}
