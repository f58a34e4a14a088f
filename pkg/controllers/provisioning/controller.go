// Package provisioning turns pods the kube-scheduler could not place into
// NodeClaims: it batches unschedulable pods, builds a solver.Snapshot from the
// cluster state and each NodePool's instance types, asks the solver for the
// cheapest plan, and records each machine to buy as a NodeClaim before any
// cloud call is made.
package provisioning

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
)

// Name is the controller's name in logs and metrics.
const Name = "provisioning"

// Defaults for Options.
const (
	DefaultBatchIdleDuration = time.Second
	DefaultBatchMaxDuration  = 10 * time.Second
	DefaultResyncInterval    = 10 * time.Second
)

// Solver plans pods onto existing and new nodes; solver.Solve is the default.
type Solver interface {
	Solve(ctx context.Context, snapshot *solver.Snapshot) (*solver.Plan, error)
}

// SolverFunc adapts a function to Solver.
type SolverFunc func(ctx context.Context, snapshot *solver.Snapshot) (*solver.Plan, error)

// Solve calls f.
func (f SolverFunc) Solve(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) {
	return f(ctx, s)
}

// InstanceTyper is the part of the cloud provider provisioning uses.
type InstanceTyper interface {
	InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error)
}

var _ InstanceTyper = (cloudprovider.CloudProvider)(nil)

// Deps are the provisioner's dependencies.
type Deps struct {
	// Client reads DaemonSets and creates NodeClaims.
	Client client.Client
	// Cluster is the shared cluster view; the operator feeds it.
	Cluster       *state.Cluster
	CloudProvider InstanceTyper
	// Solver defaults to solver.Solve.
	Solver   Solver
	Clock    clock.WithTicker
	Recorder events.EventRecorder
	Options  Options
	// Demands, when set, supplies pod sets that do not exist yet
	// (ProvisioningRequests) to plan beside the pending pods.
	Demands DemandSource
}

// Options tune the provisioner.
type Options struct {
	// BatchIdleDuration closes a batch once no new pending pod arrived for this long.
	BatchIdleDuration time.Duration
	// BatchMaxDuration closes a batch this long after it opened, however busy.
	BatchMaxDuration time.Duration
	// ResyncInterval re-runs a pass while pods stay unschedulable, e.g. after
	// a nomination expired or a claim failed to launch.
	ResyncInterval time.Duration
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
	// GangSources are the workload kinds whose pods are planned as gangs
	// beyond those that declare one (Stowage's key, Kueue's pod groups).
	GangSources map[scheduling.GangSource]bool
}

// Controller watches unschedulable pods and provisions nodes for them.
type Controller struct {
	client  client.Client
	cluster *state.Cluster
	cloud   InstanceTyper
	solver  Solver
	clock   clock.WithTicker
	events  recorder
	opts    Options
	batcher *Batcher
	steer   *steerer
	// devices evaluates DRA selectors, compiling each once across passes.
	devices *scheduling.DeviceMatcher
	demands DemandSource

	mu sync.Mutex
	// seen is when each pending pod was first seen unschedulable.
	seen map[types.UID]time.Time
	// lastWhy is the last no-pool reason told to each pod, so a pod stuck for
	// hours gets one event per distinct reason instead of one per batch.
	lastWhy map[types.UID]string
}

// NewController builds the provisioner.
func NewController(d Deps) *Controller {
	if d.Options.BatchIdleDuration <= 0 {
		d.Options.BatchIdleDuration = DefaultBatchIdleDuration
	}
	if d.Options.BatchMaxDuration <= 0 {
		d.Options.BatchMaxDuration = DefaultBatchMaxDuration
	}
	if d.Options.ResyncInterval <= 0 {
		d.Options.ResyncInterval = DefaultResyncInterval
	}
	if d.Solver == nil {
		d.Solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Recorder == nil {
		d.Recorder = &events.FakeRecorder{}
	}
	return &Controller{
		client:  d.Client,
		cluster: d.Cluster,
		cloud:   d.CloudProvider,
		solver:  d.Solver,
		clock:   d.Clock,
		events:  recorder{d.Recorder},
		opts:    d.Options,
		batcher: NewBatcher(d.Clock, d.Options.BatchIdleDuration, d.Options.BatchMaxDuration),
		steer:   newSteerer(d.Client, d.Cluster),
		devices: scheduling.NewDeviceMatcher(),
		demands: d.Demands,
		seen:    map[types.UID]time.Time{},
		lastWhy: map[types.UID]string{},
	}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register adds the pod watch and the single-flight provisioning loop to mgr.
// The loop only runs on the leader.
func (c *Controller) Register(ctx context.Context, mgr manager.Manager) error {
	if err := registerMetrics(); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	err := builder.ControllerManagedBy(mgr).
		Named(Name).
		For(&corev1.Pod{}, builder.WithPredicates(pendingPodChanges())).
		WithOptions(controller.Options{SkipNameValidation: &c.opts.SkipNameValidation}).
		Complete(reconcile.AsReconciler(mgr.GetClient(), c))
	if err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	// A deleted claim (launch failed, registration timed out) and a new or
	// changed pool can make pending pods plannable again without any pod changing.
	retrigger := toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.triggerIfPending() },
		UpdateFunc: func(any, any) { c.triggerIfPending() },
		DeleteFunc: func(any) { c.triggerIfPending() },
	}
	for _, obj := range []client.Object{&v1.NodePool{}, &v1.NodeClaim{}} {
		inf, err := mgr.GetCache().GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("getting informer for %T: %w", obj, err)
		}
		h := retrigger
		if _, ok := obj.(*v1.NodeClaim); ok {
			// Only a claim going away frees its nominated pods.
			h = toolscache.ResourceEventHandlerFuncs{DeleteFunc: retrigger.DeleteFunc}
		}
		if _, err := inf.AddEventHandler(h); err != nil {
			return fmt.Errorf("watching %T: %w", obj, err)
		}
	}
	// A planned node turning Ready is when its pods are steered to it.
	nodes, err := mgr.GetCache().GetInformer(ctx, &corev1.Node{})
	if err != nil {
		return fmt.Errorf("getting informer for nodes: %w", err)
	}
	steerReady := func(o any) {
		if n, ok := o.(*corev1.Node); ok && steerable(n) {
			c.steer.enqueue(n.Name)
		}
	}
	if _, err := nodes.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    steerReady,
		UpdateFunc: func(_, o any) { steerReady(o) },
	}); err != nil {
		return fmt.Errorf("watching nodes: %w", err)
	}
	if err := mgr.Add(c); err != nil {
		return fmt.Errorf("registering %s loop: %w", Name, err)
	}
	return nil
}

