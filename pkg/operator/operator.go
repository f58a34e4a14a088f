// Package operator wires Stowage together: a controller-runtime manager with
// leader election, health probes and a metrics endpoint, the cloud provider
// chosen by name, the shared cluster state, and every controller.
package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/commitments"
	"github.com/stowage-k8s/stowage/pkg/controllers/disruption"
	"github.com/stowage-k8s/stowage/pkg/controllers/interruption"
	nodeclaimdisruption "github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/disruption"
	"github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/garbagecollection"
	"github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/lifecycle"
	"github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/podevents"
	poolcounter "github.com/stowage-k8s/stowage/pkg/controllers/nodepool/counter"
	poolvalidation "github.com/stowage-k8s/stowage/pkg/controllers/nodepool/validation"
	"github.com/stowage-k8s/stowage/pkg/controllers/provisioning"
	"github.com/stowage-k8s/stowage/pkg/controllers/provisioningrequest"
	"github.com/stowage-k8s/stowage/pkg/controllers/termination"
	"github.com/stowage-k8s/stowage/pkg/cost"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// LeaderElectionID names the lease replicas compete for.
const LeaderElectionID = "stowage-leader-election"

// ProviderDeps are what a provider constructor gets.
type ProviderDeps struct {
	// Client reads straight from the API server, so a provider that keeps
	// its records in the cluster (the fake) always reads its own writes.
	Client      client.Client
	Clock       clock.Clock
	ClusterName string
}

// ProviderFactory builds a cloud provider. Providers register one by name
// with WithProvider, from cmd/, so the core never imports a provider.
type ProviderFactory func(ctx context.Context, deps ProviderDeps) (cloudprovider.CloudProvider, error)

// Controller is what every Stowage controller package exposes.
type Controller interface {
	Name() string
	Register(ctx context.Context, mgr manager.Manager) error
}

// Operator is a configured, not yet started, Stowage.
type Operator struct {
	// Manager runs the controllers; tests and the demo may read its client.
	Manager manager.Manager
	// CloudProvider is the provider chosen by Options.CloudProvider.
	CloudProvider cloudprovider.CloudProvider
	// Cluster is the shared in-memory cluster view.
	Cluster *state.Cluster
}

type config struct {
	providers   map[string]ProviderFactory
	solver      provisioning.Solver
	pricer      cost.OnDemandPricer
	clock       clock.WithTicker
	extra       []Controller
	skipNameVal bool
}

// Option customizes New.
type Option func(*config)

// WithProvider makes a provider available under name.
func WithProvider(name string, f ProviderFactory) Option {
	return func(c *config) { c.providers[name] = f }
}

// WithSolver replaces the planner provisioning calls (default solver.Solve).
func WithSolver(s provisioning.Solver) Option { return func(c *config) { c.solver = s } }

// WithOnDemandPricer gives the cost collector on-demand prices, so spot and
// reserved machines can be shown against their on-demand equivalent.
func WithOnDemandPricer(p cost.OnDemandPricer) Option { return func(c *config) { c.pricer = p } }

// WithClock replaces the real clock, for tests.
func WithClock(clk clock.WithTicker) Option { return func(c *config) { c.clock = clk } }

// WithController registers an additional controller, e.g. one a provider brings.
func WithController(ctrl Controller) Option {
	return func(c *config) { c.extra = append(c.extra, ctrl) }
}

// WithSkipNameValidation lets one process build several operators (tests,
// the demo after a restart); controller names must otherwise be unique.
func WithSkipNameValidation() Option { return func(c *config) { c.skipNameVal = true } }

