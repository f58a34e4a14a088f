// Package aws is Stowage's AWS cloud provider: the EC2 instance catalog with
// live on-demand, spot and reserved prices, launches through CreateFleet,
// termination, and EventBridge interruption notices read from SQS.
//
// Every AWS call goes through the narrowed EC2API, PricingAPI and SQSAPI
// interfaces, so unit tests fake the SDK and contract tests point the real
// SDK at moto or an httptest server.
package aws

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// Name is the provider's name in the operator's registry and on providerIDs.
const Name = "aws"

// Defaults for Options left zero.
const (
	DefaultCatalogTTL      = time.Hour
	DefaultPriceTTL        = time.Hour
	DefaultReservationTTL  = time.Minute
	DefaultStaticCatalog   = "aws/us-east-1"
	defaultUnavailableTime = cloudprovider.DefaultUnavailableTTL
)

// Options configure a Provider. EC2 and ClusterName are required.
type Options struct {
	// ClusterName tags every instance (stowage.dev/cluster) so List finds
	// this cluster's machines and no one else's.
	ClusterName string
	Region      string
	EC2         EC2API
	// Pricing may be nil: then on-demand prices come from the static catalog.
	Pricing PricingAPI
	// Kube reads EC2NodeClasses. When nil, InstanceTypes offers every zone and
	// Create fails for claims that reference a node class.
	Kube client.Reader
	// Clock drives every TTL; defaults to the real clock.
	Clock clock.Clock
	// Registerer receives the provider's metrics; nil registers none.
	Registerer prometheus.Registerer

	// Cluster join settings written into user data.
	ClusterEndpoint string
	ClusterCABundle string // base64 PEM
	ClusterCIDR     string

	CatalogTTL     time.Duration
	PriceTTL       time.Duration
	ReservationTTL time.Duration
	// StaticCatalog is the built-in catalog used when EC2 or the Pricing API
	// cannot be reached; defaults to aws/<Region>, then aws/us-east-1.
	StaticCatalog string
	// Unavailable remembers pools that had no capacity; one is made if nil.
	Unavailable *cloudprovider.UnavailableOfferings
	// Interruption reads the EventBridge queue; nil means no interruption
	// handling (Interruptions then delivers nothing).
	Interruption *InterruptionSource
}

// Provider implements cloudprovider.CloudProvider for EC2.
type Provider struct {
	opts         Options
	clock        clock.Clock
	unavailable  *cloudprovider.UnavailableOfferings
	priceSources *catalog.PriceSources

	mu            sync.Mutex
	shapes        map[string]shape
	types         []*cloudprovider.InstanceType // no offerings; copied per call
	typesFetched  time.Time
	static        catalog.Static
	onDemand      map[string]float64 // from the Pricing API
	spot          map[spotKey]float64
	pricesFetched time.Time
	reservations  []reservation
	resFetched    time.Time
	// templates are the launch templates known to exist, by name.
	templates       map[string]*templateRecord
	templatesLoaded bool
	// placementGroups are cluster placement groups known to exist, with when
	// this process first saw them.
	placementGroups map[string]time.Time
	spotWarned      bool
	// spentTokens counts, per claim and capacity group, the fleets that
	// answered without an instance: EC2 answers a reused client token with
	// its first answer, so a retry must use a new one (fleetClientToken).
	spentTokens map[string]spentToken
	// networks are instances' subnets and security groups as drift last
	// read them (instanceNetwork), pruned once per networkTTL.
	networks       map[string]instanceNetwork
	networksPruned time.Time
}

type spentToken struct {
	n  int
	at time.Time
}

var (
	_ cloudprovider.CloudProvider      = (*Provider)(nil)
	_ cloudprovider.InterruptionSource = (*Provider)(nil)
	_ cloudprovider.DriftChecker       = (*Provider)(nil)
	_ cloudprovider.PlacementHonourer  = (*Provider)(nil)
)

