package gcp

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are created per Provider and registered with the Registerer the
// caller passes, so tests and second managers never collide on globals.
type metrics struct {
	priceSource *prometheus.GaugeVec

	mu   sync.Mutex
	last map[PriceSource]int
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{priceSource: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "stowage",
		Subsystem: "gcp",
		Name:      "price_source",
		Help:      "Number of offering prices in use, by where they came from: api (Cloud Billing Catalog) or static (built-in catalog).",
	}, []string{"source"})}
	if reg == nil {
		return m, nil
	}
	if err := reg.Register(m.priceSource); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("registering gcp metrics: %w", err)
		}
		m.priceSource = are.ExistingCollector.(*prometheus.GaugeVec)
	}
	return m, nil
}

// setPriceSources updates the gauge and reports whether the counts changed,
// so the caller logs only when the mix of sources moves.
func (m *metrics) setPriceSources(counts map[PriceSource]int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	changed := m.last == nil
	for _, s := range []PriceSource{PriceSourceAPI, PriceSourceStatic} {
		m.priceSource.WithLabelValues(string(s)).Set(float64(counts[s]))
		if m.last != nil && m.last[s] != counts[s] {
			changed = true
		}
	}
	m.last = map[PriceSource]int{PriceSourceAPI: counts[PriceSourceAPI], PriceSourceStatic: counts[PriceSourceStatic]}
	return changed
}
