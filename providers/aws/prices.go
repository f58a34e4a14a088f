package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/pricing"
	pricingtypes "github.com/aws/aws-sdk-go-v2/service/pricing/types"
	"k8s.io/utils/clock"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// PriceSource says where a price in use came from.
type PriceSource = catalog.PriceSource

// Price sources, the values of the stowage_aws_price_source gauge's label.
const (
	PriceSourceAPI    = catalog.PriceSourceAPI
	PriceSourceStatic = catalog.PriceSourceStatic
)

// reservedPriceDivisor makes reserved capacity nearly free at the margin (it
// is already paid for) while keeping cheaper reservations ahead of dearer ones.
const reservedPriceDivisor = 10_000_000

// spotProductDescription is the Linux spot price series.
const spotProductDescription = "Linux/UNIX"

// ErrNoPrices is returned when the Pricing API answered without one usable price.
var ErrNoPrices = errors.New("no on-demand prices in the Price List response")

// onDemandFilters are the TERM_MATCH filters that select one Linux, shared
// tenancy, no pre-installed software, on-demand price per instance type.
func onDemandFilters(region string) []pricingtypes.Filter {
	match := func(field, value string) pricingtypes.Filter {
		return pricingtypes.Filter{Type: pricingtypes.FilterTypeTermMatch, Field: aws.String(field), Value: aws.String(value)}
	}
	return []pricingtypes.Filter{
		match("regionCode", region),
		match("operatingSystem", "Linux"),
		match("preInstalledSw", "NA"),
		match("capacitystatus", "Used"),
		match("marketoption", "OnDemand"),
		match("tenancy", "Shared"),
	}
}

// fetchOnDemandPrices reads every matching Price List document.
func fetchOnDemandPrices(ctx context.Context, api PricingAPI, region string) (map[string]float64, error) {
	out := map[string]float64{}
	pages := pricing.NewGetProductsPaginator(api, &pricing.GetProductsInput{
		ServiceCode: aws.String("AmazonEC2"),
		Filters:     onDemandFilters(region),
		MaxResults:  aws.Int32(100),
	})
	for n := 0; pages.HasMorePages(); n++ {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("pricing GetProducts page %d: %w", n, err)
		}
		for i, doc := range page.PriceList {
			name, price, err := parsePriceListDocument([]byte(doc))
			if err != nil {
				return nil, fmt.Errorf("pricing GetProducts page %d, PriceList[%d]: %w", n, i, err)
			}
			if name != "" && price > 0 {
				out[name] = price
			}
		}
	}
	if len(out) == 0 {
		return nil, ErrNoPrices
	}
	return out, nil
}

// priceListDocument is the part of a Price List product document that is read.
type priceListDocument struct {
	Product struct {
		Attributes struct {
			InstanceType string `json:"instanceType"`
		} `json:"attributes"`
	} `json:"product"`
	Terms struct {
		OnDemand map[string]struct {
			PriceDimensions map[string]struct {
				Unit         string            `json:"unit"`
				PricePerUnit map[string]string `json:"pricePerUnit"`
			} `json:"priceDimensions"`
		} `json:"OnDemand"`
	} `json:"terms"`
}

// parsePriceListDocument returns the instance type and its hourly on-demand
// USD price. A document for something other than an instance (no
// instanceType) yields "", 0 and no error.
func parsePriceListDocument(doc []byte) (string, float64, error) {
	var d priceListDocument
	if err := json.Unmarshal(doc, &d); err != nil {
		return "", 0, fmt.Errorf("decoding price document: %w", err)
	}
	name := d.Product.Attributes.InstanceType
	if name == "" {
		return "", 0, nil
	}
	for termID, term := range d.Terms.OnDemand {
		for dimID, dim := range term.PriceDimensions {
			usd, ok := dim.PricePerUnit["USD"]
			if !ok {
				continue
			}
			p, err := strconv.ParseFloat(usd, 64)
			if err != nil {
				return "", 0, fmt.Errorf("%s: terms.OnDemand.%s.priceDimensions.%s.pricePerUnit.USD %q: %w", name, termID, dimID, usd, err)
			}
			if p > 0 {
				return name, p, nil
			}
		}
	}
	return name, 0, nil
}

type spotKey struct{ instanceType, zone string }

// fetchSpotPrices returns the current Linux spot price of every (type, zone).
func fetchSpotPrices(ctx context.Context, api EC2API, clk clock.PassiveClock) (map[spotKey]float64, error) {
	out := map[spotKey]float64{}
	newest := map[spotKey]int64{}
	pages := ec2.NewDescribeSpotPriceHistoryPaginator(api, &ec2.DescribeSpotPriceHistoryInput{
		StartTime:           aws.Time(clk.Now()),
		ProductDescriptions: []string{spotProductDescription},
		MaxResults:          aws.Int32(1000),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing spot price history: %w", err)
		}
		for _, sp := range page.SpotPriceHistory {
			p, err := strconv.ParseFloat(aws.ToString(sp.SpotPrice), 64)
			if err != nil || p <= 0 {
				continue
			}
			k := spotKey{string(sp.InstanceType), aws.ToString(sp.AvailabilityZone)}
			ts := aws.ToTime(sp.Timestamp).UnixNano()
			if _, seen := out[k]; !seen || ts > newest[k] {
				out[k], newest[k] = p, ts
			}
		}
	}
	return out, nil
}

// reservation is an active capacity reservation or Capacity Block.
type reservation struct {
	ID           string
	InstanceType string
	Zone         string
	Available    int
	Block        bool // a Capacity Block for ML, launched with market type capacity-block
	End          *time.Time
}

// ReservationEndMargin: a reservation that ends sooner than this is not
// offered. Capacity Blocks reclaim their machines at the end, and a machine
// launched minutes before would only be drained again.
const ReservationEndMargin = 30 * time.Minute

// fetchReservations lists active reservations the account can target.
func fetchReservations(ctx context.Context, api EC2API) ([]reservation, error) {
	var out []reservation
	pages := ec2.NewDescribeCapacityReservationsPaginator(api, &ec2.DescribeCapacityReservationsInput{
		Filters: []ec2types.Filter{{Name: aws.String("state"), Values: []string{string(ec2types.CapacityReservationStateActive)}}},
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing capacity reservations: %w", err)
		}
		for _, cr := range page.CapacityReservations {
			if cr.State != "" && cr.State != ec2types.CapacityReservationStateActive {
				continue
			}
			out = append(out, reservation{
				ID:           aws.ToString(cr.CapacityReservationId),
				InstanceType: aws.ToString(cr.InstanceType),
				Zone:         aws.ToString(cr.AvailabilityZone),
				Available:    int(aws.ToInt32(cr.AvailableInstanceCount)),
				Block:        cr.ReservationType == ec2types.CapacityReservationTypeCapacityBlock,
				End:          cr.EndDate,
			})
		}
	}
	return out, nil
}

// capacityTypeOf is the Stowage capacity type of a launched instance.
func capacityTypeOf(inst *ec2types.Instance) string {
	switch {
	case aws.ToString(inst.CapacityReservationId) != "":
		return v1.CapacityTypeReserved
	case inst.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot:
		return v1.CapacityTypeSpot
	}
	return v1.CapacityTypeOnDemand
}
