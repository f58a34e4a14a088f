package simulate

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/stowage-k8s/stowage/pkg/solver"
)

// manyTolerations is a snapshot of pods with n tolerations each: the naive
// baseline's and the solver's shape keys must be linear in n (issue 10: 10
// pods with 10,000 tolerations each took 16 s through PodSpec.String).
func manyTolerations(pods, n int) *solver.Snapshot {
	snap := &solver.Snapshot{}
	for i := range pods {
		p := pod(fmt.Sprintf("p-%d", i), rl("cpu", "1", "memory", "1Gi"))
		for j := range n {
			p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: fmt.Sprintf("k-%d", j), Operator: corev1.TolerationOpExists})
		}
		snap.Pods = append(snap.Pods, p)
	}
	snap.NodePools = []*solver.NodePool{{NodePool: pool("default"), InstanceTypes: testCatalog().InstanceTypes}}
	return snap
}

// BenchmarkNaiveCostTolerations: ns/op should grow tenfold from 1k to 10k
// tolerations (linear), not a hundredfold.
func BenchmarkNaiveCostTolerations(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("10pods-%dtolerations", n), func(b *testing.B) {
			snap := manyTolerations(10, n)
			types := testCatalog().InstanceTypes
			for b.Loop() {
				NaiveCost(snap, types)
			}
		})
	}
}

func TestNaiveShapeKeyTolerations(t *testing.T) {
	a := pod("a", rl("cpu", "1"), func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpExists}}
	})
	b := pod("b", rl("cpu", "1"), func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpEqual, Value: "y"}}
	})
	c := pod("c", rl("cpu", "1"), func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "x", Operator: corev1.TolerationOpExists}}
	})
	if shapeKey(a) == shapeKey(b) {
		t.Errorf("pods with different tolerations share a naive shape key")
	}
	if shapeKey(a) != shapeKey(c) {
		t.Errorf("pods with equal tolerations have different naive shape keys")
	}
}
