package cost

import (
	"fmt"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pricing"
)

// CatalogPricer answers on-demand prices from the built-in price books. Prices
// differ between regions of a cloud by a few percent at most, so a type is
// priced from whichever built-in region sells it, in the zone when listed.
type CatalogPricer struct {
	catalogs []*pricing.Catalog
}

var _ OnDemandPricer = (*CatalogPricer)(nil)

// NewCatalogPricer loads the named built-in catalogs (all when none are named).
func NewCatalogPricer(names ...string) (*CatalogPricer, error) {
	if len(names) == 0 {
		names = pricing.Names()
	}
	p := &CatalogPricer{}
	for _, name := range names {
		c, err := pricing.Load(name)
		if err != nil {
			return nil, fmt.Errorf("loading price book %s: %w", name, err)
		}
		p.catalogs = append(p.catalogs, c)
	}
	return p, nil
}

// OnDemandPrice returns the on-demand price of instanceType, in zone if sold there.
func (p *CatalogPricer) OnDemandPrice(instanceType, zone string) (float64, bool) {
	for _, c := range p.catalogs {
		it, ok := pricing.Lookup(c, instanceType)
		if !ok {
			continue
		}
		price, found := 0.0, false
		for _, o := range it.Offerings {
			if o.CapacityType != v1.CapacityTypeOnDemand {
				continue
			}
			if o.Zone == zone {
				return o.PricePerHour, true
			}
			if !found {
				price, found = o.PricePerHour, true
			}
		}
		if found {
			return price, true
		}
	}
	return 0, false
}
