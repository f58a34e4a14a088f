package garbagecollection

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stowage-k8s/stowage/pkg/metrics"
)

var (
	instancesDeletedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "stowage_garbagecollection_machines_deleted_total",
		Help: "Cloud machines deleted because no NodeClaim owned them.",
	})
	claimsDeletedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_garbagecollection_nodeclaims_deleted_total",
		Help: "NodeClaims deleted because their machine no longer exists, by nodepool.",
	}, []string{"nodepool"})
)

// registerMetrics is idempotent so a second manager in one process can register again.
func registerMetrics() error {
	return metrics.Register(crmetrics.Registry, instancesDeletedTotal, claimsDeletedTotal)
}
