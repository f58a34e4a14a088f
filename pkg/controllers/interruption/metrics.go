package interruption

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

const metricsNamespace = "stowage"

var (
	eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "interruption_events_total",
		Help:      "Interruption events received from the cloud, by kind.",
	}, []string{"kind"})
	actionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "interruption_actions_total",
		Help:      "Actions taken on interrupted nodes (cordon, replace, drain, ignored), by kind.",
	}, []string{"kind", "action"})
)

var registerOnce sync.Once

// registerMetrics adds the metrics to controller-runtime's registry once per
// process, at Register time rather than import time.
func registerMetrics() error {
	var err error
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{eventsTotal, actionsTotal} {
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
