package scheduling

import (
	"fmt"
	"slices"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
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

// MergeTolerations is first and second without the tolerations another one
// covers, as the RuntimeClass admission plugin merges a class's tolerations
// into a pod's (k8s.io/kubernetes/pkg/util/tolerations.MergeTolerations).
// Neither argument is changed.
func MergeTolerations(first, second []corev1.Toleration) []corev1.Toleration {
	all := slices.Concat(first, second)
	var merged []corev1.Toleration
next:
	for i := range all {
		t := &all[i]
		for j := range merged {
			if coversToleration(&merged[j], t) {
				continue next
			}
		}
		for j := i + 1; j < len(all); j++ {
			// Of two equal tolerations the first is kept.
			if !apiequality.Semantic.DeepEqual(t, &all[j]) && coversToleration(&all[j], t) {
				continue next
			}
		}
		merged = append(merged, *t)
	}
	return merged
}

// coversToleration reports whether ss tolerates every taint t does.
func coversToleration(ss, t *corev1.Toleration) bool {
	if apiequality.Semantic.DeepEqual(t, ss) {
		return true
	}
	// An empty key with Exists matches every key.
	if t.Key != ss.Key && (ss.Key != "" || ss.Operator != corev1.TolerationOpExists) {
		return false
	}
	// An empty effect matches every effect.
	if t.Effect != ss.Effect && ss.Effect != "" {
		return false
	}
	if ss.Effect == corev1.TaintEffectNoExecute && ss.TolerationSeconds != nil &&
		(t.TolerationSeconds == nil || *t.TolerationSeconds > *ss.TolerationSeconds) {
		return false
	}
	switch ss.Operator {
	case corev1.TolerationOpEqual, "":
		return t.Operator == corev1.TolerationOpEqual && t.Value == ss.Value
	case corev1.TolerationOpExists:
		return true
	default:
		// Gt and Lt are not compared, as upstream does not: both are kept.
		return false
	}
}
