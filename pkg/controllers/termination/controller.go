// Package termination runs Stowage's finalizers. When a NodeClaim is
// deleted it cordons the claim's Node, drains it through the Eviction API so
// PodDisruptionBudgets hold, deletes the machine, deletes the Node and then
// lets the claim go. When a Node with Stowage's finalizer is deleted it
// deletes the Node's claim, so both paths run the same drain.
package termination

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// Controller names in logs and metrics.
const (
	Name     = "nodeclaim.termination"
	NodeName = "node.termination"
)

// DefaultDrainRequeue is how often a draining claim is looked at again while
// pods are still leaving or a PDB refuses an eviction.
const DefaultDrainRequeue = 5 * time.Second

// Deps are the termination controllers' dependencies.
type Deps struct {
	Client        client.Client
	CloudProvider cloudprovider.CloudProvider
	Clock         clock.Clock
	Recorder      events.EventRecorder
	Options       Options
}

// Options tune the controllers.
type Options struct {
	// DrainRequeue is the wait between drain passes; DefaultDrainRequeue when zero.
	DrainRequeue time.Duration
	// MaxConcurrentReconciles bounds parallel drains.
	MaxConcurrentReconciles int
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// machines is the part of the cloud provider termination calls.
type machines interface {
	Get(ctx context.Context, providerID string) (*v1.NodeClaim, error)
	Delete(ctx context.Context, claim *v1.NodeClaim) error
	List(ctx context.Context) ([]*v1.NodeClaim, error)
}

// Controller owns the NodeClaim and Node termination finalizers.
type Controller struct {
	claims *claimTerminator
	nodes  *nodeTerminator
	opts   Options
}

// NewController builds the termination controllers.
func NewController(d Deps) *Controller {
	if d.Options.DrainRequeue <= 0 {
		d.Options.DrainRequeue = DefaultDrainRequeue
	}
	if d.Options.MaxConcurrentReconciles <= 0 {
		d.Options.MaxConcurrentReconciles = 10
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Recorder == nil {
		// A FakeRecorder without a channel drops events: fine for callers that want none.
		d.Recorder = &events.FakeRecorder{}
	}
	rec := &recorder{d.Recorder}
	return &Controller{
		opts: d.Options,
		claims: &claimTerminator{
			client:  d.Client,
			cloud:   d.CloudProvider,
			clock:   d.Clock,
			events:  rec,
			requeue: d.Options.DrainRequeue,
			drainer: &drainer{client: d.Client, clock: d.Clock, events: rec},
		},
		nodes: &nodeTerminator{client: d.Client, events: rec},
	}
}

// Name is the NodeClaim controller's name; the Node controller is NodeName.
func (c *Controller) Name() string { return Name }

// Register adds both finalizer controllers, their indexes and metrics to mgr.
func (c *Controller) Register(ctx context.Context, mgr manager.Manager) error {
	if err := index.Register(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	if err := registerMetrics(); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	opts := controller.Options{
		MaxConcurrentReconciles: c.opts.MaxConcurrentReconciles,
		SkipNameValidation:      skipNameValidation(c.opts.SkipNameValidation),
	}
	if err := builder.ControllerManagedBy(mgr).Named(Name).For(&v1.NodeClaim{}).WithOptions(opts).
		Complete(reconcile.AsReconciler[*v1.NodeClaim](mgr.GetClient(), c.claims)); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	if err := builder.ControllerManagedBy(mgr).Named(NodeName).For(&corev1.Node{}).WithOptions(opts).
		Complete(reconcile.AsReconciler[*corev1.Node](mgr.GetClient(), c.nodes)); err != nil {
		return fmt.Errorf("registering %s: %w", NodeName, err)
	}
	return nil
}

// ReconcileNodeClaim runs one termination pass for a NodeClaim; exposed for tests and callers that drive it directly.
func (c *Controller) ReconcileNodeClaim(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, error) {
	return c.claims.Reconcile(ctx, claim)
}

// ReconcileNode runs one pass of the Node finalizer.
func (c *Controller) ReconcileNode(ctx context.Context, node *corev1.Node) (reconcile.Result, error) {
	return c.nodes.Reconcile(ctx, node)
}

// skipNameValidation leaves the manager's setting alone unless the option is on.
func skipNameValidation(skip bool) *bool {
	if !skip {
		return nil
	}
	return &skip
}
