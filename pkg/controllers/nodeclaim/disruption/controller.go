// Package disruption keeps the conditions that say why a NodeClaim may be
// disrupted: Drifted (its pool or its node class changed since it was
// launched), Expired (older than expireAfter) and Consolidatable (its pods
// have not changed for its pool's consolidateAfter). The disruption
// controller acts on them; users see them in `kubectl describe nodeclaim`
// and in stowage_nodeclaims_disruption_conditions.
package disruption

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// Name is the controller's name in logs and metrics.
const Name = "nodeclaim.disruption"

// DefaultDriftCheckInterval is how often each claim's machine is compared
// with its node class through the provider's DriftChecker. Pool drift needs
// no polling: a pool or node change triggers the check.
const DefaultDriftCheckInterval = time.Minute

// Condition reasons.
const (
	ReasonExpired        = "Expired"
	ReasonConsolidatable = "Consolidatable"
	// Pool drift reasons; cloud drift carries the provider's reason.
	ReasonRequirementsDrifted  = "RequirementsDrifted"
	ReasonLabelsDrifted        = "LabelsDrifted"
	ReasonTaintsDrifted        = "TaintsDrifted"
	ReasonStartupTaintsDrifted = "StartupTaintsDrifted"
	ReasonNodeClassRefDrifted  = "NodeClassRefDrifted"
)

// Deps are the controller's dependencies.
type Deps struct {
	Client        client.Client
	CloudProvider cloudprovider.CloudProvider
	Clock         clock.Clock
	Options       Options
}

// Options tune the controller.
type Options struct {
	// DriftCheckInterval is DefaultDriftCheckInterval when zero.
	DriftCheckInterval time.Duration
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Controller sets the disruption conditions of NodeClaims.
type Controller struct {
	client client.Client
	drift  cloudprovider.DriftChecker // nil when the provider cannot tell
	clock  clock.Clock
	opts   Options

	// checked remembers each claim's last cloud drift answer, so the claim's
	// many reconciles (every Node update brings one) ask the provider at most
	// once per DriftCheckInterval.
	mu      sync.Mutex
	checked map[string]driftCheck
}

type driftCheck struct {
	at     time.Time
	reason cloudprovider.DriftReason
}

// NewController builds the controller. Providers without a DriftChecker
// (see cloudprovider.CapabilitiesOf) report no cloud drift.
func NewController(d Deps) *Controller {
	if d.Options.DriftCheckInterval <= 0 {
		d.Options.DriftCheckInterval = DefaultDriftCheckInterval
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	c := &Controller{client: d.Client, clock: d.Clock, opts: d.Options, checked: map[string]driftCheck{}}
	if d.CloudProvider != nil && cloudprovider.CapabilitiesOf(d.CloudProvider).Drift {
		c.drift = d.CloudProvider.(cloudprovider.DriftChecker)
	}
	return c
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register watches NodeClaims, and the NodePools and Nodes their conditions
// depend on.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if err := registerMetrics(mgr.GetCache()); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	opts := controller.Options{MaxConcurrentReconciles: 4}
	if c.opts.SkipNameValidation {
		opts.SkipNameValidation = &c.opts.SkipNameValidation
	}
	return builder.ControllerManagedBy(mgr).
		Named(Name).
		For(&v1.NodeClaim{}).
		Watches(&v1.NodePool{}, handler.EnqueueRequestsFromMapFunc(c.claimsOfPool)).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(c.claimOfNode)).
		WithOptions(opts).
		Complete(reconcile.AsReconciler(mgr.GetClient(), c))
}

func (c *Controller) claimsOfPool(ctx context.Context, o client.Object) []reconcile.Request {
	list := &v1.NodeClaimList{}
	if err := c.client.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: o.GetName()}); err != nil {
		log.FromContext(ctx).Error(err, "listing nodeclaims of nodepool", "nodepool", o.GetName())
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

func (c *Controller) claimOfNode(_ context.Context, o client.Object) []reconcile.Request {
	if name := o.GetLabels()[v1.LabelNodeClaim]; name != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return nil
}

// Reconcile recomputes the three conditions and patches them once.
func (c *Controller) Reconcile(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, error) {
	if claim.DeletionTimestamp != nil {
		c.forget(claim.Name)
		return reconcile.Result{}, nil
	}
	if !conditions.IsTrue(claim.Status.Conditions, v1.ConditionInitialized) {
		return reconcile.Result{}, nil
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("nodeclaim", klog.KObj(claim)))
	pool := &v1.NodePool{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: claim.Labels[v1.LabelNodePool]}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			// Its pool is gone: the claim is being deleted with it.
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	node, err := claims.NodeFor(ctx, c.client, claim)
	if err != nil {
		return reconcile.Result{}, err
	}
	stored := claim.DeepCopy()
	now := c.clock.Now()
	var next []time.Duration

	if at, ok := ExpiresAt(claim); ok && !now.Before(at) {
		c.set(claim, v1.ConditionExpired, ReasonExpired, fmt.Sprintf("expireAfter %s passed at %s", claim.Spec.ExpireAfter, at.UTC().Format(time.RFC3339)))
	} else {
		meta.RemoveStatusCondition(&claim.Status.Conditions, v1.ConditionExpired)
		if ok {
			next = append(next, at.Sub(now))
		}
	}

	reason, msg := "", ""
	if node != nil {
		reason, msg = PoolDrift(pool, claim, node)
	}
	if reason == "" && c.drift != nil {
		r, wait, err := c.cloudDrift(ctx, claim, now)
		if err != nil {
			// Keep what was known: a node class that cannot be read must not
			// roll the fleet, nor hide drift already found.
			log.FromContext(ctx).Error(err, "checking cloud drift")
			if cur := conditions.Get(claim.Status.Conditions, v1.ConditionDrifted); cur != nil {
				reason, msg = cur.Reason, cur.Message
			}
		} else if r != "" {
			reason, msg = string(r), "the machine no longer matches its node class: "+string(r)
		}
		next = append(next, wait)
	}
	if reason != "" {
		c.set(claim, v1.ConditionDrifted, reason, msg)
	} else {
		meta.RemoveStatusCondition(&claim.Status.Conditions, v1.ConditionDrifted)
	}

	if at, ok := ConsolidatableAt(pool, claim); ok && !now.Before(at) {
		c.set(claim, v1.ConditionConsolidatable, ReasonConsolidatable,
			fmt.Sprintf("no pod arrived or left since %s (consolidateAfter %s)", at.Add(-*pool.Spec.Disruption.ConsolidateAfter.Duration).UTC().Format(time.RFC3339), pool.Spec.Disruption.ConsolidateAfter))
	} else {
		meta.RemoveStatusCondition(&claim.Status.Conditions, v1.ConditionConsolidatable)
		if ok {
			next = append(next, at.Sub(now))
		}
	}

	if !equality.Semantic.DeepEqual(stored.Status.Conditions, claim.Status.Conditions) {
		if err := c.client.Status().Patch(ctx, claim, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsConflict(err) {
				return reconcile.Result{RequeueAfter: time.Second}, nil
			}
			return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("patching disruption conditions of nodeclaim %s: %w", claim.Name, err))
		}
		logTransitions(ctx, stored, claim)
	}
	return reconcile.Result{RequeueAfter: soonest(next)}, nil
}

