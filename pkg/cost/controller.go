package cost

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/metrics"
)

// Name is the controller's name in logs.
const Name = "cost"

// DefaultInterval is how often the gauges are recomputed. Costs change only
// when machines come and go or pods move, and Prometheus typically scrapes
// every 30s, so recomputing more often would buy nothing. Reads come from the
// manager's informer cache, not the API server.
const DefaultInterval = 30 * time.Second

// Deps are the cost controller's dependencies.
type Deps struct {
	// Client reads NodeClaims, Nodes, Pods, Commitments and (when pods use
	// them) ResourceClaims and ResourceSlices; the manager's cached client
	// when nil.
	Client client.Reader
	Clock  clock.WithTicker
	// Gauges receive the results; NewCostGauges() when nil.
	Gauges *metrics.CostGauges
	// Pricer gives on-demand prices for spot and reserved machines; optional.
	Pricer OnDemandPricer
	// Model splits machine prices by resource; DefaultPriceModel when zero.
	Model    PriceModel
	Interval time.Duration
}

// Controller keeps the stowage_cost_* gauges up to date from the cluster.
type Controller struct {
	client   client.Reader
	clock    clock.WithTicker
	gauges   *metrics.CostGauges
	pricer   OnDemandPricer
	model    PriceModel
	interval time.Duration

	mu sync.Mutex
	// exported remembers the label sets set last time, so series of pools
	// that lost their last machine are deleted rather than left stale.
	exported exportedSeries
}

type exportedSeries struct {
	perHour     map[[2]string]bool
	pools       map[string]bool
	commitments map[string]bool
}

// NewController builds the cost controller.
func NewController(d Deps) *Controller {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Gauges == nil {
		d.Gauges = metrics.NewCostGauges()
	}
	if d.Model == (PriceModel{}) {
		d.Model = DefaultPriceModel
	}
	if d.Interval <= 0 {
		d.Interval = DefaultInterval
	}
	return &Controller{
		client: d.Client, clock: d.Clock, gauges: d.Gauges, pricer: d.Pricer,
		model: d.Model, interval: d.Interval,
	}
}

// Name is the controller's name in logs.
func (c *Controller) Name() string { return Name }

// Register registers the gauges on controller-runtime's metrics registry and
// adds the periodic collector to the manager. It runs on the leader only, so
// replicas never export two different views of the same cluster.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if c.client == nil {
		c.client = mgr.GetClient()
	}
	if err := metrics.Register(crmetrics.Registry, c.gauges.Collectors()...); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	if err := mgr.Add(manager.RunnableFunc(c.run)); err != nil {
		return fmt.Errorf("adding %s controller: %w", Name, err)
	}
	return nil
}

func (c *Controller) run(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName(Name)
	ctx = log.IntoContext(ctx, logger)
	ticker := c.clock.NewTicker(c.interval)
	defer ticker.Stop()
	for {
		if err := c.Reconcile(ctx); err != nil {
			// A failed pass keeps the previous values; the next tick retries.
			logger.Error(err, "computing cost gauges")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C():
		}
	}
}

// Reconcile recomputes the gauges once from the current cluster state.
func (c *Controller) Reconcile(ctx context.Context) error {
	report, err := c.Report(ctx)
	if err != nil {
		return err
	}
	for _, w := range report.Warnings {
		log.FromContext(ctx).V(1).Info("cost attribution skipped part of the cluster", "warning", w)
	}
	c.export(report)
	return nil
}

// Report reads the cluster and attributes its cost.
func (c *Controller) Report(ctx context.Context) (Report, error) {
	state, err := Read(ctx, c.client)
	if err != nil {
		return Report{}, err
	}
	state.Now = c.clock.Now()
	return Attribute(state, c.model, c.pricer), nil
}

// Read lists what Attribute needs.
func Read(ctx context.Context, r client.Reader) (State, error) {
	var claims v1.NodeClaimList
	if err := r.List(ctx, &claims); err != nil {
		return State{}, fmt.Errorf("listing nodeclaims: %w", err)
	}
	var nodes corev1.NodeList
	if err := r.List(ctx, &nodes); err != nil {
		return State{}, fmt.Errorf("listing nodes: %w", err)
	}
	var pods corev1.PodList
	if err := r.List(ctx, &pods); err != nil {
		return State{}, fmt.Errorf("listing pods: %w", err)
	}
	var commitments v1.CommitmentList
	if err := r.List(ctx, &commitments); err != nil && !meta.IsNoMatchError(err) {
		// A cluster whose CRDs predate Commitments has none.
		return State{}, fmt.Errorf("listing commitments: %w", err)
	}
	s := State{NodeClaims: claims.Items, Nodes: nodes.Items, Pods: pods.Items, Commitments: commitments.Items}
	if err := readDRA(ctx, r, &s); err != nil {
		return State{}, err
	}
	return s, nil
}

// readDRA lists the ResourceClaims and ResourceSlices that say which GPUs
// pods hold through DRA, only when some pod uses claims, so a cluster without
// the DRA API is never asked for it.
func readDRA(ctx context.Context, r client.Reader, s *State) error {
	if !slices.ContainsFunc(s.Pods, func(p corev1.Pod) bool { return len(p.Spec.ResourceClaims) > 0 }) {
		return nil
	}
	var claims resourceapi.ResourceClaimList
	if err := r.List(ctx, &claims); err != nil {
		if meta.IsNoMatchError(err) {
			return nil
		}
		return fmt.Errorf("listing resourceclaims: %w", err)
	}
	var resourceSlices resourceapi.ResourceSliceList
	if err := r.List(ctx, &resourceSlices); err != nil {
		if meta.IsNoMatchError(err) {
			return nil
		}
		return fmt.Errorf("listing resourceslices: %w", err)
	}
	s.ResourceClaims, s.ResourceSlices = claims.Items, resourceSlices.Items
	return nil
}

func (c *Controller) export(r Report) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := exportedSeries{perHour: map[[2]string]bool{}, pools: map[string]bool{}}
	for _, p := range r.NodePools {
		seen.pools[p.NodePool] = true
		c.gauges.OnDemandEquivalentPerHour.WithLabelValues(p.NodePool).Set(p.OnDemandEquivalent)
		c.gauges.IdleGPUPerHour.WithLabelValues(p.NodePool).Set(p.IdleGPU)
		for ct, v := range p.ByCapacityType {
			seen.perHour[[2]string{p.NodePool, ct}] = true
			c.gauges.PerHour.WithLabelValues(p.NodePool, ct).Set(v)
		}
	}
	seen.commitments = map[string]bool{}
	for _, u := range r.Commitments {
		seen.commitments[u.Name] = true
		c.gauges.CommitmentUtilization.WithLabelValues(u.Name).Set(u.Utilization())
		c.gauges.CommitmentSavingsPerHour.WithLabelValues(u.Name).Set(u.Savings)
	}
	for name := range c.exported.commitments {
		if !seen.commitments[name] {
			c.gauges.CommitmentUtilization.DeleteLabelValues(name)
			c.gauges.CommitmentSavingsPerHour.DeleteLabelValues(name)
		}
	}
	for k := range c.exported.perHour {
		if !seen.perHour[k] {
			c.gauges.PerHour.DeleteLabelValues(k[0], k[1])
		}
	}
	for p := range c.exported.pools {
		if !seen.pools[p] {
			c.gauges.OnDemandEquivalentPerHour.DeleteLabelValues(p)
			c.gauges.IdleGPUPerHour.DeleteLabelValues(p)
		}
	}
	c.exported = seen
}
