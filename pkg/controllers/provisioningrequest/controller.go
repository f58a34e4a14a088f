// Package provisioningrequest serves ProvisioningRequests
// (autoscaling.x-k8s.io/v1), the API Kueue's ProvisioningRequest admission
// check and Cluster Autoscaler use to ask for capacity for a set of pods
// before any of them exists. A request's pod sets become a gang for the same
// solver, in the same provisioning pass, as pending pods: its machines are
// NodeClaims written like any other, bought all at once or not at all.
//
// Two classes are served. check-capacity answers whether the pods fit in
// existing and buyable capacity without buying, booking what exists.
// best-effort-atomic-scale-up buys every machine the pods need or none, and
// sets Provisioned once all of them launched. Either way the capacity is
// booked for the request's pods (the consume-provisioning-request
// annotation) for the booking time, then BookingExpired; capacity that
// vanishes before that is CapacityRevoked.
package provisioningrequest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
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
	"sigs.k8s.io/controller-runtime/pkg/source"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/controllers/provisioning"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// Name is the controller's name in logs.
const Name = "provisioningrequest"

// Defaults for Options.
const (
	// DefaultBookingTime is how long capacity stays held for a request's
	// pods once Provisioned, as in Cluster Autoscaler.
	DefaultBookingTime = 10 * time.Minute
	// DefaultMaxAttempts is how many plans a best-effort-atomic request gets
	// when machines run out of capacity at launch before it is Failed.
	DefaultMaxAttempts = 3
)

const (
	// templateGrace is how long a missing PodTemplate is waited for: the
	// requester may create it just after the request.
	templateGrace = time.Minute
	// recheck paces requests waiting on capacity or on their machines.
	recheck = 30 * time.Second
)

// Condition reasons, Cluster Autoscaler's where it has one.
const (
	ReasonAccepted           = "Accepted"
	ReasonCapacityIsFound    = "CapacityIsFound"
	ReasonCapacityIsNotFound = "CapacityIsNotFound"
	ReasonProvisioned        = "CapacityIsProvisioned"
	ReasonProvisioning       = "Provisioning"
	ReasonReplanning         = "Replanning"
	ReasonBookingExpired     = "CapacityReservationTimeExpired"
	ReasonCapacityRevoked    = "CapacityRevoked"
	ReasonExpired            = "Expired"
	ReasonInvalid            = "InvalidRequest"
)

// Trigger starts a provisioning pass.
type Trigger interface{ Trigger() }

// Deps are the controller's dependencies.
type Deps struct {
	// Client reads requests, PodTemplates and NodeClaims and writes status.
	Client client.Client
	// Cluster holds the bookings provisioning makes for requests.
	Cluster *state.Cluster
	// Provisioner is told to plan when a request wants capacity.
	Provisioner Trigger
	Clock       clock.Clock
	Recorder    events.EventRecorder
	Options     Options
}