// pendingPodChanges passes events of pods without a node, and the binding of
// a pod, so its first-seen time can be dropped.
func pendingPodChanges() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(e event.CreateEvent) bool { return unbound(e.Object) },
		UpdateFunc:  func(e event.UpdateEvent) bool { return unbound(e.ObjectNew) || unbound(e.ObjectOld) },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
}

func unbound(o client.Object) bool {
	p, ok := o.(*corev1.Pod)
	return ok && p.Spec.NodeName == ""
}

// Reconcile notes when a pod was first seen unschedulable and opens or
// extends a batch; the loop decides for the whole batch at once.
func (c *Controller) Reconcile(ctx context.Context, pod *corev1.Pod) (reconcile.Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { podsPending.Set(float64(len(c.seen))) }()
	if !provisionable(pod) {
		delete(c.seen, pod.UID)
		delete(c.lastWhy, pod.UID)
		return reconcile.Result{}, nil
	}
	_, known := c.seen[pod.UID]
	if !known {
		c.seen[pod.UID] = c.clock.Now()
		log.FromContext(ctx).V(1).Info("pod is unschedulable", "pod", klog.KObj(pod))
	}
	if node := c.cluster.NominatedNode(pod); node != "" {
		// Planned onto a node that exists: a failed scheduling attempt
		// cleared nominatedNodeName, or it was never set. No new decision.
		if pod.Status.NominatedNodeName != node {
			c.steer.enqueue(node)
		}
		return reconcile.Result{}, nil
	}
	if known {
		c.batcher.Poke()
	} else {
		c.batcher.Trigger()
	}
	return reconcile.Result{}, nil
}

func (c *Controller) triggerIfPending() {
	c.mu.Lock()
	pending := len(c.seen) > 0
	c.mu.Unlock()
	if buy, check := c.demandsNow(); len(buy)+len(check) > 0 {
		pending = true
	}
	if pending {
		c.batcher.Poke()
	}
}

// NeedLeaderElection keeps the loop on the leader: two replicas deciding at
// once would buy the same capacity twice.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start runs the single-flight loop: one snapshot, one solve, one write at a
// time, so each decision sees the NodeClaims the previous one created and
// NodePool limits hold across decisions. The next batch window runs while a
// pass solves and writes: pods that turn up meanwhile are batched then,
// instead of waiting for the pass to end and only then for their window.
func (c *Controller) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName(Name)
	ctx = log.IntoContext(ctx, logger)
	ticker := c.clock.NewTicker(c.opts.ResyncInterval)
	defer ticker.Stop()
	go c.steer.run(ctx)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
				c.triggerIfPending()
			}
		}
	}()
	// At most one closed window waits for the running pass: the send
	// blocks until the pass ends, and the window after it opens only then.
	windows := make(chan Window)
	go func() {
		defer close(windows)
		for {
			opened, ok := c.batcher.Wait(ctx)
			if !ok {
				return
			}
			select {
			case windows <- Window{Opened: opened, Closed: c.clock.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	for w := range windows {
		if _, err := c.Schedule(ctx, w); err != nil {
			logger.Error(err, "provisioning pass failed; retrying after the next batch window")
			c.batcher.Trigger()
		}
	}
	return nil
}

// errNotSynced defers decisions until the cluster view is complete.
var errNotSynced = errors.New("cluster state has not synced yet")
