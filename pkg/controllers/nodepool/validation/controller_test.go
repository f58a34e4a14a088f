package validation

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func TestReconcile(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	pool.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "nvidia.com/gpu", Effect: "Bogus"}}
	c := fakeclient.NewClientBuilder().WithScheme(scheme).WithObjects(pool).WithStatusSubresource(pool).Build()
	rec := events.NewFakeRecorder(10)
	ctrl := NewController(Deps{Client: c, Clock: clocktesting.NewFakeClock(time.Unix(0, 0)), Recorder: rec})
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "gpu"}}
	condition := func() *metav1.Condition {
		t.Helper()
		got := &v1.NodePool{}
		if err := c.Get(ctx, client.ObjectKey{Name: "gpu"}, got); err != nil {
			t.Fatal(err)
		}
		return meta.FindStatusCondition(got.Status.Conditions, ConditionValidationSucceeded)
	}

	if _, err := ctrl.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	cond := condition()
	if cond == nil || cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, "spec.template.spec.taints[0].effect") {
		t.Errorf("condition = %+v, want False naming the taint's effect", cond)
	}
	if got := testutil.ToFloat64(invalidPools.WithLabelValues("gpu")); got != 1 {
		t.Errorf("stowage_nodepool_invalid{nodepool=gpu} = %v, want 1", got)
	}
	select {
	case ev := <-rec.Events:
		if !strings.Contains(ev, "Warning Invalid") || !strings.Contains(ev, "taints[0].effect") {
			t.Errorf("event %q, want a Warning naming the field", ev)
		}
	default:
		t.Error("no event for an invalid pool")
	}
	// Reconciling again changes nothing and says nothing again.
	if _, err := ctrl.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if len(rec.Events) != 0 {
		t.Errorf("a second pass emitted %q", <-rec.Events)
	}

	// Fixed: the condition turns True and the gauge 0.
	fixed := &v1.NodePool{}
	if err := c.Get(ctx, client.ObjectKey{Name: "gpu"}, fixed); err != nil {
		t.Fatal(err)
	}
	fixed.Spec.Template.Spec.Taints[0].Effect = corev1.TaintEffectNoSchedule
	if err := c.Update(ctx, fixed); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if cond := condition(); cond == nil || cond.Status != metav1.ConditionTrue {
		t.Errorf("condition after the fix = %+v, want True", cond)
	}
	if got := testutil.ToFloat64(invalidPools.WithLabelValues("gpu")); got != 0 {
		t.Errorf("stowage_nodepool_invalid{nodepool=gpu} after the fix = %v, want 0", got)
	}

	// Deleted: its series goes.
	if err := c.Delete(ctx, fixed); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(invalidPools); n != 0 {
		t.Errorf("%d stowage_nodepool_invalid series after the pool is gone, want 0", n)
	}
}