// Options tune the controller.
type Options struct {
	// BookingTime is how long capacity is held once Provisioned.
	BookingTime time.Duration
	// MaxAttempts bounds the plans of a best-effort-atomic request.
	MaxAttempts int
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Controller serves ProvisioningRequests. It is also provisioning's
// DemandSource: the requests that want capacity are planned in its passes.
type Controller struct {
	client  client.Client
	cluster *state.Cluster
	trigger Trigger
	clock   clock.Clock
	events  events.EventRecorder
	opts    Options
	wake    chan event.GenericEvent

	mu      sync.Mutex
	entries map[string]*entry
}

var _ provisioning.DemandSource = (*Controller)(nil)

// phase is where a request is in Stowage's hands.
type phase int

const (
	// phaseWanted: planned in the next provisioning pass.
	phaseWanted phase = iota
	// phaseBuying: its machines are being bought.
	phaseBuying
	// phaseSettled: answered; nothing to plan until its status changes.
	phaseSettled
)

type entry struct {
	demand   provisioning.Demand
	phase    phase
	attempts int
	// outcome is the latest pass's answer, not yet written to the status.
	outcome *provisioning.Outcome
	claims  []string
}

// NewController builds the controller.
func NewController(d Deps) *Controller {
	if d.Options.BookingTime <= 0 {
		d.Options.BookingTime = DefaultBookingTime
	}
	if d.Options.MaxAttempts <= 0 {
		d.Options.MaxAttempts = DefaultMaxAttempts
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Recorder == nil {
		d.Recorder = &events.FakeRecorder{}
	}
	return &Controller{client: d.Client, cluster: d.Cluster, trigger: d.Provisioner, clock: d.Clock, events: d.Recorder,
		opts: d.Options, wake: make(chan event.GenericEvent, 1024), entries: map[string]*entry{}}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register watches ProvisioningRequests, the NodeClaims bought for them and
// PodTemplates. A cluster without the ProvisioningRequest CRD is left alone
// (the chart installs it); install it and restart Stowage to serve requests.
func (c *Controller) Register(ctx context.Context, mgr manager.Manager) error {
	gk := schema.GroupKind{Group: provreqv1.Group, Kind: "ProvisioningRequest"}
	if _, err := mgr.GetRESTMapper().RESTMapping(gk, provreqv1.SchemeGroupVersion.Version); err != nil {
		if meta.IsNoMatchError(err) {
			log.FromContext(ctx).Info("the cluster does not serve ProvisioningRequests; install their CRD to serve them",
				"group", provreqv1.Group)
			return nil
		}
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	return builder.ControllerManagedBy(mgr).
		Named(Name).
		For(&provreqv1.ProvisioningRequest{}).
		Watches(&v1.NodeClaim{}, handler.EnqueueRequestsFromMapFunc(bookedBy)).
		WatchesRawSource(source.Channel(c.wake, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{SkipNameValidation: skipNameValidation(c.opts.SkipNameValidation)}).
		Complete(requests{c: c, client: mgr.GetClient()})
}

// requests reads each request and hands it to Reconcile; a request that is
// gone (its requester deleted it) is released.
type requests struct {
	c      *Controller
	client client.Client
}

func (r requests) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	pr := &provreqv1.ProvisioningRequest{}
	if err := r.client.Get(ctx, req.NamespacedName, pr); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, r.c.release(ctx, req.String())
		}
		return reconcile.Result{}, fmt.Errorf("reading provisioningrequest %s: %w", req, err)
	}
	return r.c.Reconcile(ctx, pr)
}

// bookedBy maps a NodeClaim to the request it was bought or booked for.
func bookedBy(_ context.Context, o client.Object) []reconcile.Request {
	ns, name, ok := splitKey(o.GetAnnotations()[v1.AnnotationBookedBy])
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: ns, Name: name}}}
}

// Reconcile moves one request forward and writes its conditions.
func (c *Controller) Reconcile(ctx context.Context, pr *provreqv1.ProvisioningRequest) (reconcile.Result, error) {
	key := pr.Namespace + "/" + pr.Name
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("provisioningrequest", klog.KObj(pr)))
	class := pr.Spec.ProvisioningClassName
	if class != provreqv1.ProvisioningClassCheckCapacity && class != provreqv1.ProvisioningClassBestEffortAtomicScaleUp {
		// Another autoscaler's class.
		return reconcile.Result{}, c.release(ctx, key)
	}
	if !pr.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, c.release(ctx, key)
	}
	stored := pr.DeepCopy()
	conds := &pr.Status.Conditions
	if !conditions.IsTrue(*conds, provreqv1.Accepted) {
		c.set(pr, provreqv1.Accepted, metav1.ConditionTrue, ReasonAccepted, "Stowage serves "+class)
	}
	var (
		res reconcile.Result
		err error
	)
	switch {
	case conditions.IsTrue(*conds, provreqv1.Failed), conditions.IsTrue(*conds, provreqv1.BookingExpired),
		conditions.IsTrue(*conds, provreqv1.CapacityRevoked):
		err = c.release(ctx, key)
	case conditions.IsTrue(*conds, provreqv1.Provisioned):
		res, err = c.hold(ctx, pr)
	default:
		res, err = c.provide(ctx, pr)
	}
	if !equality.Semantic.DeepEqual(stored.Status, pr.Status) {
		if perr := c.client.Status().Patch(ctx, pr, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); perr != nil {
			return reconcile.Result{}, errors.Join(err, client.IgnoreNotFound(fmt.Errorf("writing the status of %s: %w", key, perr)))
		}
	}
	return res, err
}

