package scheduling

import (
	"fmt"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
)

// Tolerates returns nil when tolerations tolerate every taint that blocks
// scheduling (NoSchedule, NoExecute), and an error naming the first taint that
// is not tolerated. PreferNoSchedule only steers the scheduler, so it never blocks.
func Tolerates(tolerations []corev1.Toleration, taints []corev1.Taint) error {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !tolerated(tolerations, t) {
			return fmt.Errorf("taint %s not tolerated", t.ToString())
		}
	}
	return nil
}

func tolerated(tolerations []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range tolerations {
		// Comparison operators (Gt/Lt) are honoured: a toleration that uses them
		// was accepted by the API server, so the scheduler will apply them too.
		if tolerations[i].ToleratesTaint(logr.Discard(), taint, true) {
			return true
		}
	}
	return false
}
