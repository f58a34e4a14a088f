// Package azure is Stowage's Azure cloud provider for AKS: the location's VM
// sizes from Resource SKUs with Retail Prices API prices, standalone VMs and
// their network interfaces launched with armcompute and armnetwork, reserved
// capacity from capacity reservation groups, proximity placement groups for
// training gangs, and interruptions read from the Node conditions AKS's
// node-problem-detector sets, with VM state polling as a backstop.
//
// Every Azure call goes through the narrowed interfaces in sdk.go; tests run
// the real SDK clients against the SDK's own fake servers (azuretest).
package azure

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pricing"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// Name is the provider's name in the operator's registry and on providerIDs.
const Name = "azure"

// Defaults for Options left zero.
const (
	DefaultCatalogTTL     = time.Hour
	DefaultPriceTTL       = time.Hour
	DefaultReservationTTL = time.Minute
	DefaultStaticCatalog  = "azure/eastus"
	DefaultClusterDNS     = "10.0.0.10"
	DefaultMaxPods        = 110
)

// Options configure a Provider. ClusterName, SubscriptionID, ResourceGroup,
// Location and the VM, NIC and SKU clients are required.
type Options struct {
	// ClusterName tags every VM (stowage.dev_cluster) so List finds this
	// cluster's machines and no one else's.
	ClusterName    string
	SubscriptionID string
	// ResourceGroup is where VMs, NICs and placement groups are made: the
	// AKS cluster's node resource group.
	ResourceGroup string
	Location      string

	VMs          VirtualMachinesAPI
	NICs         InterfacesAPI
	Disks        DisksAPI
	SKUs         ResourceSKUsAPI
	PPGs         ProximityPlacementGroupsAPI
	Reservations CapacityReservationsAPI
	// Prices may be nil: then prices come from the static catalog.
	Prices PricesAPI

	// Kube reads AKSNodeClasses.
	Kube client.Reader
	// Clock drives every TTL; defaults to the real clock.
	Clock clock.Clock
	// Registerer receives the provider's metrics; nil registers none.
	Registerer prometheus.Registerer

	// Cluster join settings written into custom data.
	APIServer      string
	CABundle       string // base64 PEM
	BootstrapToken string
	ClusterDNS     string
	// KubeletIdentity is the resource ID of the user-assigned identity VMs
	// get (the AKS cluster's kubelet identity), for image pulls from ACR.
	KubeletIdentity string

	CatalogTTL     time.Duration
	PriceTTL       time.Duration
	ReservationTTL time.Duration
	// PollFrequency is how often long-running operations are polled.
	PollFrequency time.Duration
	// StaticCatalog is the built-in catalog used when Resource SKUs or the
	// Retail Prices API cannot be reached; defaults to azure/<Location>,
	// then azure/eastus.
	StaticCatalog string
	// Unavailable remembers pools that had no capacity; one is made if nil.
	Unavailable *cloudprovider.UnavailableOfferings
	// Interruption delivers Node-condition and VM-state interruptions; nil
	// means none (Interruptions then delivers nothing).
	Interruption *InterruptionSource
}

// Provider implements cloudprovider.CloudProvider for Azure VMs.
type Provider struct {
	opts         Options
	clock        clock.Clock
	unavailable  *cloudprovider.UnavailableOfferings
	priceSources *catalog.PriceSources
	sshKey       string

	mu            sync.Mutex
	shapes        map[string]shape
	types         map[int][]*cloudprovider.InstanceType // by max pods; no offerings
	typesFetched  time.Time
	static        catalog.Static
	onDemand      map[string]float64
	spot          map[string]float64
	pricesFetched time.Time
	reservations  map[string]*reservationSet // by capacity reservation group ID, lower case
	vmFacts       map[string]vmFacts         // by providerID: what drift compares

	placement placementTracker

	deletingMu  sync.Mutex
	deletingVMs map[string]time.Time // VMs this process is deleting, by lower-case name
}

var (
	_ cloudprovider.CloudProvider      = (*Provider)(nil)
	_ cloudprovider.InterruptionSource = (*Provider)(nil)
	_ cloudprovider.DriftChecker       = (*Provider)(nil)
	_ cloudprovider.PlacementHonourer  = (*Provider)(nil)
)

// ErrInvalidOptions is wrapped by New when a required option is missing.
var ErrInvalidOptions = errors.New("invalid azure provider options")

