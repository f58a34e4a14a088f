package simulate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/stowage-k8s/stowage/pkg/solver"
)

// The naive baseline must reserve for a pod what the scheduler (and the
// solver) reserve: limits standing in for missing requests, sidecars
// running beside the containers, and pod-level resources.
func TestNaiveCostCountsWhatTheSchedulerCounts(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		want float64
	}{{
		name: "GPU asked for by limit alone",
		pod: pod("a", nil, func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = rl("cpu", "4", "nvidia.com/gpu", "1")
		}),
		want: 0.9, // l4x1, not the 0.1 small with no GPU
	}, {
		name: "sidecar adds to the containers",
		pod: pod("a", rl("cpu", "1500m"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "proxy", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
				Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1")}}}
		}),
		want: 0.8, // 2.5 cpu does not fit small (2 cpu)
	}, {
		name: "pod-level requests",
		pod: pod("a", rl("cpu", "100m"), func(p *corev1.Pod) {
			p.Spec.Resources = &corev1.ResourceRequirements{Requests: rl("cpu", "8", "memory", "16Gi")}
		}),
		want: 0.8,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := &solver.Snapshot{Pods: []*corev1.Pod{tt.pod}, NodePools: []*solver.NodePool{{NodePool: pool("p")}}}
			got, excluded := NaiveCost(snap, testCatalog().InstanceTypes)
			if len(excluded) != 0 || got < tt.want-1e-9 || got > tt.want+1e-9 {
				t.Errorf("naive = %v (excluded %d), want %v", got, len(excluded), tt.want)
			}
		})
	}
}

// Two pods that differ only in what the naive cache key leaves out must not
// share a price.
func TestNaiveCostCacheTellsSidecarsFromInitContainers(t *testing.T) {
	init := pod("init", rl("cpu", "1500m"), func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1")}}}
	})
	side := pod("side", rl("cpu", "1500m"), func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{{Name: "i", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
			Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1")}}}
	})
	snap := &solver.Snapshot{Pods: []*corev1.Pod{init, side}, NodePools: []*solver.NodePool{{NodePool: pool("p")}}}
	got, _ := NaiveCost(snap, testCatalog().InstanceTypes)
	if want := 0.1 + 0.8; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("naive = %v, want %v", got, want)
	}
}

// A DaemonSet whose agent asks by limit alone still takes room on each node.
func TestNaiveCostDaemonSetLimitsOnly(t *testing.T) {
	ds := pod("agent", nil, func(p *corev1.Pod) { p.Spec.Containers[0].Resources.Limits = rl("cpu", "1") })
	snap := &solver.Snapshot{Pods: []*corev1.Pod{pod("a", rl("cpu", "1500m"))}, DaemonSetPods: []*corev1.Pod{ds},
		NodePools: []*solver.NodePool{{NodePool: pool("p")}}}
	got, _ := NaiveCost(snap, testCatalog().InstanceTypes)
	if want := 0.8; got < want-1e-9 || got > want+1e-9 {
		t.Errorf("naive = %v, want %v", got, want)
	}
}