// ErrInvalidOptions is wrapped by New when a required option is missing.
var ErrInvalidOptions = errors.New("invalid aws provider options")

// New returns a Provider. It makes no AWS call: the catalog and prices are
// fetched on first use.
func New(opts Options) (*Provider, error) {
	if opts.EC2 == nil {
		return nil, fmt.Errorf("%w: EC2 client is required", ErrInvalidOptions)
	}
	if opts.ClusterName == "" {
		return nil, fmt.Errorf("%w: cluster name is required", ErrInvalidOptions)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.CatalogTTL <= 0 {
		opts.CatalogTTL = DefaultCatalogTTL
	}
	if opts.PriceTTL <= 0 {
		opts.PriceTTL = DefaultPriceTTL
	}
	if opts.ReservationTTL <= 0 {
		opts.ReservationTTL = DefaultReservationTTL
	}
	if opts.Unavailable == nil {
		opts.Unavailable = cloudprovider.NewUnavailableOfferings(opts.Clock, defaultUnavailableTime)
	}
	ps, err := catalog.NewPriceSources(opts.Registerer, Name, "Pricing API, spot price history")
	if err != nil {
		return nil, err
	}
	return &Provider{
		opts:         opts,
		clock:        opts.Clock,
		unavailable:  opts.Unavailable,
		priceSources: ps,
		static: catalog.Static{
			Configured: opts.StaticCatalog, Regional: Name + "/" + opts.Region, Default: DefaultStaticCatalog,
			// A region without a catalog gets us-east-1's prices: a rough guide only.
			Defaulted: func(logger logr.Logger) {
				logger.Info("no built-in catalog for region; static prices come from "+DefaultStaticCatalog, "region", opts.Region)
			},
		},
		templates:       map[string]*templateRecord{},
		placementGroups: map[string]time.Time{},
	}, nil
}

// Name implements cloudprovider.CloudProvider.
func (p *Provider) Name() string { return Name }

// Unavailable is the provider's cache of pools without capacity.
func (p *Provider) Unavailable() *cloudprovider.UnavailableOfferings { return p.unavailable }

// InstanceTypes implements cloudprovider.CloudProvider: the region's types
// with reserved, spot and on-demand offerings in the zones the pool's
// EC2NodeClass has subnets in, and the capacity its kubelet settings and
// disks leave. A pool whose node class is not Ready gets an error, so nothing
// is bought for it.
func (p *Provider) InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	var nc *awsv1.EC2NodeClass
	if pool != nil && pool.Spec.Template.Spec.NodeClassRef != nil && p.opts.Kube != nil {
		var err error
		if nc, err = p.nodeClass(ctx, pool.Spec.Template.Spec.NodeClassRef); err != nil {
			return nil, fmt.Errorf("nodepool %s: %w", pool.Name, err)
		}
		if err := launchable(nc); err != nil {
			return nil, fmt.Errorf("nodepool %s: %w", pool.Name, err)
		}
	}
	its, err := p.instanceTypes(ctx)
	if err != nil {
		return nil, err
	}
	its = p.forNodeClass(its, nc)
	p.unavailable.Apply(its)
	return its, nil
}

// ErrNodeClassNotReady is wrapped when a claim's EC2NodeClass has not resolved
// its subnets, security groups or images yet.
var ErrNodeClassNotReady = errors.New("EC2NodeClass not ready")

func (p *Provider) nodeClass(ctx context.Context, ref *v1.NodeClassReference) (*awsv1.EC2NodeClass, error) {
	if ref.Group != awsv1.Group || ref.Kind != awsv1.Kind {
		return nil, fmt.Errorf("nodeClassRef %s/%s %s is not an %s.%s", ref.Group, ref.Kind, ref.Name, awsv1.Kind, awsv1.Group)
	}
	if p.opts.Kube == nil {
		return nil, fmt.Errorf("reading EC2NodeClass %s: no Kubernetes client configured", ref.Name)
	}
	nc := &awsv1.EC2NodeClass{}
	if err := p.opts.Kube.Get(ctx, client.ObjectKey{Name: ref.Name}, nc); err != nil {
		return nil, fmt.Errorf("reading EC2NodeClass %s: %w", ref.Name, err)
	}
	return nc, nil
}

