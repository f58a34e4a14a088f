// Package fake is a cloud that runs anywhere a Kubernetes API server runs.
// It sells the instance types of a built-in price catalog, keeps every
// "instance" as a ConfigMap in the cluster (so a restarted controller finds
// it again), and after a launch latency registers a kwok-managed Node for it,
// acting as the kubelet, so pods really schedule and run. Tests and the demo
// inject capacity errors, price changes and interruptions.
package fake

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pricing"
)

const (
	// Name is the provider's name.
	Name = "fake"
	// DefaultCatalog is the price catalog used when Options.Catalog is nil.
	DefaultCatalog = "aws/us-east-1"
	// DefaultLaunchLatency is a realistic-feeling delay for demos; tests use 0.
	DefaultLaunchLatency = 2 * time.Second
	// DefaultClusterName tags instances when Options.ClusterName is empty.
	DefaultClusterName = "stowage"
	// DefaultReservedPrice is the marginal hourly price of reserved capacity:
	// already paid for, but not free, so the solver still packs it tightly.
	DefaultReservedPrice = 0.0001
)

// Options configure the fake cloud.
type Options struct {
	// Client reaches the cluster where instances are recorded and Nodes registered.
	Client client.Client
	// APIReader reads instance records and Nodes. Default: Client. Pass the
	// manager's uncached reader (mgr.GetAPIReader()) so the idempotency check
	// never sees a stale cache and no cluster-wide ConfigMap informer starts.
	APIReader client.Reader
	// Catalog is what the cloud sells. Default: pricing.Load(DefaultCatalog).
	Catalog *pricing.Catalog
	// ClusterName tags every instance, so clusters sharing an API server (or
	// a stale test) never see each other's machines. Default DefaultClusterName.
	ClusterName string
	// LaunchLatency is the time from Create to the Node appearing. Zero
	// registers the Node before Create returns, which keeps tests
	// deterministic; the demo uses DefaultLaunchLatency.
	LaunchLatency time.Duration
	// Clock drives launch latency and the unavailable-offerings cache. Default: the real clock.
	Clock clock.Clock
	// Reservations are capacity reservations the cluster owns.
	Reservations []Reservation
	// Unavailable is the shared cache of offerings that recently had no
	// capacity. Default: a new cache with cloudprovider.DefaultUnavailableTTL.
	Unavailable *cloudprovider.UnavailableOfferings
	// Image is what new machines boot. Default: ImageID. SetImage changes
	// it, and machines running another image then report drift.
	Image string
	// Faults are random capacity errors and lost launch responses.
	Faults Faults
	// ControlInterval is how often Start reads interruptions and prices
	// requested from other processes (see RequestInterruption). Default
	// DefaultControlInterval.
	ControlInterval time.Duration
}

// Reservation is a block of reserved capacity for one instance type in one zone.
type Reservation struct {
	ID           string
	InstanceType string
	Zone         string
	// Count is how many machines the reservation holds in total.
	Count int
	// PricePerHour is the marginal price; zero means DefaultReservedPrice.
	PricePerHour float64
}

// Cloud is the fake cloud. It implements cloudprovider.CloudProvider and
// cloudprovider.InterruptionSource, and is safe for concurrent use.
type Cloud struct {
	client       client.Client
	reader       client.Reader
	catalog      *pricing.Catalog
	types        map[string]*cloudprovider.InstanceType
	cluster      string
	latency      time.Duration
	clock        clock.Clock
	reservations []Reservation
	unavailable  *cloudprovider.UnavailableOfferings

	// launchMu serialises the capacity check and the instance write, so two
	// concurrent launches cannot both take a reservation's last slot.
	launchMu sync.Mutex
	// nodeMu orders Node registration against Delete, so a delayed
	// registration never brings back the Node of a deleted instance.
	nodeMu sync.Mutex

	mu       sync.Mutex
	image    string
	failing  map[cloudprovider.OfferingID]bool
	limits   map[cloudprovider.OfferingID]int // launches left per pool, when limited
	prices   map[cloudprovider.OfferingID]float64
	nsReady  bool
	pending  map[string]chan struct{} // instance ID -> cancels its delayed registration
	stopping chan struct{}
	wg       sync.WaitGroup

	events chan cloudprovider.InterruptionEvent

	faults          Faults
	rand            *rand.Rand // guarded by mu
	controlInterval time.Duration

	// registered, when set by tests, receives the ID of each Node registered
	// by a delayed registration.
	registered chan<- string
}

