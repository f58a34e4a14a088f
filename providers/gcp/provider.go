// Package gcp is Stowage's Google Cloud provider: Compute Engine VMs that
// join a GKE cluster. It lists the region's machine types (including n1
// machines with attached GPUs) with prices from the Cloud Billing Catalog,
// launches VMs with GKE's bootstrap metadata, consumes reservations, keeps
// gangs together with compact placement policies, reports drift against the
// GCENodeClass and turns preemptions and host maintenance into
// interruption events.
//
// Every call goes through the real cloud.google.com/go REST clients, so
// tests point them at gcetest's fake server with option.WithEndpoint.
package gcp

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// Name is the provider's name in the operator's registry.
const Name = "gcp"

// Defaults for Options left zero.
const (
	DefaultCatalogTTL     = time.Hour
	DefaultPriceTTL       = time.Hour
	DefaultReservationTTL = time.Minute
	DefaultStaticCatalog  = "gcp/us-central1"
	// reservedPriceDivisor prices reserved capacity as nearly free at the
	// margin: it is paid for whether used or not.
	reservedPriceDivisor = 10_000_000
)

// Options configure a Provider. Clients, Project, Region and ClusterName are required.
type Options struct {
	// ClusterName labels every VM (stowage-cluster) so List finds this
	// cluster's machines and no one else's.
	ClusterName string
	Project     string
	Region      string
	Clients     *Clients
	// Kube reads GCENodeClasses. When nil, Create fails for claims.
	Kube client.Reader
	// Clock drives every TTL; defaults to the real clock.
	Clock clock.Clock
	// Registerer receives the provider's metrics; nil registers none.
	Registerer prometheus.Registerer

	CatalogTTL     time.Duration
	PriceTTL       time.Duration
	ReservationTTL time.Duration
	// StaticCatalog is the built-in catalog used when Compute Engine or the
	// Billing Catalog cannot be reached; defaults to gcp/<Region>, then
	// gcp/us-central1.
	StaticCatalog string
	// Unavailable remembers offerings that had no capacity; one is made if nil.
	Unavailable *cloudprovider.UnavailableOfferings
	// Interruption tunes the interruption source; the zero value is fine.
	Interruption InterruptionOptions
}

// Provider implements cloudprovider.CloudProvider for Compute Engine.
type Provider struct {
	opts         Options
	clock        clock.Clock
	unavailable  *cloudprovider.UnavailableOfferings
	priceSources *catalog.PriceSources
	labelValue   string // ClusterName as a label value

	mu            sync.Mutex
	shapes        map[string]shape
	types         []*cloudprovider.InstanceType // no offerings; copied per call
	typesFetched  time.Time
	static        catalog.Static
	rates         *rates
	pricesFetched time.Time
	reservations  []reservation
	resFetched    time.Time
	templates     map[string]*bootstrap // by template URL
	// groupLocks serialise launches of one placement group, so its first VM
	// fixes the zone before the next claim of the group picks one.
	groupLocks map[string]*sync.Mutex
}

var (
	_ cloudprovider.CloudProvider      = (*Provider)(nil)
	_ cloudprovider.InterruptionSource = (*Provider)(nil)
	_ cloudprovider.DriftChecker       = (*Provider)(nil)
	_ cloudprovider.PlacementHonourer  = (*Provider)(nil)
)

// ErrInvalidOptions is wrapped by New when a required option is missing.
var ErrInvalidOptions = errors.New("invalid gcp provider options")

