package termination

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/metrics"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var (
	terminatedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_nodeclaims_terminated_total",
		Help: "NodeClaims whose machine was deleted and finalizer released, by nodepool and reason " +
			"(interrupted; a disruption's empty, consolidated, drifted, expired or repaired; not_launched, not_registered, deleted).",
	}, []string{"nodepool", "reason"})
	terminationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stowage_nodeclaims_termination_duration_seconds",
		Help:    "Time from a NodeClaim's deletion to its machine being deleted (mostly the drain), by nodepool.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200},
	}, []string{"nodepool"})
	evictionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_termination_evictions_total",
		Help: "Pod eviction attempts while draining, by outcome (evicted, blocked by a PodDisruptionBudget, throttled by the API server, deleted, error).",
	}, []string{"outcome"})
)

// registerMetrics is idempotent so a second manager in one process can register again.
func registerMetrics() error {
	return metrics.Register(crmetrics.Registry, terminatedTotal, terminationDuration, evictionsTotal)
}

// terminationReason is a bounded label for why a claim went away: an
// interruption, else the reason of the disruption command that removed it,
// else an expiry or drift the claim was marked with, else how far it got.
func terminationReason(claim *v1.NodeClaim) string {
	if conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted) {
		return "interrupted"
	}
	if r, ok := disruptionLabels[v1.DisruptionReason(claim.Annotations[v1.AnnotationDisruptionReason])]; ok {
		return r
	}
	for _, c := range []struct{ condition, reason string }{
		{v1.ConditionExpired, "expired"},
		{v1.ConditionDrifted, "drifted"},
	} {
		if conditions.IsTrue(claim.Status.Conditions, c.condition) {
			return c.reason
		}
	}
	switch {
	case !conditions.IsTrue(claim.Status.Conditions, v1.ConditionLaunched):
		return "not_launched"
	case !conditions.IsTrue(claim.Status.Conditions, v1.ConditionRegistered):
		return "not_registered"
	default:
		return "deleted"
	}
}

// disruptionLabels name the disruption reasons as terminated_total does.
var disruptionLabels = map[v1.DisruptionReason]string{
	v1.DisruptionReasonEmpty:         "empty",
	v1.DisruptionReasonUnderutilized: "consolidated",
	v1.DisruptionReasonDrifted:       "drifted",
	v1.DisruptionReasonExpired:       "expired",
	v1.DisruptionReasonUnhealthy:     "repaired",
}