var (
	_ cloudprovider.CloudProvider      = (*Cloud)(nil)
	_ cloudprovider.InterruptionSource = (*Cloud)(nil)
	_ cloudprovider.DriftChecker       = (*Cloud)(nil)
)

// New returns a fake cloud. It validates the options and the reservations
// against the catalog.
func New(opts Options) (*Cloud, error) {
	if opts.Client == nil {
		return nil, errors.New("fake cloud: Options.Client is required")
	}
	if opts.Catalog == nil {
		cat, err := pricing.Load(DefaultCatalog)
		if err != nil {
			return nil, fmt.Errorf("fake cloud: loading catalog %s: %w", DefaultCatalog, err)
		}
		opts.Catalog = cat
	}
	if opts.ClusterName == "" {
		opts.ClusterName = DefaultClusterName
	}
	if errs := validation.IsValidLabelValue(opts.ClusterName); len(errs) > 0 {
		return nil, fmt.Errorf("fake cloud: Options.ClusterName %q: %s", opts.ClusterName, strings.Join(errs, "; "))
	}
	if opts.LaunchLatency < 0 {
		return nil, fmt.Errorf("fake cloud: Options.LaunchLatency %s is negative", opts.LaunchLatency)
	}
	if opts.APIReader == nil {
		opts.APIReader = opts.Client
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Unavailable == nil {
		opts.Unavailable = cloudprovider.NewUnavailableOfferings(opts.Clock, cloudprovider.DefaultUnavailableTTL)
	}
	if opts.Image == "" {
		opts.Image = ImageID
	}
	if err := opts.Faults.validate(); err != nil {
		return nil, err
	}
	if opts.Faults.Seed == 0 {
		opts.Faults.Seed = opts.Clock.Now().UnixNano()
	}
	if opts.ControlInterval <= 0 {
		opts.ControlInterval = DefaultControlInterval
	}
	c := &Cloud{
		client:      opts.Client,
		reader:      opts.APIReader,
		catalog:     opts.Catalog,
		types:       map[string]*cloudprovider.InstanceType{},
		cluster:     opts.ClusterName,
		latency:     opts.LaunchLatency,
		clock:       opts.Clock,
		unavailable: opts.Unavailable,
		image:       opts.Image,
		failing:     map[cloudprovider.OfferingID]bool{},
		limits:      map[cloudprovider.OfferingID]int{},
		prices:      map[cloudprovider.OfferingID]float64{},
		pending:     map[string]chan struct{}{},
		stopping:    make(chan struct{}),
		events:      make(chan cloudprovider.InterruptionEvent, 1024),

		faults:          opts.Faults,
		rand:            rand.New(rand.NewPCG(uint64(opts.Faults.Seed), 0)), //nolint:gosec // fault injection, not security
		controlInterval: opts.ControlInterval,
	}
	for i, it := range opts.Catalog.InstanceTypes {
		if it == nil || it.Name == "" {
			return nil, fmt.Errorf("fake cloud: catalog %s/%s: instance type %d has no name", opts.Catalog.Cloud, opts.Catalog.Region, i)
		}
		c.types[it.Name] = it
	}
	seen := map[string]bool{}
	for i, r := range opts.Reservations {
		where := fmt.Sprintf("fake cloud: Options.Reservations[%d] (%s)", i, r.ID)
		switch {
		case r.ID == "":
			return nil, fmt.Errorf("%s: id is empty", where)
		case seen[r.ID]:
			return nil, fmt.Errorf("%s: duplicate id", where)
		case r.Count <= 0:
			return nil, fmt.Errorf("%s: count %d must be positive", where, r.Count)
		case r.PricePerHour < 0:
			return nil, fmt.Errorf("%s: negative price", where)
		}
		if _, ok := c.types[r.InstanceType]; !ok {
			return nil, fmt.Errorf("%s: instance type %q is not in catalog %s/%s", where, r.InstanceType, opts.Catalog.Cloud, opts.Catalog.Region)
		}
		if !slices.Contains(opts.Catalog.Zones, r.Zone) {
			return nil, fmt.Errorf("%s: zone %q is not one of %v", where, r.Zone, opts.Catalog.Zones)
		}
		if r.PricePerHour == 0 {
			r.PricePerHour = DefaultReservedPrice
		}
		seen[r.ID] = true
		c.reservations = append(c.reservations, r)
	}
	return c, nil
}

// Name implements cloudprovider.CloudProvider.
func (c *Cloud) Name() string { return Name }

// Unavailable returns the cache of offerings that recently had no capacity.
func (c *Cloud) Unavailable() *cloudprovider.UnavailableOfferings { return c.unavailable }

// InstanceTypes returns every type in the catalog with current prices, the
// reservations as reserved offerings, and offerings in the unavailable cache
// marked unavailable. Requirement filtering is the solver's job. Injected
// capacity errors are deliberately not shown: like a real cloud's, they
// surface at launch.
func (c *Cloud) InstanceTypes(ctx context.Context, _ *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	used, err := c.reservationUsage(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	out := make([]*cloudprovider.InstanceType, 0, len(c.catalog.InstanceTypes))
	for _, src := range c.catalog.InstanceTypes {
		it := cloneInstanceType(src)
		it.Placement = placeable(it)
		for i := range it.Offerings {
			if p, ok := c.prices[it.Offerings[i].ID(it.Name)]; ok {
				it.Offerings[i].PricePerHour = p
			}
		}
		for _, r := range c.reservations {
			if r.InstanceType != it.Name {
				continue
			}
			left := max(r.Count-used[r.ID], 0)
			price := r.PricePerHour
			if p, ok := c.prices[cloudprovider.OfferingID{InstanceType: it.Name, Zone: r.Zone, CapacityType: v1.CapacityTypeReserved}]; ok {
				price = p
			}
			it.Offerings = append(it.Offerings, cloudprovider.Offering{
				Zone: r.Zone, CapacityType: v1.CapacityTypeReserved, PricePerHour: price,
				Available: left > 0, ReservationID: r.ID, ReservedCount: left,
			})
		}
		out = append(out, it)
	}
	c.mu.Unlock()
	c.unavailable.Apply(out)
	return out, nil
}

// Create launches an instance for the claim: the first offering in
// spec.offerings that has capacity. A retried Create for the same claim
// returns the instance the first call made.
func (c *Cloud) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	if claim == nil {
		return nil, errors.New("fake cloud: create: nil nodeclaim")
	}
	if len(claim.Spec.Offerings) == 0 {
		return nil, fmt.Errorf("fake cloud: nodeclaim %s: spec.offerings is empty", claim.Name)
	}
	token := cloudprovider.ClientToken(claim.Name, string(claim.UID))
	id := instanceID(c.cluster, token)
	if inst, err := c.getInstance(ctx, id); err == nil {
		if inst.ClientToken != token {
			return nil, fmt.Errorf("fake cloud: nodeclaim %s: instance %s belongs to client token %q", claim.Name, id, inst.ClientToken)
		}
		// A retry after the first call's registration failed: the machine
		// runs, and its kubelet registers.
		if err := c.ensureRegistered(ctx, inst); err != nil {
			return nil, err
		}
		return c.launched(claim, inst), nil
	} else if !cloudprovider.IsNotFound(err) {
		return nil, fmt.Errorf("fake cloud: launching nodeclaim %s: %w", claim.Name, err)
	}
	if err := c.ensureNamespace(ctx); err != nil {
		return nil, err
	}

	c.launchMu.Lock()
	inst, err := c.launch(ctx, claim, id, token)
	c.launchMu.Unlock()
	if err != nil {
		return nil, err
	}
	log.FromContext(ctx).V(1).Info("launched fake instance", "nodeclaim", claim.Name, "instance", inst.ID,
		"offering", inst.offeringID().String(), "pricePerHour", inst.PricePerHour)
	if err := c.scheduleRegistration(ctx, inst); err != nil {
		return nil, err
	}
	if c.roll(c.faults.LostLaunchRate) {
		// The machine exists and boots; only the caller does not know.
		log.FromContext(ctx).Info("fake cloud injected a lost launch response", "nodeclaim", claim.Name, "instance", inst.ID)
		return nil, ErrLaunchResponseLost
	}
	return c.launched(claim, inst), nil
}

// launch picks an offering and records the instance. Callers hold launchMu.
func (c *Cloud) launch(ctx context.Context, claim *v1.NodeClaim, id, token string) (*instance, error) {
	used, err := c.reservationUsage(ctx)
	if err != nil {
		return nil, err
	}
	var (
		ice     []cloudprovider.OfferingID
		unknown []string
		zone    string
	)
	if claim.Spec.Placement != nil {
		if zone, err = c.placementZone(ctx, claim.Spec.Placement.Group); err != nil {
			return nil, err
		}
	}
	for i, choice := range claim.Spec.Offerings {
		oid := cloudprovider.ChoiceID(choice)
		it, ok := c.types[choice.InstanceType]
		if !ok {
			unknown = append(unknown, fmt.Sprintf("spec.offerings[%d]: instance type %q is not in catalog %s/%s",
				i, choice.InstanceType, c.catalog.Cloud, c.catalog.Region))
			continue
		}
		if why := placementRefusal(claim, it, choice, zone); why != "" {
			unknown = append(unknown, fmt.Sprintf("spec.offerings[%d]: %s", i, why))
			continue
		}
		price, reservation, ok := c.offer(it, choice, used)
		if !ok || c.isFailing(oid) || c.unavailable.IsUnavailable(oid) {
			ice = append(ice, oid)
			continue
		}
		if c.roll(c.faults.CapacityErrorRate) {
			log.FromContext(ctx).Info("fake cloud injected a capacity error", "nodeclaim", claim.Name, "offering", oid.String())
			ice = append(ice, oid)
			continue
		}
		inst := newInstance(c.cluster, id, token, claim, it, choice, price, reservation, c.catalog.Region, c.clock.Now())
		inst.ImageID = c.currentImage()
		// What the device plugin advertises, as the solver planned it.
		inst.Capacity, inst.Allocatable = scheduling.EffectiveCapacity(it, claim.Spec.GPU)
		if err := c.createInstance(ctx, inst); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Another launch for the same claim won the race.
				return c.getInstance(ctx, id)
			}
			return nil, fmt.Errorf("fake cloud: launching nodeclaim %s: %w", claim.Name, err)
		}
		c.took(oid)
		return inst, nil
	}
	if len(ice) > 0 {
		c.unavailable.MarkUnavailable(ice...)
		cause := fmt.Errorf("nodeclaim %s: no offering had capacity", claim.Name)
		if len(unknown) > 0 {
			cause = fmt.Errorf("%w (%s)", cause, strings.Join(unknown, "; "))
		}
		return nil, cloudprovider.NewInsufficientCapacityError(cause, ice...)
	}
	return nil, fmt.Errorf("fake cloud: nodeclaim %s: no offering can be launched: %s", claim.Name, strings.Join(unknown, "; "))
}

