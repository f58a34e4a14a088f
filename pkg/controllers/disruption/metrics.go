package disruption

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

const metricsNamespace = "stowage"

var (
	decisionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "disruption_decisions_total",
		Help:      "Disruption commands started, by reason and action (delete or replace).",
	}, []string{"reason", "action"})
	savingsTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "disruption_savings_per_hour_total",
		Help:      "Sum of the hourly savings, in dollars, of completed disruption commands that saved money.",
	})
	budgetAllowed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "disruption_budget_allowed_nodes",
		Help:      "Nodes of a NodePool that may still be disrupted for a reason, as of the last pass.",
	}, []string{"nodepool", "reason"})
	eligibleNodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "disruption_eligible_nodes",
		Help:      "Nodes a disruption method wanted in the last pass, before budgets.",
	}, []string{"method"})
	abandonedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "disruption_abandoned_total",
		Help:      "Disruption commands given up, by reason, e.g. because a replacement failed to launch.",
	}, []string{"reason"})
	invalidatedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "disruption_invalidated_total",
		Help:      "Disruption decisions dropped at validation, by reason: the node got pods, pods were nominated to it, the budget ran out, or planning it again gave another answer.",
	}, []string{"reason"})
	inflightCommands = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "disruption_commands_in_flight",
		Help:      "Disruption commands waiting for their replacements to become Ready, as of the last pass.",
	})
)

var registerOnce sync.Once

// registerMetrics adds the metrics to controller-runtime's registry once per
// process, at Register time rather than import time.
func registerMetrics() error {
	var err error
	registerOnce.Do(func() {
		for _, c := range []prometheus.Collector{decisionsTotal, savingsTotal, budgetAllowed, eligibleNodes, abandonedTotal, invalidatedTotal, inflightCommands} {
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
