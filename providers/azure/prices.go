package azure

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// PriceSource says where a price in use came from.
type PriceSource = catalog.PriceSource

// Price sources, the values of the stowage_azure_price_source gauge's label.
const (
	PriceSourceAPI    = catalog.PriceSourceAPI
	PriceSourceStatic = catalog.PriceSourceStatic
)

// reservedPriceDivisor makes reserved capacity nearly free at the margin (it
// is already paid for) while keeping cheaper reservations ahead of dearer ones.
const reservedPriceDivisor = 10_000_000

// RetailPricesAPIVersion is the Retail Prices API version queried.
const RetailPricesAPIVersion = "2023-01-01-preview"

// maxPricePages bounds one refresh: a region's Linux and Windows VM meters
// are a few hundred pages of 100 items.
const maxPricePages = 2000

// ErrNoPrices is returned when the Retail Prices API answered without one
// usable price.
var ErrNoPrices = errors.New("no VM prices in the Retail Prices response")

// PricesAPI fetches a region's hourly Linux VM prices by ARM size name.
type PricesAPI interface {
	Prices(ctx context.Context, region string) (onDemand, spot map[string]float64, err error)
}

// RetailPrices reads the public Azure Retail Prices API (no authentication).
type RetailPrices struct {
	// BaseURL is the API's scheme and host, e.g. https://prices.azure.com.
	BaseURL string
	Client  *http.Client
}

var _ PricesAPI = (*RetailPrices)(nil)

// retailPage is one page of the API's answer.
type retailPage struct {
	Items        []retailItem `json:"Items"`
	NextPageLink string       `json:"NextPageLink"`
}

type retailItem struct {
	CurrencyCode       string    `json:"currencyCode"`
	RetailPrice        float64   `json:"retailPrice"`
	ArmRegionName      string    `json:"armRegionName"`
	ArmSkuName         string    `json:"armSkuName"`
	SkuName            string    `json:"skuName"`
	MeterName          string    `json:"meterName"`
	ProductName        string    `json:"productName"`
	ServiceName        string    `json:"serviceName"`
	Type               string    `json:"type"`
	UnitOfMeasure      string    `json:"unitOfMeasure"`
	EffectiveStartDate time.Time `json:"effectiveStartDate"`
}

// PriceFilter is the OData filter for a region's pay-as-you-go VM meters.
func PriceFilter(region string) string {
	return fmt.Sprintf("serviceName eq 'Virtual Machines' and armRegionName eq '%s' and priceType eq 'Consumption'", strings.ToLower(region))
}

// Prices implements PricesAPI. Windows and Low Priority meters are dropped;
// a meter whose SKU name ends in " Spot" is the spot price.
func (r *RetailPrices) Prices(ctx context.Context, region string) (map[string]float64, map[string]float64, error) {
	base, err := url.Parse(r.BaseURL)
	if err != nil || base.Scheme == "" || base.Host == "" {
		return nil, nil, fmt.Errorf("retail prices base URL %q: want scheme://host", r.BaseURL)
	}
	q := url.Values{"api-version": {RetailPricesAPIVersion}, "currencyCode": {"USD"}, "$filter": {PriceFilter(region)}}
	next := base.JoinPath("/api/retail/prices").String() + "?" + q.Encode()
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	onDemand, spot := map[string]float64{}, map[string]float64{}
	newest := map[string]time.Time{}
	for page := 0; next != ""; page++ {
		if page >= maxPricePages {
			return nil, nil, fmt.Errorf("retail prices: more than %d pages; stopping", maxPricePages)
		}
		u, err := url.Parse(next)
		if err != nil {
			return nil, nil, fmt.Errorf("retail prices page %d: NextPageLink %q: %w", page, next, err)
		}
		// Follow links only on the host asked: the answer must not send the
		// controller elsewhere.
		if u.Scheme != base.Scheme || u.Host != base.Host {
			return nil, nil, fmt.Errorf("retail prices page %d: NextPageLink %s leaves %s", page, u.Redacted(), base.Host)
		}
		p, err := fetchPricePage(ctx, client, u.String())
		if err != nil {
			return nil, nil, fmt.Errorf("retail prices page %d: %w", page, err)
		}
		for _, it := range p.Items {
			key, isSpot, ok := classifyMeter(it, region)
			if !ok {
				continue
			}
			dst := onDemand
			if isSpot {
				dst = spot
			}
			k := key
			if isSpot {
				k += " spot"
			}
			// Several meters of one size differ by start date: the newest wins.
			if _, seen := dst[key]; seen && !it.EffectiveStartDate.After(newest[k]) {
				continue
			}
			dst[key], newest[k] = it.RetailPrice, it.EffectiveStartDate
		}
		next = p.NextPageLink
	}
	if len(onDemand) == 0 {
		return nil, nil, ErrNoPrices
	}
	return onDemand, spot, nil
}

// classifyMeter returns the ARM size an item prices and whether it is the
// spot meter, or ok=false for items that are not an hourly Linux price of
// this region.
func classifyMeter(it retailItem, region string) (size string, spot, ok bool) {
	switch {
	case it.ArmSkuName == "", it.RetailPrice <= 0, it.CurrencyCode != "" && it.CurrencyCode != "USD",
		it.Type != "" && it.Type != "Consumption", !strings.EqualFold(it.ArmRegionName, region),
		it.UnitOfMeasure != "" && it.UnitOfMeasure != "1 Hour",
		strings.HasSuffix(it.ProductName, " Windows"),
		strings.Contains(it.MeterName, "Low Priority"), strings.Contains(it.SkuName, "Low Priority"):
		return "", false, false
	}
	return it.ArmSkuName, strings.HasSuffix(it.SkuName, " Spot"), true
}

func fetchPricePage(ctx context.Context, client *http.Client, u string) (*retailPage, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body[:min(len(body), 300)])))
	}
	var p retailPage
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	return &p, nil
}
