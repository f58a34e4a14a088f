// Package conditions sets and reads metav1.Conditions with an injected clock,
// so transition times in tests are deterministic.
package conditions

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
)

// Set records a condition. The transition time comes from clk and is kept
// unchanged when the status does not change, so "how long has this been
// False" stays answerable. It reports whether anything changed.
func Set(conds *[]metav1.Condition, clk clock.PassiveClock, generation int64, condType string,
	status metav1.ConditionStatus, reason, message string) bool {
	return meta.SetStatusCondition(conds, metav1.Condition{
		Type:               condType,
		Status:             status,
		Reason:             reason,
		Message:            message,
		ObservedGeneration: generation,
		LastTransitionTime: metav1.NewTime(clk.Now()),
	})
}

// Get returns the condition of the given type, or nil.
func Get(conds []metav1.Condition, condType string) *metav1.Condition {
	return meta.FindStatusCondition(conds, condType)
}

// IsTrue reports whether the condition is present and True.
func IsTrue(conds []metav1.Condition, condType string) bool {
	return meta.IsStatusConditionTrue(conds, condType)
}