// New returns a Provider. It makes no API call: the catalog and prices are
// fetched on first use.
func New(opts Options) (*Provider, error) {
	switch {
	case opts.Clients == nil:
		return nil, fmt.Errorf("%w: clients are required", ErrInvalidOptions)
	case opts.ClusterName == "":
		return nil, fmt.Errorf("%w: cluster name is required", ErrInvalidOptions)
	case opts.Project == "":
		return nil, fmt.Errorf("%w: project is required", ErrInvalidOptions)
	case opts.Region == "":
		return nil, fmt.Errorf("%w: region is required", ErrInvalidOptions)
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
		opts.Unavailable = cloudprovider.NewUnavailableOfferings(opts.Clock, cloudprovider.DefaultUnavailableTTL)
	}
	ps, err := catalog.NewPriceSources(opts.Registerer, Name, "Cloud Billing Catalog")
	if err != nil {
		return nil, err
	}
	return &Provider{
		opts: opts, clock: opts.Clock, unavailable: opts.Unavailable, priceSources: ps,
		labelValue: LabelValue(opts.ClusterName), templates: map[string]*bootstrap{}, groupLocks: map[string]*sync.Mutex{},
		static: catalog.Static{
			Configured: opts.StaticCatalog, Regional: Name + "/" + opts.Region, Default: DefaultStaticCatalog,
			// A region without a catalog gets us-central1's prices: a rough guide only.
			Defaulted: func(logger logr.Logger) {
				logger.Info("no built-in catalog for region; static prices come from "+DefaultStaticCatalog, "region", opts.Region)
			},
		},
	}, nil
}

// Name implements cloudprovider.CloudProvider.
func (p *Provider) Name() string { return Name }

// Unavailable is the provider's cache of offerings without capacity.
func (p *Provider) Unavailable() *cloudprovider.UnavailableOfferings { return p.unavailable }

// HonoursPlacement implements cloudprovider.PlacementHonourer: claims of one
// placement group on a2, a3 and a4 machines share a compact placement policy.
func (p *Provider) HonoursPlacement() bool { return true }

var labelUnsafe = regexp.MustCompile(`[^-_a-z0-9]`)

// LabelValue makes s a valid Compute Engine label value: lower case letters,
// digits, - and _, at most 63 characters.
func LabelValue(s string) string {
	s = labelUnsafe.ReplaceAllString(strings.ToLower(s), "_")
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// InstanceTypes implements cloudprovider.CloudProvider: the region's types
// with on-demand and spot offerings in every zone that sells them, and
// reserved offerings for the reservations the pool's GCENodeClass consumes.
func (p *Provider) InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	policy := gcpv1.Reservations{Consume: gcpv1.ReservationsAny}
	if pool != nil && pool.Spec.Template.Spec.NodeClassRef != nil && p.opts.Kube != nil {
		nc, err := p.nodeClass(ctx, pool.Spec.Template.Spec.NodeClassRef)
		if err != nil {
			return nil, fmt.Errorf("nodepool %s: %w", pool.Name, err)
		}
		policy = nc.Spec.Reservations
	}
	its, err := p.instanceTypes(ctx, policy)
	if err != nil {
		return nil, err
	}
	p.unavailable.Apply(its)
	return its, nil
}

// ErrNodeClassNotReady is wrapped when a claim's GCENodeClass has not
// resolved its image, subnetwork or bootstrap yet.
var ErrNodeClassNotReady = errors.New("GCENodeClass not ready")

func (p *Provider) nodeClass(ctx context.Context, ref *v1.NodeClassReference) (*gcpv1.GCENodeClass, error) {
	if ref.Group != gcpv1.Group || ref.Kind != gcpv1.Kind {
		return nil, fmt.Errorf("nodeClassRef %s/%s %s is not a %s.%s", ref.Group, ref.Kind, ref.Name, gcpv1.Kind, gcpv1.Group)
	}
	if p.opts.Kube == nil {
		return nil, fmt.Errorf("reading GCENodeClass %s: no Kubernetes client configured", ref.Name)
	}
	nc := &gcpv1.GCENodeClass{}
	if err := p.opts.Kube.Get(ctx, client.ObjectKey{Name: ref.Name}, nc); err != nil {
		return nil, fmt.Errorf("reading GCENodeClass %s: %w", ref.Name, err)
	}
	return nc, nil
}