// provide gets capacity for a request that has none yet.
func (c *Controller) provide(ctx context.Context, pr *provreqv1.ProvisioningRequest) (reconcile.Result, error) {
	key := pr.Namespace + "/" + pr.Name
	checkOnly := pr.Spec.ProvisioningClassName == provreqv1.ProvisioningClassCheckCapacity
	if d, ok := validUntil(pr); ok && !checkOnly && c.clock.Since(pr.CreationTimestamp.Time) >= d {
		c.set(pr, provreqv1.Failed, metav1.ConditionTrue, ReasonExpired,
			fmt.Sprintf("no capacity within %s=%s of the request's creation", provreqv1.ParameterValidUntilSeconds, d))
		return reconcile.Result{}, c.release(ctx, key)
	}
	e := c.entry(key)
	c.mu.Lock()
	outcome := e.outcome
	e.outcome = nil
	c.mu.Unlock()
	if outcome != nil {
		if done, err := c.apply(ctx, pr, e, *outcome); done || err != nil {
			return reconcile.Result{RequeueAfter: c.opts.BookingTime}, err
		}
	}
	c.mu.Lock()
	ph, claims, fresh := e.phase, append([]string(nil), e.claims...), e.demand.Pods == nil
	c.mu.Unlock()
	if ph == phaseWanted && fresh && buying(pr) {
		// An earlier leader was buying its machines: take them up again,
		// booked for its pods, rather than plan it afresh onto them as if
		// they were free (and call it provisioned before they launch).
		booked, err := c.rebook(ctx, pr)
		if err != nil {
			return reconcile.Result{}, err
		}
		if len(booked) > 0 {
			claims = slices.Sorted(maps.Keys(booked))
			ph = phaseBuying
			c.mu.Lock()
			e.phase, e.claims = ph, claims
			c.mu.Unlock()
		}
	}
	switch ph {
	case phaseBuying:
		return c.watchLaunches(ctx, pr, e, claims)
	case phaseSettled:
		return reconcile.Result{RequeueAfter: recheck}, nil
	}
	if e.demand.Pods != nil {
		// Planned on every pass while it waits; provisioning's resync paces
		// the passes, so an answer that will not change is not asked for in
		// a loop.
		return reconcile.Result{RequeueAfter: recheck}, nil
	}
	pods, err := c.phantomPods(ctx, pr)
	if err != nil {
		var missing *missingTemplateError
		if errors.As(err, &missing) && c.clock.Since(pr.CreationTimestamp.Time) < templateGrace {
			return reconcile.Result{RequeueAfter: 5 * time.Second}, nil
		}
		c.set(pr, provreqv1.Failed, metav1.ConditionTrue, ReasonInvalid, err.Error())
		return reconcile.Result{}, c.release(ctx, key)
	}
	c.mu.Lock()
	e.demand = provisioning.Demand{Key: key, Pods: pods, CheckOnly: checkOnly}
	c.mu.Unlock()
	if c.trigger != nil {
		c.trigger.Trigger()
	}
	return reconcile.Result{RequeueAfter: recheck}, nil
}

// buying reports whether the request's status says its machines are being
// bought.
func buying(pr *provreqv1.ProvisioningRequest) bool {
	cond := conditions.Get(pr.Status.Conditions, provreqv1.Provisioned)
	return cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == ReasonProvisioning
}

// apply writes a pass's outcome. done means the request needs nothing more
// until its status changes.
func (c *Controller) apply(ctx context.Context, pr *provreqv1.ProvisioningRequest, e *entry, o provisioning.Outcome) (bool, error) {
	key := pr.Namespace + "/" + pr.Name
	checkOnly := pr.Spec.ProvisioningClassName == provreqv1.ProvisioningClassCheckCapacity
	switch {
	case o.Placed && len(o.Claims) == 0:
		msg := "the pods fit on existing capacity, booked for them"
		if o.NewNodes > 0 {
			msg = fmt.Sprintf("the pods fit on %d machines Stowage can buy ($%.4f/h); nothing was bought", o.NewNodes, o.CostPerHour)
		}
		c.set(pr, provreqv1.Provisioned, metav1.ConditionTrue, ReasonCapacityIsFound, msg)
		c.settle(e)
		return true, c.markBooked(ctx, key)
	case o.Placed:
		c.set(pr, provreqv1.Provisioned, metav1.ConditionFalse, ReasonProvisioning,
			fmt.Sprintf("buying %d machines all at once: %v", len(o.Claims), o.Claims))
		c.mu.Lock()
		e.phase, e.claims = phaseBuying, o.Claims
		c.mu.Unlock()
		return false, nil
	case checkOnly && pr.Spec.Parameters[provreqv1.ParameterNoRetry] != "true":
		c.set(pr, provreqv1.Provisioned, metav1.ConditionFalse, ReasonCapacityIsNotFound,
			"capacity is not found; Stowage checks again: "+o.Reason)
		return false, nil
	default:
		c.set(pr, provreqv1.Failed, metav1.ConditionTrue, ReasonCapacityIsNotFound, "capacity is not found: "+o.Reason)
		c.events.Eventf(pr, nil, "Warning", ReasonCapacityIsNotFound, "Provision", "%s", truncate(o.Reason))
		return true, c.release(ctx, key)
	}
}