// New returns a Provider. It makes no Azure call: the catalog and prices are
// fetched on first use.
func New(opts Options) (*Provider, error) {
	var missing []string
	for what, ok := range map[string]bool{
		"cluster name": opts.ClusterName != "", "subscription ID": opts.SubscriptionID != "",
		"resource group": opts.ResourceGroup != "", "location": opts.Location != "",
		"VM client": opts.VMs != nil, "NIC client": opts.NICs != nil, "SKU client": opts.SKUs != nil,
	} {
		if !ok {
			missing = append(missing, what)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, fmt.Errorf("%w: %s required", ErrInvalidOptions, strings.Join(missing, ", "))
	}
	opts.Location = strings.ToLower(opts.Location)
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
	if opts.PollFrequency <= 0 {
		opts.PollFrequency = defaultLROPollPeriod
	}
	if opts.ClusterDNS == "" {
		opts.ClusterDNS = DefaultClusterDNS
	}
	if opts.Unavailable == nil {
		opts.Unavailable = cloudprovider.NewUnavailableOfferings(opts.Clock, cloudprovider.DefaultUnavailableTTL)
	}
	ps, err := catalog.NewPriceSources(opts.Registerer, Name, "Azure Retail Prices API")
	if err != nil {
		return nil, err
	}
	key, err := throwawaySSHKey()
	if err != nil {
		return nil, err
	}
	p := &Provider{
		opts: opts, clock: opts.Clock, unavailable: opts.Unavailable, priceSources: ps, sshKey: key,
		types: map[int][]*cloudprovider.InstanceType{}, reservations: map[string]*reservationSet{},
		vmFacts: map[string]vmFacts{}, placement: placementTracker{inflight: map[string]int{}},
		deletingVMs: map[string]time.Time{}, static: staticCatalog(opts.StaticCatalog, opts.Location),
	}
	if s := opts.Interruption; s != nil {
		s.mu.Lock()
		s.deleting = p.isDeleting
		s.providerID = func(vm string) string { return providerID(opts.SubscriptionID, opts.ResourceGroup, vm) }
		s.mu.Unlock()
	}
	return p, nil
}

// throwawaySSHKey is an RSA public key whose private half is never kept:
// Azure requires a key for Linux VMs, and nodes need no login by default.
// One per process: generating RSA keys is slow and the key means nothing.
var throwawaySSHKey = sync.OnceValues(func() (string, error) {
	k, err := rsa.GenerateKey(rand.Reader, 3072)
	if err != nil {
		return "", fmt.Errorf("generating the node SSH key: %w", err)
	}
	pub, err := ssh.NewPublicKey(&k.PublicKey)
	if err != nil {
		return "", fmt.Errorf("encoding the node SSH key: %w", err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))), nil
})

// Name implements cloudprovider.CloudProvider.
func (p *Provider) Name() string { return Name }

// HonoursPlacement implements cloudprovider.PlacementHonourer: claims of one
// placement group share a proximity placement group.
func (p *Provider) HonoursPlacement() bool { return true }

// Unavailable is the provider's cache of pools without capacity.
func (p *Provider) Unavailable() *cloudprovider.UnavailableOfferings { return p.unavailable }

// ErrNodeClassNotReady is wrapped when a pool's or claim's AKSNodeClass has
// not resolved its image, subnet or groups: nothing is offered or launched
// for it until it has.
var ErrNodeClassNotReady = errors.New("AKSNodeClass not ready")

// InstanceTypes implements cloudprovider.CloudProvider: the location's sizes
// with spot and on-demand offerings in every zone they are sold in, reserved
// offerings from the node class's capacity reservation group, and only
// sizes the node class can run (an image for their architecture, the
// security features it asks for).
func (p *Provider) InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	var nc *azv1.AKSNodeClass
	if pool != nil && pool.Spec.Template.Spec.NodeClassRef == nil {
		// Nothing could be launched for it: offer nothing rather than claims that fail.
		return nil, fmt.Errorf("nodepool %s: %w: spec.template.spec.nodeClassRef must name an %s", pool.Name, ErrNodeClassNotReady, azv1.Kind)
	}
	if pool != nil {
		var err error
		if nc, err = p.nodeClass(ctx, pool.Spec.Template.Spec.NodeClassRef); err != nil {
			return nil, fmt.Errorf("nodepool %s: %w", pool.Name, err)
		}
		if err := ready(nc); err != nil {
			return nil, fmt.Errorf("nodepool %s: %w", pool.Name, err)
		}
	}
	its, err := p.instanceTypes(ctx, maxPods(nc))
	if err != nil {
		return nil, err
	}
	if nc != nil {
		its = p.forNodeClass(its, nc)
		if nc.Spec.CapacityReservationGroup != "" {
			p.addReserved(ctx, its, nc.Spec.CapacityReservationGroup)
		}
	}
	p.unavailable.Apply(its)
	return its, nil
}

