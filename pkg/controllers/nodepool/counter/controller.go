// Package counter writes each NodePool's status.resources: the capacity of
// the pool's launched machines plus "nodes", the number of its NodeClaims,
// so `kubectl get nodepools` shows how big each pool is.
package counter

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Name is the controller's name in logs and metrics.
const Name = "nodepool.counter"

// ResourceNodes is the key of the NodeClaim count in status.resources.
const ResourceNodes corev1.ResourceName = "nodes"

// MinWriteInterval spaces one pool's status writes: a scale-out changes the
// totals with every launch, and a write per launch would compete with the
// NodeClaim writes it reports on.
const MinWriteInterval = 5 * time.Second

// Deps are the controller's dependencies.
type Deps struct {
	Client  client.Client
	Clock   clock.PassiveClock
	Options Options
}

// Options tune the controller.
type Options struct {
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Controller keeps NodePool status.resources current.
type Controller struct {
	client client.Client
	clock  clock.PassiveClock
	opts   Options

	mu      sync.Mutex
	written map[string]time.Time // pool -> last status write
}

// NewController builds the controller.
func NewController(d Deps) *Controller {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	return &Controller{client: d.Client, clock: d.Clock, opts: d.Options, written: map[string]time.Time{}}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register watches NodePools and the NodeClaims that count towards them.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	err := builder.ControllerManagedBy(mgr).
		Named(Name).
		For(&v1.NodePool{}).
		Watches(&v1.NodeClaim{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if pool := o.GetLabels()[v1.LabelNodePool]; pool != "" {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: pool}}}
			}
			return nil
		})).
		WithOptions(controller.Options{SkipNameValidation: &c.opts.SkipNameValidation}).
		Complete(c)
	if err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	return nil
}

// Reconcile totals one pool's claims and records the totals when they changed.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pool := &v1.NodePool{}
	if err := c.client.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			c.mu.Lock()
			delete(c.written, req.Name)
			c.mu.Unlock()
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	claims := &v1.NodeClaimList{}
	if err := c.client.List(ctx, claims, client.MatchingLabels{v1.LabelNodePool: pool.Name}); err != nil {
		return reconcile.Result{}, err
	}
	total := Resources(claims.Items)
	if apiequality.Semantic.DeepEqual(total, pool.Status.Resources) {
		return reconcile.Result{}, nil
	}
	c.mu.Lock()
	wait := c.written[pool.Name].Add(MinWriteInterval).Sub(c.clock.Now())
	c.mu.Unlock()
	if wait > 0 {
		return reconcile.Result{RequeueAfter: wait}, nil
	}
	if err := c.patchResources(ctx, pool, total); err != nil {
		return reconcile.Result{}, err
	}
	c.mu.Lock()
	c.written[pool.Name] = c.clock.Now()
	c.mu.Unlock()
	return reconcile.Result{}, nil
}

// Resources is the capacity of the claims' launched machines plus their
// count under "nodes". Claims being deleted still count: their machines are
// still there, and still billed.
func Resources(claims []v1.NodeClaim) corev1.ResourceList {
	total := corev1.ResourceList{ResourceNodes: *resource.NewQuantity(int64(len(claims)), resource.DecimalSI)}
	for i := range claims {
		for name, q := range claims[i].Status.Capacity {
			sum := total[name]
			sum.Add(q)
			total[name] = sum
		}
	}
	return total
}

// patchResources replaces status.resources with a merge patch of that field
// alone, so the validation controller's conditions are never overwritten; a
// resource gone from the pool is removed with an explicit null.
func (c *Controller) patchResources(ctx context.Context, pool *v1.NodePool, total corev1.ResourceList) error {
	resources := map[string]any{}
	for name := range pool.Status.Resources {
		resources[string(name)] = nil
	}
	for name, q := range total {
		resources[string(name)] = q.String()
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"resources": resources}})
	if err != nil {
		return err
	}
	if err := c.client.Status().Patch(ctx, pool, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("recording the resources of nodepool %s: %w", pool.Name, err)
	}
	return nil
}
