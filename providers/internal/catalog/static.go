package catalog

import (
	"errors"
	"fmt"

	"github.com/go-logr/logr"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// Static is a provider's built-in catalog, for when its cloud's APIs cannot
// be reached: the configured one, else the region's, else Default. It is
// loaded on first use and kept; a failed load is tried again on the next.
// Callers serialise access (the providers hold their mutex).
type Static struct {
	// Configured is the provider's Options.StaticCatalog; when set it must exist.
	Configured string
	// Regional is the region's own catalog, "<cloud>/<region>".
	Regional string
	// Default stands in for a region without a catalog of its own.
	Default string
	// Defaulted, if set, is called when Default stands in, to log that its
	// prices are only a rough guide; each provider words that its own way.
	Defaulted func(logr.Logger)
	// Prepare, if set, adapts a freshly loaded catalog; defaulted says it is
	// Default's.
	Prepare func(c *pricing.Catalog, defaulted bool)

	catalog *pricing.Catalog
}

// Name is the catalog asked for first.
func (s *Static) Name() string {
	if s.Configured != "" {
		return s.Configured
	}
	return s.Regional
}

// Catalog is the loaded catalog, nil until a Load succeeds.
func (s *Static) Catalog() *pricing.Catalog { return s.catalog }

// Load returns the catalog, loading it if that has not succeeded yet.
func (s *Static) Load(logger logr.Logger) (*pricing.Catalog, error) {
	if s.catalog != nil {
		return s.catalog, nil
	}
	c, err := pricing.Load(s.Name())
	defaulted := errors.Is(err, pricing.ErrUnknownCatalog) && s.Configured == ""
	if defaulted {
		if s.Defaulted != nil {
			s.Defaulted(logger)
		}
		c, err = pricing.Load(s.Default)
	}
	if err != nil {
		return nil, fmt.Errorf("loading static prices: %w", err)
	}
	if s.Prepare != nil {
		s.Prepare(c, defaulted)
	}
	s.catalog = c
	return c, nil
}

// Lookup finds a type in the loaded catalog.
func (s *Static) Lookup(name string) (*cloudprovider.InstanceType, bool) {
	return pricing.Lookup(s.catalog, name)
}

// Price is the built-in price of an offering: in its zone if the catalog has
// it there, else in any zone of the type (a region without its own catalog).
func (s *Static) Price(id cloudprovider.OfferingID) (float64, bool) {
	if o, ok := pricing.LookupOffering(s.catalog, id); ok {
		return o.PricePerHour, true
	}
	if it, ok := s.Lookup(id.InstanceType); ok {
		for _, o := range it.Offerings {
			if o.CapacityType == id.CapacityType {
				return o.PricePerHour, true
			}
		}
	}
	return 0, false
}

// FallbackSources are the loaded catalog's sources, each marked as the
// fallback, for a live catalog's provenance; none before a load.
func (s *Static) FallbackSources() []pricing.Source {
	if s.catalog == nil {
		return nil
	}
	out := make([]pricing.Source, 0, len(s.catalog.Sources))
	for _, src := range s.catalog.Sources {
		src.What = "fallback " + src.What
		out = append(out, src)
	}
	return out
}
