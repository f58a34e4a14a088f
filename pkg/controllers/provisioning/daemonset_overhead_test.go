package provisioning

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// A DaemonSet whose pods run under a RuntimeClass with an overhead (Kata,
// gVisor) takes that overhead on every node, as its real pods get it at
// admission; the template does not carry it. Left out, a new machine is
// planned too small for the pods planned onto it, and once the daemon runs
// one of them is bought for again.
func TestDaemonSetRuntimeClassOverheadCounts(t *testing.T) {
	f := newFixture(t, onePerPod)
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "kata"}, Handler: "kata",
		Overhead: &nodev1.Overhead{PodFixed: res("cpu", "250m", "memory", "160Mi")}}
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "agent"},
		Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RuntimeClassName: ptr.To("kata"),
			Containers:       []corev1.Container{{Name: "a", Resources: corev1.ResourceRequirements{Requests: res("cpu", "100m")}}},
		}}}}
	for _, o := range []client.Object{rc, ds} {
		if err := f.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	f.cluster.UpdatePod(withPod(pendingPod("infer"), tolerateGPU))
	f.schedule(t)
	daemons := f.solver.snapshots[0].DaemonSetPods
	if len(daemons) != 1 {
		t.Fatalf("%d daemonset pods in the snapshot, want 1", len(daemons))
	}
	if got := daemons[0].Spec.Overhead.Cpu(); got.Cmp(res("cpu", "250m")["cpu"]) != 0 {
		t.Errorf("daemonset pod overhead cpu = %s, want its runtime class's 250m", got)
	}
}