// forNodeClass drops sizes the node class cannot run.
func (p *Provider) forNodeClass(its []*cloudprovider.InstanceType, nc *azv1.AKSNodeClass) []*cloudprovider.InstanceType {
	archs := map[string]bool{}
	for _, img := range nc.Status.Images {
		archs[img.Arch] = true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.DeleteFunc(its, func(it *cloudprovider.InstanceType) bool {
		if !archs[it.Labels[v1.LabelArch]] {
			return true
		}
		s, known := p.shapes[it.Name]
		if !known {
			return false // static catalog: no feature facts, assume supported
		}
		sec := nc.Spec.Security
		switch {
		case sec != nil && deref(sec.EncryptionAtHost) && !s.EncryptionAtHost,
			sec != nil && deref(sec.TrustedLaunch) && !s.TrustedLaunch,
			nc.Spec.OSDisk.Type == azv1.OSDiskEphemeral && !s.EphemeralOSDisk:
			return true
		}
		return false
	})
}

// ready says what a node class still lacks before it can launch.
func ready(nc *azv1.AKSNodeClass) error {
	if c := conditions.Get(nc.Status.Conditions, azv1.ConditionReady); c == nil || c.Status != "True" {
		msg := "not resolved yet"
		if c != nil && c.Message != "" {
			msg = c.Message
		}
		return fmt.Errorf("%w: AKSNodeClass %s: %s", ErrNodeClassNotReady, nc.Name, msg)
	}
	if len(nc.Status.Images) == 0 || nc.Status.KubernetesVersion == "" {
		return fmt.Errorf("%w: AKSNodeClass %s has no resolved image or Kubernetes version in status", ErrNodeClassNotReady, nc.Name)
	}
	return nil
}

func maxPods(nc *azv1.AKSNodeClass) int {
	if nc != nil && nc.Spec.MaxPods != nil {
		return int(*nc.Spec.MaxPods)
	}
	return DefaultMaxPods
}

func (p *Provider) nodeClass(ctx context.Context, ref *v1.NodeClassReference) (*azv1.AKSNodeClass, error) {
	if ref.Group != azv1.Group || ref.Kind != azv1.Kind {
		return nil, fmt.Errorf("nodeClassRef %s/%s %s is not an %s.%s", ref.Group, ref.Kind, ref.Name, azv1.Kind, azv1.Group)
	}
	if p.opts.Kube == nil {
		return nil, fmt.Errorf("reading AKSNodeClass %s: no Kubernetes client configured", ref.Name)
	}
	nc := &azv1.AKSNodeClass{}
	if err := p.opts.Kube.Get(ctx, client.ObjectKey{Name: ref.Name}, nc); err != nil {
		return nil, fmt.Errorf("reading AKSNodeClass %s: %w", ref.Name, err)
	}
	return nc, nil
}

// instanceTypes returns fresh copies of the catalog with spot and on-demand
// offerings attached.
func (p *Provider) instanceTypes(ctx context.Context, pods int) ([]*cloudprovider.InstanceType, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	logger := log.FromContext(ctx).WithName(Name)
	if err := p.refreshLocked(ctx, logger); err != nil {
		return p.staticFallbackLocked(logger, err)
	}
	base, err := p.typesLocked(pods)
	if err != nil {
		return nil, err
	}
	return p.assembleLocked(logger, base), nil
}

// refresh brings the catalog and prices up to date for Create, which needs
// them current but not copied.
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
	if p.shapes == nil || now.Sub(p.typesFetched) >= p.opts.CatalogTTL {
		shapes, skipped, err := listShapes(ctx, p.opts.SKUs, p.opts.Location)
		switch {
		case err != nil && p.shapes == nil:
			return err
		case err != nil:
			logger.Error(err, "refreshing VM sizes; keeping the previous catalog", "age", now.Sub(p.typesFetched))
		default:
			if len(skipped) > 0 {
				logger.V(1).Info("skipped VM sizes: unknown GPU model or no Generation 2 support", "sizes", skipped)
			}
			p.shapes = make(map[string]shape, len(shapes))
			for _, s := range shapes {
				p.shapes[s.Name] = s
			}
			p.types, p.typesFetched = map[int][]*cloudprovider.InstanceType{}, now
		}
	}
	if p.pricesFetched.IsZero() || now.Sub(p.pricesFetched) >= p.opts.PriceTTL {
		p.pricesFetched = now
		if p.opts.Prices != nil {
			od, spot, err := p.opts.Prices.Prices(ctx, p.opts.Location)
			if err != nil {
				logger.Error(err, "fetching prices from the Retail Prices API; using the previous or static prices")
			} else {
				p.onDemand, p.spot = od, spot
			}
		}
	}
	return nil
}