// cloudDrift asks the provider whether the claim's machine drifted, at most
// once per DriftCheckInterval, and says how long until the next check.
func (c *Controller) cloudDrift(ctx context.Context, claim *v1.NodeClaim, now time.Time) (cloudprovider.DriftReason, time.Duration, error) {
	c.mu.Lock()
	last, ok := c.checked[claim.Name]
	c.mu.Unlock()
	if ok && now.Sub(last.at) < c.opts.DriftCheckInterval {
		return last.reason, c.opts.DriftCheckInterval - now.Sub(last.at), nil
	}
	r, err := c.drift.IsDrifted(ctx, claim)
	if err != nil {
		return "", c.opts.DriftCheckInterval, err
	}
	c.mu.Lock()
	c.checked[claim.Name] = driftCheck{at: now, reason: r}
	c.mu.Unlock()
	return r, c.opts.DriftCheckInterval, nil
}

// forget drops what is remembered about a claim that is gone or going.
func (c *Controller) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.checked, name)
}

// set records a True condition; its transition time stays when it was True already.
func (c *Controller) set(claim *v1.NodeClaim, condType, reason, msg string) {
	conditions.Set(&claim.Status.Conditions, c.clock, claim.Generation, condType, metav1.ConditionTrue, reason, msg)
}

func logTransitions(ctx context.Context, before, after *v1.NodeClaim) {
	for _, t := range []string{v1.ConditionDrifted, v1.ConditionExpired, v1.ConditionConsolidatable} {
		was, is := conditions.IsTrue(before.Status.Conditions, t), conditions.IsTrue(after.Status.Conditions, t)
		if was == is {
			continue
		}
		if is {
			cond := conditions.Get(after.Status.Conditions, t)
			log.FromContext(ctx).Info("nodeclaim is "+t, "reason", cond.Reason, "message", cond.Message)
		} else {
			log.FromContext(ctx).V(1).Info("nodeclaim is no longer " + t)
		}
	}
}

// ExpiresAt is when the claim expires, if it does.
func ExpiresAt(claim *v1.NodeClaim) (time.Time, bool) {
	d := claim.Spec.ExpireAfter.Duration
	if d == nil {
		return time.Time{}, false
	}
	return claim.CreationTimestamp.Add(*d), true
}

// ConsolidatableAt is when the claim's pods will have been unchanged for
// its pool's consolidateAfter: counted from the last pod event, and never
// before the node was initialized, so a node is never consolidated before its
// pool's consolidateAfter has passed since it became usable.
func ConsolidatableAt(pool *v1.NodePool, claim *v1.NodeClaim) (time.Time, bool) {
	after := pool.Spec.Disruption.ConsolidateAfter.Duration
	if after == nil {
		return time.Time{}, false
	}
	since := claim.Status.LastPodEventTime.Time
	if init := conditions.Get(claim.Status.Conditions, v1.ConditionInitialized); init != nil && init.LastTransitionTime.After(since) {
		since = init.LastTransitionTime.Time
	}
	return since.Add(*after), true
}

func soonest(ds []time.Duration) time.Duration {
	var out time.Duration
	for _, d := range ds {
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}