// offer says whether the cloud sells the choice and at what price; for a
// reserved choice, which reservation it comes from.
func (c *Cloud) offer(it *cloudprovider.InstanceType, choice v1.OfferingChoice, used map[string]int) (float64, string, bool) {
	if choice.CapacityType == v1.CapacityTypeReserved {
		for _, r := range c.reservations {
			if r.InstanceType == it.Name && r.Zone == choice.Zone &&
				(choice.ReservationID == "" || choice.ReservationID == r.ID) && used[r.ID] < r.Count {
				return c.price(cloudprovider.ChoiceID(choice), r.PricePerHour), r.ID, true
			}
		}
		return 0, "", false
	}
	for _, o := range it.Offerings {
		if o.Zone == choice.Zone && o.CapacityType == choice.CapacityType {
			return c.price(o.ID(it.Name), o.PricePerHour), "", true
		}
	}
	return 0, "", false
}

func (c *Cloud) price(id cloudprovider.OfferingID, catalog float64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.prices[id]; ok {
		return p
	}
	return catalog
}

func (c *Cloud) isFailing(id cloudprovider.OfferingID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	left, limited := c.limits[id]
	return c.failing[id] || (limited && left == 0)
}

// took counts a launch against the pool's limit, if it has one.
func (c *Cloud) took(id cloudprovider.OfferingID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if left, limited := c.limits[id]; limited && left > 0 {
		c.limits[id] = left - 1
	}
}