// typesLocked builds (once per max-pods value) the instance types of the
// current shapes.
func (p *Provider) typesLocked(pods int) ([]*cloudprovider.InstanceType, error) {
	if its, ok := p.types[pods]; ok {
		return its, nil
	}
	shapes := slices.Collect(maps.Values(p.shapes))
	slices.SortFunc(shapes, func(a, b shape) int { return strings.Compare(a.Name, b.Name) })
	its, err := buildInstanceTypes(p.opts.Location, p.typesFetched.UTC().Format(time.DateOnly), pods, shapes)
	if err != nil {
		return nil, fmt.Errorf("building instance types: %w", err)
	}
	p.types[pods] = its
	return its, nil
}

// staticFallbackLocked serves the built-in catalog when Resource SKUs cannot
// be reached and nothing was fetched before.
func (p *Provider) staticFallbackLocked(logger logr.Logger, cause error) ([]*cloudprovider.InstanceType, error) {
	c, err := p.static.Load(logger)
	if err != nil {
		return nil, errors.Join(cause, err)
	}
	logger.Error(cause, "listing VM sizes failed; using the built-in catalog", "catalog", p.static.Name())
	c = c.DeepCopy()
	if p.priceSources.Update(map[PriceSource]int{PriceSourceStatic: catalog.CountOfferings(c.InstanceTypes)}) {
		logger.Info("prices in use", "api", 0, "static", catalog.CountOfferings(c.InstanceTypes), "unpriced", 0)
	}
	return c.InstanceTypes, nil
}

// staticCatalog is the built-in catalog of the location. A location without
// one uses eastus's sizes and prices with the zones renamed, which is
// logged: they are a rough guide only.
func staticCatalog(configured, location string) catalog.Static {
	return catalog.Static{
		Configured: configured, Regional: Name + "/" + location, Default: DefaultStaticCatalog,
		Defaulted: func(logger logr.Logger) {
			logger.Info("no built-in catalog for the location; static prices come from "+DefaultStaticCatalog, "location", location)
		},
		Prepare: func(c *pricing.Catalog, defaulted bool) {
			if defaulted {
				relocate(c, location)
			}
			for _, it := range c.InstanceTypes {
				it.Placement = placementCapable(it.Name)
			}
		},
	}
}

// relocate renames a catalog's zones and region label to another location's.
func relocate(c *pricing.Catalog, location string) {
	from := c.Region
	rename := func(z string) string {
		if rest, ok := strings.CutPrefix(z, from+"-"); ok {
			return zoneLabel(location, rest)
		}
		return z
	}
	for i, z := range c.Zones {
		c.Zones[i] = rename(z)
	}
	c.Region = location
	for _, it := range c.InstanceTypes {
		it.Labels[v1.LabelRegion] = location
		for i := range it.Offerings {
			it.Offerings[i].Zone = rename(it.Offerings[i].Zone)
		}
	}
}

// staticPrice is the built-in catalog's price of one pool (any zone of the
// type when the zone is not in the catalog).
func (p *Provider) staticPriceLocked(name, capacityType string) (float64, bool) {
	it, ok := p.static.Lookup(name)
	if !ok {
		return 0, false
	}
	for _, o := range it.Offerings {
		if o.CapacityType == capacityType {
			return o.PricePerHour, true
		}
	}
	return 0, false
}

