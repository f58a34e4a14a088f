package catalog

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// PriceSource says where an offering's price came from.
type PriceSource string

// Price sources, the values of the price-source gauge's label.
const (
	PriceSourceAPI    PriceSource = "api"    // the cloud's price API
	PriceSourceStatic PriceSource = "static" // the built-in catalog
)

// PriceSources is a provider's stowage_<cloud>_price_source{source} gauge:
// how many offering prices in use came from each source.
type PriceSources struct {
	*prometheus.GaugeVec

	mu   sync.Mutex
	last map[PriceSource]int
}

// NewPriceSources makes the gauge for cloud, whose API prices come from api
// (for the help text), and registers it with reg unless reg is nil. Gauges
// are made per provider rather than as globals, so tests and second
// managers never collide; one already registered is shared.
func NewPriceSources(reg prometheus.Registerer, cloud, api string) (*PriceSources, error) {
	g := &PriceSources{GaugeVec: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "stowage",
		Subsystem: cloud,
		Name:      "price_source",
		Help:      "Number of offering prices in use, by where they came from: api (" + api + ") or static (built-in catalog).",
	}, []string{"source"})}
	if reg == nil {
		return g, nil
	}
	if err := reg.Register(g.GaugeVec); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("registering %s metrics: %w", cloud, err)
		}
		g.GaugeVec = are.ExistingCollector.(*prometheus.GaugeVec)
	}
	return g, nil
}

// Update sets the gauge and reports whether the counts changed, so the
// caller logs only when the mix of sources moves.
func (g *PriceSources) Update(counts map[PriceSource]int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	changed := false
	for _, s := range []PriceSource{PriceSourceAPI, PriceSourceStatic} {
		g.WithLabelValues(string(s)).Set(float64(counts[s]))
		if g.last == nil || g.last[s] != counts[s] {
			changed = true
		}
	}
	g.last = map[PriceSource]int{PriceSourceAPI: counts[PriceSourceAPI], PriceSourceStatic: counts[PriceSourceStatic]}
	return changed
}

// Dominant is the source most prices came from; the API on a tie.
func Dominant(counts map[PriceSource]int) PriceSource {
	if counts[PriceSourceAPI] >= counts[PriceSourceStatic] {
		return PriceSourceAPI
	}
	return PriceSourceStatic
}

// CountOfferings is how many offerings the types carry.
func CountOfferings(its []*cloudprovider.InstanceType) int {
	n := 0
	for _, it := range its {
		n += len(it.Offerings)
	}
	return n
}
