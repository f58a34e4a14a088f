package disruption

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/metrics"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var conditionsDesc = prometheus.NewDesc("stowage_nodeclaims_disruption_conditions",
	"NodeClaims whose Drifted, Expired or Consolidatable condition is True, by nodepool, condition type and reason.",
	[]string{"nodepool", "type", "reason"}, nil)

// conditionCollector counts claims by condition when scraped, from the
// cache, so the gauge is exact whoever set the condition.
type conditionCollector struct {
	mu     sync.Mutex
	reader client.Reader
}

var collector = &conditionCollector{}

func (c *conditionCollector) Describe(ch chan<- *prometheus.Desc) { ch <- conditionsDesc }

func (c *conditionCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	r := c.reader
	c.mu.Unlock()
	if r == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	list := &v1.NodeClaimList{}
	if err := r.List(ctx, list); err != nil {
		return
	}
	type key struct{ pool, typ, reason string }
	counts := map[key]int{}
	for i := range list.Items {
		claim := &list.Items[i]
		for _, t := range []string{v1.ConditionDrifted, v1.ConditionExpired, v1.ConditionConsolidatable} {
			if cond := conditions.Get(claim.Status.Conditions, t); cond != nil && conditions.IsTrue(claim.Status.Conditions, t) {
				counts[key{claim.Labels[v1.LabelNodePool], t, cond.Reason}]++
			}
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(conditionsDesc, prometheus.GaugeValue, float64(n), k.pool, k.typ, k.reason)
	}
}

// registerMetrics makes the collector read from r; registering twice (a
// second manager in one process) only swaps the reader.
func registerMetrics(r client.Reader) error {
	collector.mu.Lock()
	collector.reader = r
	collector.mu.Unlock()
	return metrics.Register(crmetrics.Registry, collector)
}
