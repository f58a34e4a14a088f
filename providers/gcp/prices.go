package gcp

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"cloud.google.com/go/billing/apiv1/billingpb"
	"google.golang.org/api/iterator"

	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// ComputeEngineService is the Cloud Billing Catalog's Compute Engine service.
const ComputeEngineService = "services/6F81-5844-456A"

// PriceSource says where an offering's price came from.
type PriceSource = catalog.PriceSource

// Price sources, as the stowage_gcp_price_source metric labels them.
const (
	PriceSourceAPI    = catalog.PriceSourceAPI
	PriceSourceStatic = catalog.PriceSourceStatic
)

// rate is one resource's hourly price, on-demand and spot.
type rate struct{ onDemand, spot float64 }

// rates are the region's Compute Engine resource prices: per family vCPU
// and GiB of memory ("N1", "G2", ...), and per GPU by SKU stem.
type rates struct {
	core, ram map[string]rate
	gpu       map[string]rate
}

var (
	machineSKU = regexp.MustCompile(`^(Spot Preemptible )?([A-Z][A-Z0-9]*) (?:Predefined )?Instance (Core|Ram) running in `)
	// Spot GPU rates read "Nvidia Tesla T4 GPU attached to Spot Preemptible
	// VMs running in Americas", unlike the spot machine rates.
	gpuSKU = regexp.MustCompile(`^(Spot Preemptible )?(Nvidia .+?) GPU (?:attached to Spot Preemptible VMs )?running in `)
)

// fetchRates reads the Compute Engine SKUs and keeps the on-demand and spot
// vCPU, memory and GPU rates sold in region.
func fetchRates(ctx context.Context, c *Clients, region string) (*rates, error) {
	r := &rates{core: map[string]rate{}, ram: map[string]rate{}, gpu: map[string]rate{}}
	it := c.Billing.ListSkus(ctx, &billingpb.ListSkusRequest{Parent: ComputeEngineService, CurrencyCode: "USD"})
	n := 0
	for {
		sku, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing Compute Engine SKUs: %w", err)
		}
		if !slices.Contains(sku.GetServiceRegions(), region) {
			continue
		}
		usage := sku.GetCategory().GetUsageType()
		if usage != "OnDemand" && usage != "Preemptible" {
			continue
		}
		price, ok := hourly(sku)
		if !ok {
			continue
		}
		var table map[string]rate
		var key string
		if m := machineSKU.FindStringSubmatch(sku.GetDescription()); m != nil {
			key = m[2]
			table = r.core
			if m[3] == "Ram" {
				table = r.ram
			}
		} else if m := gpuSKU.FindStringSubmatch(sku.GetDescription()); m != nil {
			key, table = m[2], r.gpu
		} else {
			continue
		}
		v := table[key]
		if usage == "Preemptible" {
			v.spot = price
		} else {
			v.onDemand = price
		}
		table[key] = v
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("no Compute Engine vCPU, memory or GPU SKUs for %s", region)
	}
	return r, nil
}

// hourly is the SKU's first-tier unit price.
func hourly(sku *billingpb.Sku) (float64, bool) {
	for _, pi := range sku.GetPricingInfo() {
		for _, t := range pi.GetPricingExpression().GetTieredRates() {
			if t.GetUnitPrice().GetCurrencyCode() != "USD" {
				continue
			}
			p := float64(t.GetUnitPrice().GetUnits()) + float64(t.GetUnitPrice().GetNanos())/1e9
			if p > 0 {
				return p, true
			}
		}
	}
	return 0, false
}

// machinePrice is a shape's hourly price from the rates: vCPUs x core rate +
// GiB x memory rate + GPUs x GPU rate. ok is false when a part is unknown.
func (r *rates) machinePrice(s shape, spot bool) (float64, bool) {
	if r == nil {
		return 0, false
	}
	fam := strings.ToUpper(s.Family)
	pick := func(v rate) float64 {
		if spot {
			return v.spot
		}
		return v.onDemand
	}
	core, ram := pick(r.core[fam]), pick(r.ram[fam])
	if core <= 0 || ram <= 0 {
		return 0, false
	}
	price := float64(s.VCPU)*core + float64(s.MemoryMiB)/1024*ram
	if s.GPUs > 0 {
		a, ok := accelerators[s.Accel]
		if !ok {
			return 0, false
		}
		g := pick(r.gpu[a.SKU])
		if g <= 0 {
			return 0, false
		}
		price += float64(s.GPUs) * g
	}
	return price, true
}
