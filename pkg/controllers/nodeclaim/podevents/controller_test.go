package podevents

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

func TestReconcileStampsTheNodesClaim(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "gpu-a"}, Status: v1.NodeClaimStatus{ProviderID: "fake://n-a", NodeName: "n-a"}}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n-a"}, Spec: corev1.NodeSpec{ProviderID: "fake://n-a"}}
	c := cloudtest.NewClientBuilder().WithObjects(claim, node).Build()
	ctrl := NewController(Deps{Client: c, Clock: clk})
	ctx := context.Background()
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "n-a"}}
	last := func() time.Time {
		got := &v1.NodeClaim{}
		if err := c.Get(ctx, client.ObjectKey{Name: "gpu-a"}, got); err != nil {
			t.Fatal(err)
		}
		return got.Status.LastPodEventTime.Time
	}

	if _, err := ctrl.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if !last().Equal(start) {
		t.Fatalf("lastPodEventTime = %s, want %s", last(), start)
	}
	// A burst: within the dedupe step nothing is written, and the claim is
	// looked at again once the step has passed.
	clk.Step(2 * time.Second)
	res, err := ctrl.Reconcile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !last().Equal(start) || res.RequeueAfter != DefaultDedupe-2*time.Second {
		t.Errorf("within the dedupe step: lastPodEventTime %s, requeue %s; want %s, %s", last(), res.RequeueAfter, start, DefaultDedupe-2*time.Second)
	}
	clk.Step(DefaultDedupe)
	if _, err := ctrl.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if !last().Equal(clk.Now()) {
		t.Errorf("after the step: lastPodEventTime %s, want %s", last(), clk.Now())
	}
	// A node Stowage does not own is ignored.
	if _, err := ctrl.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Name: "other"}}); err != nil {
		t.Errorf("unknown node: %v", err)
	}
}

func TestDaemonSetAndMirrorPodsDoNotCount(t *testing.T) {
	yes := true
	ds := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "DaemonSet", Controller: &yes}}}}
	mirror := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{corev1.MirrorPodAnnotationKey: "x"}}}
	app := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Controller: &yes}}}}
	if counts(ds) || counts(mirror) || !counts(app) {
		t.Errorf("counts(ds, mirror, app) = %v, %v, %v; want false, false, true", counts(ds), counts(mirror), counts(app))
	}
}
