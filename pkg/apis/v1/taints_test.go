package v1

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestRegistrationTaints(t *testing.T) {
	gpu := corev1.Taint{Key: "nvidia.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	cni := corev1.Taint{Key: "example.com/cni", Effect: corev1.TaintEffectNoExecute}
	got := RegistrationTaints([]corev1.Taint{gpu}, []corev1.Taint{cni, gpu, {Key: UnregisteredTaintKey, Effect: corev1.TaintEffectNoSchedule}})
	want := []corev1.Taint{UnregisteredTaint, gpu, cni}
	if !slices.EqualFunc(got, want, func(a, b corev1.Taint) bool { return a.MatchTaint(&b) && a.Value == b.Value }) {
		t.Errorf("RegistrationTaints = %v, want %v: the unregistered taint first, then each key and effect once", got, want)
	}
}