// priceLocked is a pool's current price and where it came from.
func (p *Provider) priceLocked(name, capacityType string) (float64, PriceSource, bool) {
	live := p.onDemand
	if capacityType == v1.CapacityTypeSpot {
		live = p.spot
	}
	if v, ok := live[name]; ok && v > 0 {
		return v, PriceSourceAPI, true
	}
	if v, ok := p.staticPriceLocked(name, capacityType); ok && v > 0 {
		return v, PriceSourceStatic, true
	}
	return 0, "", false
}

// assembleLocked copies base and attaches spot and on-demand offerings in
// every zone of each size.
func (p *Provider) assembleLocked(logger logr.Logger, base []*cloudprovider.InstanceType) []*cloudprovider.InstanceType {
	sources := map[PriceSource]int{}
	unpriced := 0
	out := make([]*cloudprovider.InstanceType, 0, len(base))
	for _, b := range base {
		it := copyType(b)
		s := p.shapes[it.Name]
		od, odSrc, ok := p.priceLocked(it.Name, v1.CapacityTypeOnDemand)
		if !ok {
			unpriced++
			continue
		}
		spot, spotSrc, spotOK := p.priceLocked(it.Name, v1.CapacityTypeSpot)
		spotOK = spotOK && s.Spot && spot < od
		for _, z := range s.Zones {
			it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: od, Available: true})
			sources[odSrc]++
			if spotOK {
				it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, PricePerHour: spot, Available: true})
				sources[spotSrc]++
			}
		}
		out = append(out, it)
	}
	if p.priceSources.Update(sources) {
		logger.Info("prices in use", "api", sources[PriceSourceAPI], "static", sources[PriceSourceStatic], "unpriced", unpriced)
	}
	return out
}

func copyType(it *cloudprovider.InstanceType) *cloudprovider.InstanceType {
	c := &pricing.Catalog{InstanceTypes: []*cloudprovider.InstanceType{it}}
	out := c.DeepCopy().InstanceTypes[0]
	out.Placement = it.Placement
	return out
}

// Start refreshes the catalog and prices every PriceTTL and removes
// proximity placement groups Stowage made that no VM uses any more, until
// ctx is done. It implements controller-runtime's manager.Runnable.
func (p *Provider) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName(Name)
	for {
		if _, err := p.instanceTypes(ctx, DefaultMaxPods); err != nil {
			logger.Error(err, "refreshing the catalog")
		}
		if err := p.sweepPlacementGroups(ctx); err != nil {
			logger.Error(err, "removing unused proximity placement groups")
		}
		t := p.clock.NewTimer(min(p.opts.PriceTTL, placementSweepInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

// NeedLeaderElection runs Start on the leader only: it deletes placement groups.
func (p *Provider) NeedLeaderElection() bool { return true }

// Interruptions implements cloudprovider.InterruptionSource by delegating to
// Options.Interruption. Without it the channel only closes when ctx is done.
func (p *Provider) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	if p.opts.Interruption != nil {
		return p.opts.Interruption.Interruptions(ctx)
	}
	log.FromContext(ctx).WithName(Name).Info("no interruption source configured; spot evictions are not handled ahead of time")
	ch := make(chan cloudprovider.InterruptionEvent)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch, nil
}

// Catalog returns the live catalog as a pricing.Catalog with its sources, for
// `stowage catalog --cloud azure --endpoint ...`.
func (p *Provider) Catalog(ctx context.Context) (*pricing.Catalog, error) {
	its, err := p.instanceTypes(ctx, DefaultMaxPods)
	if err != nil {
		return nil, err
	}
	date := p.clock.Now().UTC().Format(time.DateOnly)
	c := &pricing.Catalog{Cloud: Name, Region: p.opts.Location, InstanceTypes: its, Zones: catalog.Zones(its)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shapes != nil {
		c.Sources = append(c.Sources, pricing.Source{What: "specs and zones", From: "Azure Resource SKUs", Date: date})
	}
	if len(p.onDemand) > 0 {
		c.Sources = append(c.Sources, pricing.Source{What: "on-demand and spot prices", From: "Azure Retail Prices API " + RetailPricesAPIVersion, Date: date})
	}
	c.Sources = append(c.Sources, p.static.FallbackSources()...)
	return c, nil
}