// launched is the claim as Create returns it: a copy with status filled in.
func (c *Cloud) launched(claim *v1.NodeClaim, inst *instance) *v1.NodeClaim {
	out := claim.DeepCopy()
	inst.fillStatus(&out.Status)
	return out
}

// Delete terminates the claim's instance and removes its Node.
func (c *Cloud) Delete(ctx context.Context, claim *v1.NodeClaim) error {
	if claim == nil {
		return errors.New("fake cloud: delete: nil nodeclaim")
	}
	id := instanceID(c.cluster, cloudprovider.ClientToken(claim.Name, string(claim.UID)))
	if claim.Status.ProviderID != "" {
		var err error
		if id, err = parseProviderID(claim.Status.ProviderID); err != nil {
			return fmt.Errorf("fake cloud: deleting nodeclaim %s: %w", claim.Name, err)
		}
	}
	if err := c.deleteInstance(ctx, id); cloudprovider.IsNotFound(err) && claim.Status.ProviderID != "" {
		return cloudprovider.NewNotFoundError(claim.Status.ProviderID)
	} else if err != nil {
		return fmt.Errorf("fake cloud: deleting nodeclaim %s: %w", claim.Name, err)
	}
	log.FromContext(ctx).V(1).Info("terminated fake instance", "nodeclaim", claim.Name, "instance", id)
	return nil
}

