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
			"(interrupted, expired, drifted, empty, disrupted, not_launched, not_registered, deleted).",
	}, []string{"nodepool", "reason"})
	terminationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stowage_nodeclaims_termination_duration_seconds",
		Help:    "Time from a NodeClaim's deletion to its machine being deleted (mostly the drain), by nodepool.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600, 7200},
	}, []string{"nodepool"})
	evictionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_termination_evictions_total",
		Help: "Pod eviction attempts while draining, by outcome (evicted, blocked, deleted, error).",
	}, []string{"outcome"})
)

// registerMetrics is idempotent so a second manager in one process can register again.
func registerMetrics() error {
	return metrics.Register(crmetrics.Registry, terminatedTotal, terminationDuration, evictionsTotal)
}

// terminationReason is a bounded label for why a claim went away, read from
// the conditions the disruption and interruption controllers set, else from
// how far the claim got.
func terminationReason(claim *v1.NodeClaim) string {
	for _, c := range []struct{ condition, reason string }{
		{v1.ConditionInterrupted, "interrupted"},
		{v1.ConditionExpired, "expired"},
		{v1.ConditionDrifted, "drifted"},
		{v1.ConditionEmpty, "empty"},
		{v1.ConditionDisrupting, "disrupted"},
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
