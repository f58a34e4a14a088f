// Package lifecycle drives a NodeClaim from intent to a Ready node: it
// launches the machine, waits for its Node to register, syncs labels and
// taints onto it, and waits for the Node to be initialized. Each step owns
// one status condition; the status is patched once per reconcile.
package lifecycle

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// Name is the controller's name in logs and metrics.
const Name = "nodeclaim.lifecycle"

// DefaultRegistrationTimeout applies when a claim does not set
// spec.registrationTimeout. GPU images with large drivers boot slowly.
const DefaultRegistrationTimeout = 15 * time.Minute

// Deps are the lifecycle controller's dependencies.
type Deps struct {
	Client        client.Client
	CloudProvider cloudprovider.CloudProvider
	Clock         clock.Clock
	Recorder      events.EventRecorder
	// Unavailable is the shared cache of offerings that recently had no
	// capacity. When nil, the provider's own cache is used if it exposes one
	// (an Unavailable() method, as the fake cloud has).
	Unavailable *cloudprovider.UnavailableOfferings
	// Nominations, when set, names the pods planned onto a node; they are
	// pointed at it before it is released to the scheduler.
	Nominations Nominations
	Options     Options
}

// Options tune the controller.
type Options struct {
	// DefaultRegistrationTimeout is used for claims without spec.registrationTimeout.
	DefaultRegistrationTimeout time.Duration
	// MaxConcurrentReconciles bounds parallel launches; cloud calls are slow, so more than one helps.
	MaxConcurrentReconciles int
	// CreateTimeout bounds one cloud Create call (DefaultCreateTimeout when
	// zero): a call that hangs would otherwise hold a launch worker forever.
	CreateTimeout time.Duration
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// launcher is the part of the cloud provider the lifecycle calls.
type launcher interface {
	Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error)
}

// unavailableCache is implemented by providers that share their
// unavailable-offerings cache.
type unavailableCache interface {
	Unavailable() *cloudprovider.UnavailableOfferings
}

// subReconciler owns one condition of a NodeClaim. It mutates the claim's
// status in memory; the controller patches it once. deleted reports that it
// deleted the claim, after which no later step runs.
type subReconciler interface {
	reconcile(ctx context.Context, claim *v1.NodeClaim) (res reconcile.Result, deleted bool, err error)
}

// Controller reconciles NodeClaims through launch, registration and initialization.
type Controller struct {
	client client.Client
	steps  []subReconciler
	opts   Options
}