// instanceTypes returns fresh copies of the catalog with offerings attached.
func (p *Provider) instanceTypes(ctx context.Context, policy gcpv1.Reservations) ([]*cloudprovider.InstanceType, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	logger := log.FromContext(ctx).WithName(Name)
	if err := p.refreshLocked(ctx, logger); err != nil {
		return p.staticFallbackLocked(logger, err)
	}
	return p.assembleLocked(logger, policy), nil
}

// refresh brings the catalog, prices and reservations up to date.
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
			logger.Error(err, "refreshing machine types; keeping the previous catalog", "age", now.Sub(p.typesFetched))
		}
	}
	if p.pricesFetched.IsZero() || now.Sub(p.pricesFetched) >= p.opts.PriceTTL {
		p.pricesFetched = now
		r, err := fetchRates(ctx, p.opts.Clients, p.opts.Region)
		if err != nil {
			logger.Error(err, "fetching prices from the Cloud Billing Catalog; using the previous or built-in prices")
		} else {
			p.rates = r
		}
	}
	if p.resFetched.IsZero() || now.Sub(p.resFetched) >= p.opts.ReservationTTL {
		res, err := fetchReservations(ctx, p.opts.Clients, p.opts.Project, p.opts.Region)
		if err != nil {
			// Stale counts would promise capacity that is gone; offer none.
			logger.Error(err, "listing reservations; offering no reserved capacity until it succeeds")
			res = nil
		}
		p.reservations, p.resFetched = res, now
	}
	return nil
}

func (p *Provider) refreshTypesLocked(ctx context.Context, logger logr.Logger) error {
	shapes, err := fetchShapes(ctx, p.opts.Clients, p.opts.Project, p.opts.Region)
	if err != nil {
		return err
	}
	its, skipped, err := buildInstanceTypes(p.opts.Region, p.clock.Now().UTC().Format(time.DateOnly), shapes)
	if err != nil {
		return fmt.Errorf("building instance types: %w", err)
	}
	if len(skipped) > 0 {
		logger.V(1).Info("skipped machine types with unknown accelerators", "types", skipped)
	}
	p.shapes = make(map[string]shape, len(shapes))
	for _, s := range shapes {
		p.shapes[s.Name] = s
	}
	p.types, p.typesFetched = its, p.clock.Now()
	return nil
}

// staticFallbackLocked serves the built-in catalog when Compute Engine cannot
// be reached and nothing was fetched before.
func (p *Provider) staticFallbackLocked(logger logr.Logger, cause error) ([]*cloudprovider.InstanceType, error) {
	c, err := p.static.Load(logger)
	if err != nil {
		return nil, errors.Join(cause, err)
	}
	logger.Error(cause, "listing machine types failed; using the built-in catalog", "catalog", p.static.Name())
	c = c.DeepCopy()
	for _, it := range c.InstanceTypes {
		it.Placement = slices.Contains(placementFamilies, familyOf(it.Name))
	}
	if p.priceSources.Update(map[PriceSource]int{PriceSourceStatic: catalog.CountOfferings(c.InstanceTypes)}) {
		logger.Info("prices in use", "api", 0, "static", catalog.CountOfferings(c.InstanceTypes), "source", PriceSourceStatic)
	}
	return c.InstanceTypes, nil
}

// offeringPriceLocked is the price of one offering and where it came from.
func (p *Provider) offeringPriceLocked(s shape, zone, capacityType string) (float64, PriceSource, bool) {
	if price, ok := p.rates.machinePrice(s, capacityType == v1.CapacityTypeSpot); ok {
		return price, PriceSourceAPI, true
	}
	price, ok := p.static.Price(cloudprovider.OfferingID{InstanceType: s.Name, Zone: zone, CapacityType: capacityType})
	return price, PriceSourceStatic, ok
}