// instanceTypes returns fresh copies of the catalog with offerings attached.
func (p *Provider) instanceTypes(ctx context.Context) ([]*cloudprovider.InstanceType, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	logger := log.FromContext(ctx).WithName(Name)
	if err := p.refreshLocked(ctx, logger); err != nil {
		return p.staticFallbackLocked(logger, err)
	}
	return p.assembleLocked(logger), nil
}

// refresh brings the catalog, prices and reservations up to date; Create
// needs them current but not copied.
func (p *Provider) refresh(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.refreshLocked(ctx, log.FromContext(ctx).WithName(Name))
}

// refreshLocked refetches whatever is past its TTL. It fails only when no
// catalog was ever fetched; later failures keep the previous data.
func (p *Provider) refreshLocked(ctx context.Context, logger logr.Logger) error {
	if _, err := p.static.Load(logger); err != nil {
		logger.Error(err, "static prices unavailable")
	}
	now := p.clock.Now()
	if p.types == nil || now.Sub(p.typesFetched) >= p.opts.CatalogTTL {
		if err := p.refreshTypesLocked(ctx, logger); err != nil {
			if p.types == nil {
				return err
			}
			logger.Error(err, "refreshing instance types; keeping the previous catalog", "age", now.Sub(p.typesFetched))
		}
	}
	if p.pricesFetched.IsZero() || now.Sub(p.pricesFetched) >= p.opts.PriceTTL {
		p.refreshPricesLocked(ctx, logger)
	}
	if p.resFetched.IsZero() || now.Sub(p.resFetched) >= p.opts.ReservationTTL {
		res, err := fetchReservations(ctx, p.opts.EC2)
		if err != nil {
			// Without the list, reserved offerings would be stale or wrong; drop them.
			logger.Error(err, "listing capacity reservations; offering no reserved capacity until it succeeds")
			res = nil
		}
		p.reservations, p.resFetched = res, now
	}
	return nil
}

func (p *Provider) refreshTypesLocked(ctx context.Context, logger logr.Logger) error {
	shapes, err := describeShapes(ctx, p.opts.EC2)
	if err != nil {
		return err
	}
	its, skipped, err := buildInstanceTypes(p.opts.Region, p.clock.Now().UTC().Format(time.DateOnly), shapes)
	if err != nil {
		return fmt.Errorf("building instance types: %w", err)
	}
	if len(skipped) > 0 {
		logger.V(1).Info("skipped instance types with incomplete accelerator facts", "types", skipped)
	}
	p.shapes = make(map[string]shape, len(shapes))
	for _, s := range shapes {
		p.shapes[s.Name] = s
	}
	for _, it := range its {
		s := p.shapes[it.Name]
		it.Placement = s.Placement
		if s.EFA > 0 {
			it.Capacity[ResourceEFA] = *resource.NewQuantity(int64(s.EFA), resource.DecimalSI)
		}
	}
	p.types, p.typesFetched = its, p.clock.Now()
	return nil
}

// staticFallbackLocked serves the built-in catalog when EC2 cannot be reached
// and nothing was fetched before.
func (p *Provider) staticFallbackLocked(logger logr.Logger, cause error) ([]*cloudprovider.InstanceType, error) {
	c, err := p.static.Load(logger)
	if err != nil {
		return nil, errors.Join(cause, err)
	}
	logger.Error(cause, "describing instance types failed; using the built-in catalog", "catalog", p.static.Name())
	c = c.DeepCopy()
	p.priceSources.Update(map[PriceSource]int{PriceSourceStatic: catalog.CountOfferings(c.InstanceTypes)})
	return c.InstanceTypes, nil
}

