// Package validation reports NodePools that Stowage cannot use: a pool the
// API server stored but pkg/validation rejects (an older CRD let the value
// through, or it was written straight into etcd) gets a ValidationSucceeded
// condition, a Warning event and the stowage_nodepool_invalid gauge.
// Provisioning (pkg/state) and disruption skip such pools, so one bad pool
// never blocks the others.
package validation

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// Name is the controller's name in logs and metrics.
const Name = "nodepool.validation"

// ConditionValidationSucceeded is True when pkg/validation accepts the pool.
const ConditionValidationSucceeded = "ValidationSucceeded"

// Condition reasons and the event reason.
const (
	ReasonValid   = "Valid"
	ReasonInvalid = "Invalid"
)

// maxMessage keeps the condition message readable; the event carries the same text.
const maxMessage = 1024

// Deps are the controller's dependencies.
type Deps struct {
	Client   client.Client
	Clock    clock.PassiveClock
	Recorder events.EventRecorder
	Options  Options
}

// Options tune the controller.
type Options struct {
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Controller validates NodePools and reports the ones Stowage skips.
type Controller struct {
	client   client.Client
	clock    clock.PassiveClock
	recorder events.EventRecorder
	opts     Options
}

// NewController builds the controller.
func NewController(d Deps) *Controller {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Recorder == nil {
		d.Recorder = &events.FakeRecorder{}
	}
	return &Controller{client: d.Client, clock: d.Clock, recorder: d.Recorder, opts: d.Options}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register watches NodePools.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if err := registerMetrics(); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	err := builder.ControllerManagedBy(mgr).
		Named(Name).
		For(&v1.NodePool{}).
		WithOptions(controller.Options{SkipNameValidation: &c.opts.SkipNameValidation}).
		Complete(c)
	if err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	return nil
}

// Reconcile validates one pool and records the result on it.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pool := &v1.NodePool{}
	if err := c.client.Get(ctx, req.NamespacedName, pool); err != nil {
		if apierrors.IsNotFound(err) {
			invalidPools.DeleteLabelValues(req.Name)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	errs := validation.NodePool(pool)
	status, reason, message := metav1.ConditionTrue, ReasonValid, ""
	if len(errs) > 0 {
		status, reason = metav1.ConditionFalse, ReasonInvalid
		message = Message(errs.ToAggregate().Error())
		invalidPools.WithLabelValues(pool.Name).Set(1)
	} else {
		invalidPools.WithLabelValues(pool.Name).Set(0)
	}
	conds := append([]metav1.Condition(nil), pool.Status.Conditions...)
	if !conditions.Set(&conds, c.clock, pool.Generation, ConditionValidationSucceeded, status, reason, message) {
		return reconcile.Result{}, nil
	}
	if status == metav1.ConditionFalse {
		log.FromContext(ctx).Info("nodepool is invalid; provisioning and disruption skip it until it is fixed", "nodepool", pool.Name, "errors", message)
		c.recorder.Eventf(pool, nil, corev1.EventTypeWarning, ReasonInvalid, "Validate",
			"Stowage skips this NodePool until it is fixed: %s", message)
	}
	return reconcile.Result{}, c.patchConditions(ctx, pool, conds)
}

// patchConditions writes the conditions with a merge patch of status alone,
// guarded by the resource version, so a condition another controller set
// meanwhile is never overwritten and the stored spec is never touched.
func (c *Controller) patchConditions(ctx context.Context, pool *v1.NodePool, conds []metav1.Condition) error {
	patch, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": pool.ResourceVersion},
		"status":   map[string]any{"conditions": conds},
	})
	if err != nil {
		return err
	}
	if err := c.client.Status().Patch(ctx, pool, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("recording %s on nodepool %s: %w", ConditionValidationSucceeded, pool.Name, err)
	}
	return nil
}

// Message shortens a validation error to fit a condition.
func Message(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > maxMessage {
		s = s[:maxMessage-3] + "..."
	}
	return s
}