// assembleLocked copies the catalog and attaches offerings: on-demand and
// spot in every zone with a known price, and one reserved offering per
// reservation the policy consumes.
func (p *Provider) assembleLocked(logger logr.Logger, policy gcpv1.Reservations) []*cloudprovider.InstanceType {
	sources := map[PriceSource]int{}
	unpriced := 0
	byName := map[string]*cloudprovider.InstanceType{}
	out := make([]*cloudprovider.InstanceType, 0, len(p.types))
	for _, base := range p.types {
		it := copyType(base)
		s := p.shapes[it.Name]
		for _, z := range s.Zones {
			for _, ct := range []string{v1.CapacityTypeOnDemand, v1.CapacityTypeSpot} {
				price, src, ok := p.offeringPriceLocked(s, z, ct)
				if !ok || price <= 0 {
					if ct == v1.CapacityTypeOnDemand {
						unpriced++
					}
					continue
				}
				sources[src]++
				it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: ct, PricePerHour: price, Available: true})
			}
		}
		byName[it.Name] = it
		out = append(out, it)
	}
	for _, r := range p.reservations {
		it, ok := byName[r.InstanceType]
		if !ok || !consumes(policy, r) {
			continue
		}
		od := 0.0
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeOnDemand && o.Zone == r.Zone {
				od = o.PricePerHour
			}
		}
		it.Offerings = append(it.Offerings, cloudprovider.Offering{
			Zone: r.Zone, CapacityType: v1.CapacityTypeReserved, PricePerHour: od / reservedPriceDivisor,
			Available: r.Available > 0, ReservationID: r.Name, ReservedCount: r.Available,
		})
	}
	out = slices.DeleteFunc(out, func(it *cloudprovider.InstanceType) bool { return len(it.Offerings) == 0 })
	if p.priceSources.Update(sources) {
		logger.Info("prices in use", "api", sources[PriceSourceAPI], "static", sources[PriceSourceStatic], "unpriced", unpriced,
			"source", catalog.Dominant(sources))
	}
	return out
}

func copyType(it *cloudprovider.InstanceType) *cloudprovider.InstanceType {
	c := &pricing.Catalog{InstanceTypes: []*cloudprovider.InstanceType{it}}
	out := c.DeepCopy().InstanceTypes[0]
	out.Placement = it.Placement
	return out
}

// Start refreshes the catalog, prices and reservations every ReservationTTL
// (each part on its own TTL) and deletes placement policies no VM uses, so a
// launch decision never waits on the APIs. It implements manager.Runnable.
func (p *Provider) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName(Name)
	for {
		if _, err := p.instanceTypes(ctx, gcpv1.Reservations{Consume: gcpv1.ReservationsAny}); err != nil {
			logger.Error(err, "refreshing the catalog")
		}
		if err := p.CleanupPlacementPolicies(ctx); err != nil {
			logger.Error(err, "cleaning up placement policies")
		}
		t := p.clock.NewTimer(p.opts.ReservationTTL)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// NeedLeaderElection runs Start on the leader only.
func (p *Provider) NeedLeaderElection() bool { return true }

// Catalog returns the live catalog with its sources, for
// `stowage catalog --cloud gcp --endpoint ...`.
func (p *Provider) Catalog(ctx context.Context) (*pricing.Catalog, error) {
	its, err := p.instanceTypes(ctx, gcpv1.Reservations{Consume: gcpv1.ReservationsAny})
	if err != nil {
		return nil, err
	}
	date := p.clock.Now().UTC().Format(time.DateOnly)
	c := &pricing.Catalog{Cloud: Name, Region: p.opts.Region, InstanceTypes: its, Zones: catalog.Zones(its)}
	c.Sources = append(c.Sources, pricing.Source{What: "specs and zones", From: "Compute Engine machineTypes.aggregatedList, acceleratorTypes.aggregatedList", Date: date})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.rates != nil {
		c.Sources = append(c.Sources, pricing.Source{What: "on-demand and spot prices", From: "Cloud Billing Catalog API, " + ComputeEngineService + " SKUs", Date: date})
	}
	c.Sources = append(c.Sources, p.static.FallbackSources()...)
	return c, nil
}