func (p *Provider) refreshPricesLocked(ctx context.Context, logger logr.Logger) {
	p.pricesFetched = p.clock.Now()
	if p.opts.Pricing != nil {
		od, err := fetchOnDemandPrices(ctx, p.opts.Pricing, p.opts.Region)
		if err != nil {
			logger.Error(err, "fetching on-demand prices from the Pricing API; using static prices")
		} else {
			p.onDemand = od
		}
	}
	spot, err := fetchSpotPrices(ctx, p.opts.EC2, p.clock)
	switch placeholder, ok := placeholderPrice(spot); {
	case err != nil:
		logger.Error(err, "fetching spot prices; using static prices")
	case ok:
		// One price for (nearly) every type and zone is not a market: it is
		// an emulator's stand-in (moto answers $0.00001). Planning with it
		// would make every spot machine look free.
		if !p.spotWarned {
			logger.Info("WARNING: spot price history looks like placeholder data; using static spot prices",
				"price", placeholder, "series", len(spot))
			p.spotWarned = true
		}
		p.spot = nil
	default:
		p.spot, p.spotWarned = spot, false
	}
}

// assembleLocked copies the catalog and attaches offerings: on-demand and
// spot in every zone a price is known for, and one reserved offering per
// active reservation.
func (p *Provider) assembleLocked(logger logr.Logger) []*cloudprovider.InstanceType {
	sources := map[PriceSource]int{}
	unpriced := 0
	byName := map[string]*cloudprovider.InstanceType{}
	out := make([]*cloudprovider.InstanceType, 0, len(p.types))
	for _, base := range p.types {
		it := copyType(base)
		shape := p.shapes[it.Name]
		od, odSource := p.onDemand[it.Name], PriceSourceAPI
		for _, z := range shape.Zones {
			odPrice, odSrc := od, odSource
			if odPrice <= 0 {
				odPrice, odSrc = 0, PriceSourceStatic
				if sp, ok := p.static.Price(cloudprovider.OfferingID{InstanceType: it.Name, Zone: z, CapacityType: v1.CapacityTypeOnDemand}); ok {
					odPrice = sp
				}
			}
			if odPrice <= 0 {
				unpriced++
				continue
			}
			sources[odSrc]++
			it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: odPrice, Available: true})
			if !shape.Spot {
				continue
			}
			spotPrice, spotSrc := p.spot[spotKey{it.Name, z}], PriceSourceAPI
			if spotPrice <= 0 {
				spotSrc = PriceSourceStatic
				spotPrice, _ = p.static.Price(cloudprovider.OfferingID{InstanceType: it.Name, Zone: z, CapacityType: v1.CapacityTypeSpot})
			}
			if spotPrice > 0 {
				sources[spotSrc]++
				it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, PricePerHour: spotPrice, Available: true})
			}
		}
		byName[it.Name] = it
		out = append(out, it)
	}
	for _, r := range p.reservations {
		it, ok := byName[r.InstanceType]
		if !ok {
			continue
		}
		if r.End != nil && r.End.Sub(p.clock.Now()) < ReservationEndMargin {
			continue // a machine launched now would be taken back almost at once
		}
		odPrice := 0.0
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeOnDemand && o.Zone == r.Zone {
				odPrice = o.PricePerHour
			}
		}
		it.Offerings = append(it.Offerings, cloudprovider.Offering{
			Zone: r.Zone, CapacityType: v1.CapacityTypeReserved,
			PricePerHour:  odPrice / reservedPriceDivisor,
			Available:     r.Available > 0,
			ReservationID: r.ID, ReservedCount: r.Available,
		})
	}
	out = slices.DeleteFunc(out, func(it *cloudprovider.InstanceType) bool { return len(it.Offerings) == 0 })
	if p.priceSources.Update(sources) {
		logger.Info("prices in use", "api", sources[PriceSourceAPI], "static", sources[PriceSourceStatic], "unpriced", unpriced)
	}
	return out
}

