package provisioning

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A toleration with a comparison operator (Gt/Lt) that the API server
// accepted tolerates a pool's numeric taint for the solver and the
// kube-scheduler alike; the pre-check must not call the pool incompatible.
func TestPoolIncompatibilityHonoursComparisonTolerations(t *testing.T) {
	pool := gpuPool()
	pool.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "stowage.dev/tier", Value: "10", Effect: corev1.TaintEffectNoSchedule}}
	pod := withPod(pendingPod("p"), func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "stowage.dev/tier", Operator: corev1.TolerationOpGt, Value: "5", Effect: corev1.TaintEffectNoSchedule}}
	})
	if why := poolIncompatibility(pod, pool); why != "" {
		t.Errorf("poolIncompatibility = %q, want \"\": the toleration tolerates tier=10", why)
	}
}
