package counter

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func claim(name, pool string, capacity corev1.ResourceList) *v1.NodeClaim {
	c := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodePool: pool}}}
	c.Status.Capacity = capacity
	return c
}

func TestReconcileCountsThePoolsClaims(t *testing.T) {
	ctx := context.Background()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	pool.Status.Conditions = []metav1.Condition{{Type: "ValidationSucceeded", Status: metav1.ConditionTrue, Reason: "Valid", LastTransitionTime: metav1.Now()}}
	gpuNode := claim("gpu-a", "gpu", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), "nvidia.com/gpu": resource.MustParse("1")})
	cpuNode := claim("gpu-b", "gpu", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")})
	launching := claim("gpu-c", "gpu", nil)
	other := claim("web-a", "web", corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64")})
	c := fakeclient.NewClientBuilder().WithScheme(scheme).WithObjects(pool, gpuNode, cpuNode, launching, other).WithStatusSubresource(pool).Build()
	clk := clocktesting.NewFakeClock(time.Unix(1000, 0))
	ctrl := NewController(Deps{Client: c, Clock: clk})
	req := reconcile.Request{NamespacedName: types.NamespacedName{Name: "gpu"}}
	status := func() v1.NodePoolStatus {
		t.Helper()
		got := &v1.NodePool{}
		if err := c.Get(ctx, client.ObjectKey{Name: "gpu"}, got); err != nil {
			t.Fatal(err)
		}
		return got.Status
	}
	want := func(s v1.NodePoolStatus, name corev1.ResourceName, q string) {
		t.Helper()
		got, ok := s.Resources[name]
		if q == "" {
			if ok {
				t.Errorf("status.resources[%s] = %s, want it gone", name, got.String())
			}
			return
		}
		if !ok || got.Cmp(resource.MustParse(q)) != 0 {
			t.Errorf("status.resources[%s] = %s, want %s (all: %v)", name, got.String(), q, s.Resources)
		}
	}

	if _, err := ctrl.Reconcile(ctx, req); err != nil {
		t.Fatal(err)
	}
	s := status()
	want(s, ResourceNodes, "3")
	want(s, corev1.ResourceCPU, "6")
	want(s, "nvidia.com/gpu", "1")
	if len(s.Conditions) != 1 {
		t.Errorf("conditions = %v, want the validation condition kept", s.Conditions)
	}

	// The GPU machine goes: a write within MinWriteInterval waits.
	if err := c.Delete(ctx, gpuNode); err != nil {
		t.Fatal(err)
	}
	res, err := ctrl.Reconcile(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > MinWriteInterval {
		t.Errorf("RequeueAfter = %v, want a wait of at most %v", res.RequeueAfter, MinWriteInterval)
	}
	want(status(), ResourceNodes, "3")

	clk.Step(MinWriteInterval)
	if res, err := ctrl.Reconcile(ctx, req); err != nil || res.RequeueAfter != 0 {
		t.Fatalf("Reconcile = %+v, %v", res, err)
	}
	s = status()
	want(s, ResourceNodes, "2")
	want(s, corev1.ResourceCPU, "2")
	want(s, "nvidia.com/gpu", "")
}