// NewController builds the lifecycle controller.
func NewController(d Deps) *Controller {
	if d.Options.DefaultRegistrationTimeout <= 0 {
		d.Options.DefaultRegistrationTimeout = DefaultRegistrationTimeout
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
	if d.Unavailable == nil {
		if p, ok := d.CloudProvider.(unavailableCache); ok {
			d.Unavailable = p.Unavailable()
		}
	}
	rec := &recorder{d.Recorder}
	return &Controller{
		client: d.Client,
		opts:   d.Options,
		steps: []subReconciler{
			&launch{client: d.Client, cloud: d.CloudProvider, clock: d.Clock, events: rec, unavailable: d.Unavailable,
				defaultTimeout: d.Options.DefaultRegistrationTimeout, createTimeout: cmp.Or(d.Options.CreateTimeout, DefaultCreateTimeout)},
			&registration{client: d.Client, cloud: d.CloudProvider, clock: d.Clock, events: rec, defaultTimeout: d.Options.DefaultRegistrationTimeout,
				nominations: d.Nominations},
			&initialization{client: d.Client, clock: d.Clock, events: rec, defaultTimeout: d.Options.DefaultRegistrationTimeout},
			&readiness{clock: d.Clock},
		},
	}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register adds the controller, its field indexes and its metrics to mgr.
func (c *Controller) Register(ctx context.Context, mgr manager.Manager) error {
	if err := index.Register(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	if err := registerMetrics(); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	return builder.ControllerManagedBy(mgr).
		Named(Name).
		For(&v1.NodeClaim{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(c.claimForNode)).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: c.opts.MaxConcurrentReconciles,
			SkipNameValidation:      skipNameValidation(c.opts.SkipNameValidation),
		}).
		Complete(reconcile.AsReconciler(mgr.GetClient(), c))
}

// claimForNode maps a Node event to its claim, so registration and
// initialization react to the node instead of polling.
func (c *Controller) claimForNode(ctx context.Context, o client.Object) []reconcile.Request {
	node, ok := o.(*corev1.Node)
	if !ok {
		return nil
	}
	claim, err := claims.ForNode(ctx, c.client, node)
	if err != nil {
		log.FromContext(ctx).Error(err, "mapping node to nodeclaim", "node", klog.KObj(node))
		return nil
	}
	if claim == nil {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKeyFromObject(claim)}}
}

// Reconcile moves one NodeClaim forward.
func (c *Controller) Reconcile(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, error) {
	if !claim.DeletionTimestamp.IsZero() {
		// Termination owns deleting claims; launching one now could leak a machine.
		return reconcile.Result{}, nil
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("nodeclaim", klog.KObj(claim)))

	// The finalizer must be stored before any cloud call: without it a claim
	// deleted mid-launch would vanish and its machine would only be found by
	// garbage collection.
	if !controllerutil.ContainsFinalizer(claim, v1.TerminationFinalizer) {
		stored := claim.DeepCopy()
		controllerutil.AddFinalizer(claim, v1.TerminationFinalizer)
		if err := c.client.Patch(ctx, claim, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsConflict(err) {
				return reconcile.Result{RequeueAfter: time.Second}, nil
			}
			return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("adding finalizer to nodeclaim %s: %w", claim.Name, err))
		}
	}

	if err := c.adopt(ctx, claim); err != nil {
		return reconcile.Result{}, err
	}

	stored := claim.DeepCopy()
	var (
		result reconcile.Result
		errs   []error
		fx     effects
	)
	ctx = context.WithValue(ctx, effectsKey{}, &fx)
	for _, step := range c.steps {
		res, deleted, err := step.reconcile(ctx, claim)
		if deleted {
			return reconcile.Result{}, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
		result = earliest(result, res)
	}
	if !equality.Semantic.DeepEqual(stored.Status, claim.Status) {
		// Optimistic lock: other controllers (disruption) add conditions, and a
		// merge patch replaces the whole list.
		if err := c.client.Status().Patch(ctx, claim, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsNotFound(err) {
				return reconcile.Result{}, nil
			}
			// The transitions were not recorded; the next reconcile redoes them.
			fx = nil
			if apierrors.IsConflict(err) && len(errs) == 0 {
				// Another controller wrote first: expected, not an error worth a stack trace.
				return reconcile.Result{RequeueAfter: time.Second}, nil
			}
			errs = append(errs, fmt.Errorf("patching status of nodeclaim %s: %w", claim.Name, err))
		}
	}
	fx.run()
	if err := errors.Join(errs...); err != nil {
		return reconcile.Result{}, err
	}
	return result, nil
}

// effects are what a reconcile reports about transitions it made (metrics,
// events, logs). They run only once the status recording the transition is
// stored, so a conflicting patch or a stale cache read, which make the step
// run again, never count one machine twice.
type effects []func()

type effectsKey struct{}

// afterStatusStored defers f until the reconcile's status patch succeeds.
func afterStatusStored(ctx context.Context, f func()) {
	if fx, ok := ctx.Value(effectsKey{}).(*effects); ok {
		*fx = append(*fx, f)
		return
	}
	f()
}

func (fx effects) run() {
	for _, f := range fx {
		f()
	}
}

// earliest returns the result that requeues soonest.
func earliest(a, b reconcile.Result) reconcile.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0:
		return a
	case b.RequeueAfter < a.RequeueAfter:
		return b
	default:
		return a
	}
}

// nodePool is the pool label value used in metrics; bounded by the number of pools.
func nodePool(claim *v1.NodeClaim) string { return claim.Labels[v1.LabelNodePool] }

// truncate keeps condition messages and events readable when a cloud error is long.
func truncate(s string) string {
	const max = 1024
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// skipNameValidation leaves the manager's setting alone unless the option is on.
func skipNameValidation(skip bool) *bool {
	if !skip {
		return nil
	}
	return &skip
}