func (c *Cloud) deleteInstance(ctx context.Context, id string) error {
	inst, err := c.getInstance(ctx, id)
	if err != nil {
		return err
	}
	c.cancelRegistration(id)
	c.nodeMu.Lock()
	defer c.nodeMu.Unlock()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: inst.ID}}
	if err := c.client.Delete(ctx, node); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting node %s: %w", inst.ID, err)
	}
	if err := c.deleteSlice(ctx, inst.ID); err != nil {
		return err
	}
	if err := c.client.Delete(ctx, inst.configMap()); err != nil {
		if apierrors.IsNotFound(err) {
			return cloudprovider.NewNotFoundError(id)
		}
		return fmt.Errorf("deleting instance record %s/%s: %w", Namespace, inst.ID, err)
	}
	return nil
}

// Get returns the instance with the given providerID as a NodeClaim.
func (c *Cloud) Get(ctx context.Context, providerID string) (*v1.NodeClaim, error) {
	id, err := parseProviderID(providerID)
	if err != nil {
		return nil, fmt.Errorf("fake cloud: get: %w", err)
	}
	inst, err := c.getInstance(ctx, id)
	if cloudprovider.IsNotFound(err) {
		return nil, cloudprovider.NewNotFoundError(providerID)
	}
	if err != nil {
		return nil, fmt.Errorf("fake cloud: get %s: %w", providerID, err)
	}
	return inst.nodeClaim(), nil
}

// List returns every instance of this cluster as a NodeClaim.
func (c *Cloud) List(ctx context.Context) ([]*v1.NodeClaim, error) {
	insts, err := c.listInstances(ctx)
	if err != nil {
		return nil, fmt.Errorf("fake cloud: list: %w", err)
	}
	out := make([]*v1.NodeClaim, 0, len(insts))
	for _, inst := range insts {
		out = append(out, inst.nodeClaim())
	}
	return out, nil
}

// reservationUsage counts live instances per reservation ID.
func (c *Cloud) reservationUsage(ctx context.Context) (map[string]int, error) {
	used := map[string]int{}
	if len(c.reservations) == 0 {
		return used, nil
	}
	insts, err := c.listInstances(ctx)
	if err != nil {
		return nil, fmt.Errorf("fake cloud: counting reserved instances: %w", err)
	}
	for _, inst := range insts {
		if inst.ReservationID != "" {
			used[inst.ReservationID]++
		}
	}
	return used, nil
}