// watchLaunches waits for the machines bought for a request to launch. If
// any is gone, the gang was released after a capacity error: the request is
// planned again, up to MaxAttempts plans.
func (c *Controller) watchLaunches(ctx context.Context, pr *provreqv1.ProvisioningRequest, e *entry, names []string) (reconcile.Result, error) {
	key := pr.Namespace + "/" + pr.Name
	launched := 0
	var gone []string
	for _, name := range names {
		// The cluster view, not the cache: provisioning records a claim
		// there as it writes it, so a claim the cache has not seen yet is
		// never taken for one that is gone.
		claim := c.cluster.NodeClaim(name)
		switch {
		case claim == nil || claim.DeletionTimestamp != nil:
			gone = append(gone, name)
		case conditions.IsTrue(claim.Status.Conditions, v1.ConditionLaunched):
			launched++
		}
	}
	if len(gone) > 0 {
		c.cluster.Unbook(key)
		c.mu.Lock()
		e.attempts++
		attempts := e.attempts
		e.phase, e.claims = phaseWanted, nil
		c.mu.Unlock()
		if attempts >= c.opts.MaxAttempts {
			msg := fmt.Sprintf("machines could not all be bought in %d plans; the last plan lost %v to capacity errors", attempts, gone)
			c.set(pr, provreqv1.Failed, metav1.ConditionTrue, ReasonCapacityIsNotFound, msg)
			c.events.Eventf(pr, nil, "Warning", ReasonCapacityIsNotFound, "Provision", "%s", msg)
			return reconcile.Result{}, c.release(ctx, key)
		}
		c.set(pr, provreqv1.Provisioned, metav1.ConditionFalse, ReasonReplanning,
			fmt.Sprintf("machines %v could not be bought; every machine of the plan was released and the pods are planned again (plan %d of %d)",
				gone, attempts+1, c.opts.MaxAttempts))
		if c.trigger != nil {
			c.trigger.Trigger()
		}
		return reconcile.Result{RequeueAfter: recheck}, nil
	}
	if launched < len(names) {
		return reconcile.Result{RequeueAfter: recheck}, nil
	}
	c.set(pr, provreqv1.Provisioned, metav1.ConditionTrue, ReasonProvisioned,
		fmt.Sprintf("bought %d machines for the pods: %v", len(names), names))
	c.events.Eventf(pr, nil, "Normal", ReasonProvisioned, "Provision", "bought %d machines: %v", len(names), names)
	c.settle(e)
	return reconcile.Result{RequeueAfter: recheck}, nil
}

// hold keeps a Provisioned request's booking until it expires, and revokes
// it when capacity it holds is gone.
func (c *Controller) hold(ctx context.Context, pr *provreqv1.ProvisioningRequest) (reconcile.Result, error) {
	key := pr.Namespace + "/" + pr.Name
	since := conditions.Get(pr.Status.Conditions, provreqv1.Provisioned).LastTransitionTime.Time
	left := c.opts.BookingTime - c.clock.Since(since)
	if left <= 0 {
		c.set(pr, provreqv1.BookingExpired, metav1.ConditionTrue, ReasonBookingExpired,
			fmt.Sprintf("capacity was held for the request's pods for %s", c.opts.BookingTime))
		return reconcile.Result{}, c.release(ctx, key)
	}
	booking := c.cluster.Booking(key)
	if booking == nil {
		// A restart lost the in-memory booking: hold the machines bought for
		// the request again (capacity booked on existing nodes is not
		// recorded and is not held again).
		rebuilt, err := c.rebook(ctx, pr)
		if err != nil {
			return reconcile.Result{}, err
		}
		booking = rebuilt
	}
	for target := range booking {
		if !c.cluster.Exists(target) {
			msg := fmt.Sprintf("%s, held for the request's pods, is gone", target)
			c.set(pr, provreqv1.CapacityRevoked, metav1.ConditionTrue, ReasonCapacityRevoked, msg)
			c.events.Eventf(pr, nil, "Warning", ReasonCapacityRevoked, "Provision", "%s", msg)
			return reconcile.Result{}, c.release(ctx, key)
		}
	}
	c.settle(c.entry(key))
	return reconcile.Result{RequeueAfter: min(left, recheck)}, nil
}

