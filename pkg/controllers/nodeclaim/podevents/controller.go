// Package podevents records on each NodeClaim when a pod last arrived on its
// node or left it (status.lastPodEventTime). Consolidation counts a node's
// consolidateAfter from there; keeping it on the claim rather than in the
// disruption controller's memory means a new leader does not start the wait
// again, and users can see it.
package podevents

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
)

// Name is the controller's name in logs and metrics.
const Name = "nodeclaim.podevents"

// DefaultDedupe is the shortest step lastPodEventTime moves in: a burst of
// pods landing on a node costs one status write, not one per pod.
const DefaultDedupe = 5 * time.Second

// Deps are the controller's dependencies.
type Deps struct {
	Client  client.Client
	Clock   clock.Clock
	Options Options
}

// Options tune the controller.
type Options struct {
	// Dedupe is DefaultDedupe when zero.
	Dedupe time.Duration
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Controller keeps lastPodEventTime. Its requests are keyed by node name.
type Controller struct {
	client client.Client
	clock  clock.Clock
	opts   Options
}

// NewController builds the controller.
func NewController(d Deps) *Controller {
	if d.Options.Dedupe <= 0 {
		d.Options.Dedupe = DefaultDedupe
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	return &Controller{client: d.Client, clock: d.Clock, opts: d.Options}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register watches pods and enqueues the node of each pod that arrives on
// a node or leaves it.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	opts := controller.Options{MaxConcurrentReconciles: 4}
	if c.opts.SkipNameValidation {
		opts.SkipNameValidation = &c.opts.SkipNameValidation
	}
	return builder.ControllerManagedBy(mgr).
		Named(Name).
		Watches(&corev1.Pod{}, podHandler()).
		WithOptions(opts).
		Complete(c)
}

// podHandler enqueues a pod's node when the pod is bound, finishes or goes.
func podHandler() handler.TypedEventHandler[client.Object, reconcile.Request] {
	add := func(q workqueue.TypedRateLimitingInterface[reconcile.Request], pod *corev1.Pod) {
		if pod.Spec.NodeName != "" && counts(pod) {
			q.Add(reconcile.Request{NamespacedName: types.NamespacedName{Name: pod.Spec.NodeName}})
		}
	}
	return handler.TypedFuncs[client.Object, reconcile.Request]{
		CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			if p, ok := e.Object.(*corev1.Pod); ok && !e.IsInInitialList {
				add(q, p)
			}
		},
		UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			old, ok1 := e.ObjectOld.(*corev1.Pod)
			cur, ok2 := e.ObjectNew.(*corev1.Pod)
			if !ok1 || !ok2 {
				return
			}
			if old.Spec.NodeName != cur.Spec.NodeName || scheduling.Finished(old) != scheduling.Finished(cur) ||
				(old.DeletionTimestamp == nil) != (cur.DeletionTimestamp == nil) {
				add(q, cur)
			}
		},
		DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			// controller-runtime has already unwrapped a tombstone.
			if p, ok := e.Object.(*corev1.Pod); ok {
				add(q, p)
			}
		},
	}
}

// counts reports whether a pod's comings and goings matter to consolidation:
// DaemonSet and mirror pods come and go with the node.
func counts(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	if scheduling.DaemonSetPod(p) {
		return false
	}
	return true
}

// Reconcile stamps the claim of the named node with the current time.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	node := &corev1.Node{}
	if err := c.client.Get(ctx, req.NamespacedName, node); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	claim, err := claims.ForNode(ctx, c.client, node)
	if err != nil || claim == nil || claim.DeletionTimestamp != nil {
		return reconcile.Result{}, err
	}
	now := c.clock.Now()
	if last := claim.Status.LastPodEventTime; !last.IsZero() && now.Sub(last.Time) < c.opts.Dedupe {
		// Too soon to write again; come back once the step has passed, so
		// the last event of a burst is still recorded.
		return reconcile.Result{RequeueAfter: c.opts.Dedupe - now.Sub(last.Time)}, nil
	}
	stored := claim.DeepCopy()
	claim.Status.LastPodEventTime = metav1.NewTime(now)
	if err := c.client.Status().Patch(ctx, claim, client.MergeFrom(stored)); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("recording a pod event on nodeclaim %s: %w", claim.Name, err))
	}
	log.FromContext(ctx).V(2).Info("pod event on node", "node", klog.KObj(node), "nodeclaim", claim.Name)
	return reconcile.Result{}, nil
}
