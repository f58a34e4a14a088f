package lifecycle

import (
	"github.com/prometheus/client_golang/prometheus"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stowage-k8s/stowage/pkg/metrics"
)

// Label values are bounded: pools and instance types are finite, and reasons
// and capacity types are fixed sets.
var (
	launchedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_nodeclaims_launched_total",
		Help: "NodeClaims whose machine was launched, by nodepool and capacity type.",
	}, []string{"nodepool", "capacity_type"})
	registeredTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_nodeclaims_registered_total",
		Help: "NodeClaims whose Node registered, by nodepool.",
	}, []string{"nodepool"})
	initializedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_nodeclaims_initialized_total",
		Help: "NodeClaims whose Node became initialized, by nodepool.",
	}, []string{"nodepool"})
	abandonedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_nodeclaims_abandoned_total",
		Help: "NodeClaims the lifecycle deleted so their pods are planned again, by nodepool and reason " +
			"(insufficient_capacity, registration_timeout, initialization_timeout, launch_failed).",
	}, []string{"nodepool", "reason"})
	launchDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stowage_nodeclaims_launch_duration_seconds",
		Help:    "Time the cloud provider's Create call took for a successful launch, by nodepool.",
		Buckets: []float64{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120},
	}, []string{"nodepool"})
	registrationDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "stowage_nodeclaims_registration_duration_seconds",
		Help:    "Time from launch until the Node registered, by nodepool. GPU images are slow to boot.",
		Buckets: []float64{5, 15, 30, 60, 90, 120, 180, 300, 450, 600, 900, 1800},
	}, []string{"nodepool"})
	insufficientCapacityTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "stowage_cloudprovider_insufficient_capacity_total",
		Help: "Offerings that reported insufficient capacity at launch, by instance type, zone and capacity type.",
	}, []string{"instance_type", "zone", "capacity_type"})
)

// Abandon reasons.
const (
	abandonInsufficientCapacity = "insufficient_capacity"
	abandonRegistrationTimeout  = "registration_timeout"
	abandonInitTimeout          = "initialization_timeout"
	abandonLaunchFailed         = "launch_failed"
)

// registerMetrics adds the collectors to controller-runtime's registry. It is
// idempotent, so a process that builds a second manager (tests, restarts) can
// register the controller again.
func registerMetrics() error {
	return metrics.Register(crmetrics.Registry, launchedTotal, registeredTotal, initializedTotal, abandonedTotal,
		launchDuration, registrationDuration, insufficientCapacityTotal)
}