// release forgets a request: no more planning, its booking freed and its
// claims no longer marked as held.
func (c *Controller) release(ctx context.Context, key string) error {
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
	c.cluster.Unbook(key)
	claims := &v1.NodeClaimList{}
	if err := c.client.List(ctx, claims); err != nil {
		return fmt.Errorf("listing nodeclaims held for %s: %w", key, err)
	}
	for i := range claims.Items {
		cl := &claims.Items[i]
		if cl.Annotations[v1.AnnotationBookedBy] != key {
			continue
		}
		stored := cl.DeepCopy()
		delete(cl.Annotations, v1.AnnotationBookedBy)
		if err := c.client.Patch(ctx, cl, client.MergeFrom(stored)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("releasing nodeclaim %s held for %s: %w", cl.Name, key, err)
		}
	}
	return nil
}

// markBooked marks the NodeClaims of existing nodes booked for a request, so
// disruption leaves them alone while the booking lasts.
func (c *Controller) markBooked(ctx context.Context, key string) error {
	for target := range c.cluster.Booking(key) {
		claim := c.cluster.NodeClaim(target)
		if claim == nil {
			claims := &v1.NodeClaimList{}
			if err := c.client.List(ctx, claims); err != nil {
				return fmt.Errorf("listing nodeclaims: %w", err)
			}
			for i := range claims.Items {
				if claims.Items[i].Status.NodeName == target {
					claim = &claims.Items[i]
				}
			}
		}
		if claim == nil || claim.Annotations[v1.AnnotationBookedBy] == key {
			continue // not Stowage's node, or already marked
		}
		patched := claim.DeepCopy()
		if patched.Annotations == nil {
			patched.Annotations = map[string]string{}
		}
		patched.Annotations[v1.AnnotationBookedBy] = key
		if err := c.client.Patch(ctx, patched, client.MergeFrom(claim)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("marking nodeclaim %s as held for %s: %w", claim.Name, key, err)
		}
	}
	return nil
}

// rebook holds again the machines marked as bought for a request.
func (c *Controller) rebook(ctx context.Context, pr *provreqv1.ProvisioningRequest) (map[string]int, error) {
	key := pr.Namespace + "/" + pr.Name
	claims := &v1.NodeClaimList{}
	if err := c.client.List(ctx, claims); err != nil {
		return nil, fmt.Errorf("listing nodeclaims held for %s: %w", key, err)
	}
	var targets []string
	for _, cl := range claims.Items {
		if cl.Annotations[v1.AnnotationBookedBy] == key {
			targets = append(targets, cl.Name)
		}
	}
	if len(targets) == 0 {
		return nil, nil
	}
	pods, err := c.phantomPods(ctx, pr)
	if err != nil {
		return nil, nil //nolint:nilerr // the templates are gone; the machines stay marked until the booking expires
	}
	for i, p := range pods {
		c.cluster.Book(key, targets[i%len(targets)], p)
	}
	return c.cluster.Booking(key), nil
}

func (c *Controller) set(pr *provreqv1.ProvisioningRequest, t string, s metav1.ConditionStatus, reason, msg string) {
	conditions.Set(&pr.Status.Conditions, c.clock, pr.Generation, t, s, reason, truncate(msg))
}

func (c *Controller) entry(key string) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		e = &entry{}
		c.entries[key] = e
	}
	return e
}

func (c *Controller) settle(e *entry) {
	c.mu.Lock()
	e.phase = phaseSettled
	c.mu.Unlock()
}

func validUntil(pr *provreqv1.ProvisioningRequest) (time.Duration, bool) {
	raw, ok := pr.Spec.Parameters[provreqv1.ParameterValidUntilSeconds]
	if !ok {
		return 0, false
	}
	s, err := strconv.Atoi(string(raw))
	if err != nil || s <= 0 {
		return 0, false
	}
	return time.Duration(s) * time.Second, true
}

func splitKey(key string) (string, string, bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], i > 0 && i < len(key)-1
		}
	}
	return "", "", false
}

func truncate(s string) string {
	const max = 1024
	if len(s) <= max {
		return s
	}
	return s[:max-3] + "..."
}

func skipNameValidation(skip bool) *bool {
	if !skip {
		return nil
	}
	return &skip
}
