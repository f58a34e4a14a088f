package validation

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

var invalidPools = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Namespace: "stowage",
	Name:      "nodepool_invalid",
	Help:      "1 for a NodePool Stowage skips because it does not validate (see its ValidationSucceeded condition), 0 otherwise.",
}, []string{"nodepool"})

var registerOnce sync.Once

// registerMetrics adds the metrics to controller-runtime's registry once per process.
func registerMetrics() error {
	var err error
	registerOnce.Do(func() {
		if e := metrics.Registry.Register(invalidPools); e != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(e, &are) {
				err = e
			}
		}
	})
	return err
}
