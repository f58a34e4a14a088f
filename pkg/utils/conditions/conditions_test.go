package conditions

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestSetKeepsTransitionTimeWhileStatusHolds(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clk := clocktesting.NewFakeClock(start)
	var conds []metav1.Condition

	if !Set(&conds, clk, 1, "Launched", metav1.ConditionFalse, "Pending", "waiting") {
		t.Fatal("adding a condition must report a change")
	}
	clk.Step(time.Minute)
	Set(&conds, clk, 1, "Launched", metav1.ConditionFalse, "Pending", "still waiting")
	if got := Get(conds, "Launched").LastTransitionTime.Time; !got.Equal(start) {
		t.Fatalf("transition time moved without a status change: %v", got)
	}
	if IsTrue(conds, "Launched") {
		t.Fatal("condition is False")
	}
	clk.Step(time.Minute)
	Set(&conds, clk, 1, "Launched", metav1.ConditionTrue, "Launched", "")
	if got := Get(conds, "Launched").LastTransitionTime.Time; !got.Equal(start.Add(2 * time.Minute)) {
		t.Fatalf("transition time = %v, want the time of the status change", got)
	}
	if !IsTrue(conds, "Launched") {
		t.Fatal("condition is True")
	}
	if Get(conds, "Registered") != nil {
		t.Fatal("absent condition must be nil")
	}
}
