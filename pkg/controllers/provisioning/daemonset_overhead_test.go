package provisioning

import (
	"context"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
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

// A DaemonSet whose RuntimeClass confines it to some nodes (kata only where
// runtime=kata) runs on those alone: on others admission gives its pod a node
// selector the node does not match, and the pod never schedules. Counted
// everywhere, it made every other new machine look fuller than it is.
func TestDaemonSetRuntimeClassNodeSelector(t *testing.T) {
	f := newFixture(t, onePerPod)
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "kata"}, Handler: "kata",
		Overhead: &nodev1.Overhead{PodFixed: res("cpu", "250m")},
		Scheduling: &nodev1.Scheduling{
			NodeSelector: map[string]string{"runtime": "kata"},
			Tolerations:  []corev1.Toleration{{Key: "kata", Operator: corev1.TolerationOpExists}},
		}}
	daemon := func(name string, selector map[string]string) *appsv1.DaemonSet {
		return &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name},
			Spec: appsv1.DaemonSetSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RuntimeClassName: ptr.To("kata"),
				NodeSelector:     selector,
				Tolerations:      []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists}},
				Containers:       []corev1.Container{{Name: "a", Resources: corev1.ResourceRequirements{Requests: res("cpu", "100m")}}},
			}}}}
	}
	for _, o := range []client.Object{rc,
		daemon("agent", map[string]string{"team": "ml"}),
		// Selects another runtime than its class: admission rejects its pods.
		daemon("conflicting", map[string]string{"runtime": "runc"}),
	} {
		if err := f.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	f.cluster.UpdatePod(withPod(pendingPod("infer"), tolerateGPU))
	f.schedule(t)
	daemons := f.solver.snapshots[0].DaemonSetPods
	gpu := []corev1.Taint{{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}}
	kataTaint := append(slices.Clone(gpu), corev1.Taint{Key: "kata", Effect: corev1.TaintEffectNoSchedule})
	for _, tc := range []struct {
		name     string
		labels   map[string]string
		taints   []corev1.Taint
		milliCPU int64
	}{
		{"without the class's label", map[string]string{"team": "ml"}, gpu, 0},
		{"with the class's label", map[string]string{"team": "ml", "runtime": "kata"}, gpu, 350},
		{"with the conflicting daemon's label", map[string]string{"team": "ml", "runtime": "runc"}, gpu, 0},
		// The DaemonSet controller places pods by the template's tolerations.
		{"tainted for the class alone", map[string]string{"team": "ml", "runtime": "kata"}, kataTaint, 0},
	} {
		overhead, _ := scheduling.DaemonSets(daemons, scheduling.FromLabels(tc.labels), tc.taints)
		if got := overhead.Get(corev1.ResourceCPU); got != tc.milliCPU {
			t.Errorf("node %s: daemonsets take %dm cpu, want %dm", tc.name, got, tc.milliCPU)
		}
	}
}