// New builds the manager, the provider and every controller. Nothing runs
// until Start.
func New(ctx context.Context, restConfig *rest.Config, o Options, opts ...Option) (*Operator, error) {
	cfg := &config{providers: map[string]ProviderFactory{}, clock: clock.RealClock{}}
	for _, opt := range opts {
		opt(cfg)
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	factory, ok := cfg.providers[o.CloudProvider]
	if !ok {
		return nil, fmt.Errorf("--cloud-provider %q is not available; available: %s", o.CloudProvider, strings.Join(names(cfg.providers), ", "))
	}

	scheme, err := NewScheme()
	if err != nil {
		return nil, err
	}
	metrics := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		// A self-signed certificate unless one is mounted; callers are
		// checked with TokenReview and SubjectAccessReview (GET /metrics).
		metrics.SecureServing = true
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
	}
	mgr, err := manager.New(restConfig, manager.Options{
		Scheme:  scheme,
		Metrics: metrics,
		// managedFields are often the largest part of a cached object and
		// nothing here reads them; every Get and List deep-copies them.
		Cache:                         cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
		HealthProbeBindAddress:        o.HealthProbeAddr,
		PprofBindAddress:              o.PprofAddr,
		LeaderElection:                o.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       leaderElectionNamespace(o),
		LeaderElectionReleaseOnCancel: true,
		LeaseDuration:                 &o.LeaseDuration,
		RenewDeadline:                 &o.RenewDeadline,
		RetryPeriod:                   &o.RetryPeriod,
		GracefulShutdownTimeout:       &o.GracefulShutdownTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}

	direct, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating API client: %w", err)
	}
	provider, err := factory(ctx, ProviderDeps{Client: direct, Clock: cfg.clock, ClusterName: o.ClusterName})
	if err != nil {
		return nil, fmt.Errorf("creating cloud provider %s: %w", o.CloudProvider, err)
	}
	if r, ok := provider.(manager.Runnable); ok {
		// Providers with background work (price refresh, the fake kubelet) run with the manager.
		if err := mgr.Add(r); err != nil {
			return nil, fmt.Errorf("adding cloud provider %s to the manager: %w", o.CloudProvider, err)
		}
	}

	cluster := state.NewCluster(cfg.clock)
	if err := cluster.Register(ctx, mgr.GetCache()); err != nil {
		return nil, fmt.Errorf("registering cluster state: %w", err)
	}
	if err := index.Register(ctx, mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	recorder := mgr.GetEventRecorder("stowage")
	gangSources, _ := scheduling.ParseGangSources(o.GangSources) // checked by Validate
	// Provisioning and disruption price on-demand offerings with the
	// cluster's Commitments, at their marginal cost to the bill.
	priced := commitments.NewPricer(provider, mgr.GetClient(), cfg.clock)
	// ProvisioningRequests are planned in provisioning's passes; each side
	// needs the other, so the request controller triggers through prov.
	var prov *provisioning.Controller
	provreqs := provisioningrequest.NewController(provisioningrequest.Deps{
		Client: mgr.GetClient(), Cluster: cluster, Clock: cfg.clock, Recorder: recorder,
		Provisioner: triggerFunc(func() { prov.Trigger() }),
		Options:     provisioningrequest.Options{SkipNameValidation: cfg.skipNameVal},
	})
	prov = provisioning.NewController(provisioning.Deps{
		Client:        mgr.GetClient(),
		Cluster:       cluster,
		CloudProvider: priced,
		Solver:        cfg.solver,
		Clock:         cfg.clock,
		Recorder:      recorder,
		Options: provisioning.Options{
			BatchIdleDuration:  o.BatchIdleDuration,
			BatchMaxDuration:   o.BatchMaxDuration,
			SkipNameValidation: cfg.skipNameVal,
			GangSources:        gangSources,
		},
		Demands: provreqs,
	})
	controllers := []Controller{
		prov,
		provreqs,
		lifecycle.NewController(lifecycle.Deps{
			Client: mgr.GetClient(), CloudProvider: provider, Clock: cfg.clock, Recorder: recorder, Nominations: cluster,
			Options: lifecycle.Options{SkipNameValidation: cfg.skipNameVal},
		}),
		garbagecollection.NewController(garbagecollection.Deps{
			Client: mgr.GetClient(), CloudProvider: provider, Clock: cfg.clock, Recorder: recorder,
		}),
		termination.NewController(termination.Deps{
			Client: mgr.GetClient(), CloudProvider: provider, Clock: cfg.clock, Recorder: recorder,
			Options: termination.Options{SkipNameValidation: cfg.skipNameVal},
		}),
		// The conditions disruption acts on: Drifted, Expired, Consolidatable.
		podevents.NewController(podevents.Deps{
			Client: mgr.GetClient(), Clock: cfg.clock, Options: podevents.Options{SkipNameValidation: cfg.skipNameVal},
		}),
		nodeclaimdisruption.NewController(nodeclaimdisruption.Deps{
			Client: mgr.GetClient(), CloudProvider: provider, Clock: cfg.clock,
			Options: nodeclaimdisruption.Options{SkipNameValidation: cfg.skipNameVal},
		}),
		// Reports the pools provisioning and disruption skip as invalid.
		poolvalidation.NewController(poolvalidation.Deps{
			Client: mgr.GetClient(), Clock: cfg.clock, Recorder: recorder,
			Options: poolvalidation.Options{SkipNameValidation: cfg.skipNameVal},
		}),
		poolcounter.NewController(poolcounter.Deps{
			Client: mgr.GetClient(), Clock: cfg.clock, Options: poolcounter.Options{SkipNameValidation: cfg.skipNameVal},
		}),
	}
	controllers = append(controllers, cost.NewController(cost.Deps{Clock: cfg.clock, Pricer: cfg.pricer, Interval: o.CostInterval}))
	// Disruption and interruption plan replacements with the same solver as
	// provisioning, so a what-if never disagrees with a real decision.
	solve := cfg.solver
	if solve == nil {
		solve = provisioning.SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) {
			return solver.Solve(ctx, s)
		})
	}
	if o.Disruption {
		controllers = append(controllers, disruption.NewController(disruption.Deps{
			Client: mgr.GetClient(), Cluster: cluster, CloudProvider: priced, Solver: solve, Clock: cfg.clock, Recorder: recorder,
			Options: disruption.Options{GangSources: gangSources},
		}))
	}
	if src, ok := provider.(cloudprovider.InterruptionSource); ok && o.Interruption {
		controllers = append(controllers, interruption.NewController(interruption.Deps{
			Client: mgr.GetClient(), Source: src, CloudProvider: provider, Solver: solve, Clock: cfg.clock, Recorder: recorder,
			Options: interruption.Options{GangSources: gangSources},
		}))
	}
	controllers = append(controllers, cfg.extra...)
	for _, c := range controllers {
		if err := c.Register(ctx, mgr); err != nil {
			return nil, fmt.Errorf("registering controller %s: %w", c.Name(), err)
		}
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding healthz check: %w", err)
	}
	// Ready once the informers feeding decisions have synced: a replica that
	// would decide on a partial view is not ready.
	if err := mgr.AddReadyzCheck("cluster-state", func(*http.Request) error {
		if !cluster.Synced() {
			return errors.New("cluster state has not synced")
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("adding readyz check: %w", err)
	}
	return &Operator{Manager: mgr, CloudProvider: provider, Cluster: cluster}, nil
}

// Start runs the operator until ctx ends, then shuts down gracefully.
func (o *Operator) Start(ctx context.Context) error {
	if err := o.Manager.Start(ctx); err != nil {
		return fmt.Errorf("running manager: %w", err)
	}
	return nil
}

// NewScheme knows the core Kubernetes types and stowage.dev/v1.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding client-go types to scheme: %w", err)
	}
	if err := v1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding stowage.dev/v1 to scheme: %w", err)
	}
	if err := provreqv1.AddToScheme(s); err != nil {
		return nil, fmt.Errorf("adding autoscaling.x-k8s.io/v1 to scheme: %w", err)
	}
	return s, nil
}

// serviceAccountNamespace is where a pod finds its own namespace.
const serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func leaderElectionNamespace(o Options) string {
	if o.LeaderElectionNamespace != "" {
		return o.LeaderElectionNamespace
	}
	if b, err := os.ReadFile(serviceAccountNamespace); err == nil {
		if ns := strings.TrimSpace(string(b)); ns != "" {
			return ns
		}
	}
	return "default"
}

// triggerFunc adapts a function to provisioningrequest.Trigger.
type triggerFunc func()

func (f triggerFunc) Trigger() { f() }

func names(m map[string]ProviderFactory) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
