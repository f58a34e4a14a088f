package provisioning

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

const metricsNamespace = "stowage"

var (
	podsPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "pods_pending",
		Help:      "Pods the kube-scheduler marked unschedulable and that are not bound yet, including those planned onto launching nodes.",
	})
	decisionDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Name:      "scheduling_decision_duration_seconds",
		Help:      "Time from a pod first seen unschedulable to its NodeClaim being created, excluding the batch window.",
		Buckets:   prometheus.ExponentialBuckets(0.01, 2, 14),
	})
	solverDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Name:      "solver_duration_seconds",
		Help:      "Time the solver took for one provisioning batch.",
		Buckets:   prometheus.ExponentialBuckets(0.001, 2, 14),
	})
	nodeClaimsCreated = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "nodeclaims_created_total",
		Help:      "NodeClaims the provisioner created, by NodePool.",
	}, []string{"nodepool"})
	nominationsLapsed = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "nominations_lapsed_total",
		Help:      "Pods planned again because the plan made for them no longer held (other pods took the room, or they were not bound in time); each may buy another machine.",
	})
)

var registerOnce sync.Once

// registerMetrics adds the metrics to controller-runtime's registry once per
// process, at Register time rather than import time.
func registerMetrics() error {
	var err error
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{podsPending, decisionDuration, solverDuration, nodeClaimsCreated, nominationsLapsed} {
			if e := metrics.Registry.Register(c); e != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(e, &are) {
					err = errors.Join(err, e)
				}
			}
		}
	})
	return err
}