func copyType(it *cloudprovider.InstanceType) *cloudprovider.InstanceType {
	c := &pricing.Catalog{InstanceTypes: []*cloudprovider.InstanceType{it}}
	return c.DeepCopy().InstanceTypes[0]
}

// Start refreshes prices and reservations every PriceTTL, and deletes
// unused launch templates and placement groups every GCInterval, until ctx
// is done, so a launch decision never waits on the Pricing API. It
// implements controller-runtime's manager.Runnable (run by the leader only).
func (p *Provider) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName(Name)
	refreshCatalog := func() {
		if _, err := p.instanceTypes(ctx); err != nil {
			logger.Error(err, "refreshing the catalog")
		}
	}
	refreshCatalog()
	refresh := p.clock.NewTimer(p.opts.PriceTTL)
	gc := p.clock.NewTimer(GCInterval)
	defer refresh.Stop()
	defer gc.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-refresh.C():
			refreshCatalog()
			refresh.Reset(p.opts.PriceTTL)
		case <-gc.C():
			if err := p.CollectGarbage(ctx); err != nil {
				logger.Error(err, "collecting unused launch templates and placement groups")
			}
			gc.Reset(GCInterval)
		}
	}
}

// GCInterval is how often unused launch templates and placement groups are deleted.
const GCInterval = 5 * time.Minute

// CollectGarbage deletes launch templates unused for TemplateIdleTTL or whose
// node class is gone, and placement groups no claim names.
func (p *Provider) CollectGarbage(ctx context.Context) error {
	return errors.Join(p.CollectLaunchTemplates(ctx), p.CollectPlacementGroups(ctx))
}

// Interruptions implements cloudprovider.InterruptionSource by delegating to
// Options.Interruption. Without a queue the channel only closes when ctx is
// done: the cluster then learns of interruptions only when nodes disappear.
func (p *Provider) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	if p.opts.Interruption != nil {
		return p.opts.Interruption.Interruptions(ctx)
	}
	log.FromContext(ctx).WithName(Name).Info("no interruption queue configured; spot interruptions are not handled ahead of time")
	ch := make(chan cloudprovider.InterruptionEvent)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

// Catalog returns the live catalog as a pricing.Catalog with its sources, for
// `stowage catalog --cloud aws --endpoint ...`.
func (p *Provider) Catalog(ctx context.Context) (*pricing.Catalog, error) {
	its, err := p.instanceTypes(ctx)
	if err != nil {
		return nil, err
	}
	date := p.clock.Now().UTC().Format(time.DateOnly)
	c := &pricing.Catalog{Cloud: Name, Region: p.opts.Region, InstanceTypes: its, Zones: catalog.Zones(its)}
	c.Sources = append(c.Sources, pricing.Source{What: "specs and zones", From: "EC2 DescribeInstanceTypes, DescribeInstanceTypeOfferings", Date: date})
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.onDemand) > 0 {
		c.Sources = append(c.Sources, pricing.Source{What: "on-demand prices", From: "AWS Price List API GetProducts", Date: date})
	}
	if len(p.spot) > 0 {
		c.Sources = append(c.Sources, pricing.Source{What: "spot prices", From: "EC2 DescribeSpotPriceHistory", Date: date})
	}
	c.Sources = append(c.Sources, p.static.FallbackSources()...)
	return c, nil
}

// placeholderPrice reports a price shared by at least 90% of many series.
func placeholderPrice(prices map[spotKey]float64) (float64, bool) {
	if len(prices) < 20 {
		return 0, false
	}
	counts := map[float64]int{}
	for _, v := range prices {
		counts[v]++
	}
	for v, n := range counts {
		if n*10 >= len(prices)*9 {
			return v, true
		}
	}
	return 0, false
}
