// Package interruption reacts to the cloud taking a machine back: spot
// reclaims, rebalance hints, scheduled maintenance, stopped instances and
// reclaimed reservations. It cordons the node at once, tells the pods (an
// annotation and an Event, so training jobs can checkpoint), launches a
// replacement straight away, and drains the node before the deadline.
package interruption

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/disruption"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// Name is the controller's name in logs and metrics.
const Name = "interruption"

// Defaults for Options.
const (
	DefaultDrainLead     = time.Minute
	DefaultCheckInterval = 2 * time.Second
	DefaultHintTimeout   = 10 * time.Minute
	// DefaultWorkers handle events at once: a spot reclaim of a whole
	// capacity pool arrives as dozens of events with two minutes to act.
	DefaultWorkers = 8
)

// Deps are the controller's dependencies.
type Deps struct {
	Client        client.Client
	Source        cloudprovider.InterruptionSource
	CloudProvider disruption.InstanceTyper
	Solver        disruption.Solver
	Clock         clock.WithTicker
	Recorder      events.EventRecorder
	Options       Options
}

// Options tune the controller.
type Options struct {
	// DrainLead is how long before the deadline the drain starts at the
	// latest, whether or not the replacement is Ready: pods need that long
	// to stop and the machine's own shutdown takes the rest.
	DrainLead time.Duration
	// CheckInterval is how often interrupted nodes are looked at again.
	CheckInterval time.Duration
	// HintTimeout bounds the wait for a replacement after a hint without a
	// deadline; then the node is drained anyway, as the cloud asked.
	HintTimeout time.Duration
	// Workers is how many events are handled at once; events about one
	// machine are handled in order by one worker.
	Workers int
	// GangSources are the workload kinds opted in as gangs, as provisioning's.
	GangSources map[scheduling.GangSource]bool
}

// Controller consumes interruption events. It runs on the leader only.
type Controller struct {
	client client.Client
	source cloudprovider.InterruptionSource
	sim    *disruption.Simulator
	clock  clock.WithTicker
	events recorder
	opts   Options

	// mu guards tracked and locks only; each interruption is worked on
	// under its claim's lock, so events about different machines, and the
	// periodic check, proceed in parallel.
	mu sync.Mutex
	// tracked interruptions by NodeClaim name.
	tracked map[string]*interruption
	// locks serialize work on one claim.
	locks map[string]*sync.Mutex
}

type interruption struct {
	claim        string
	kind         cloudprovider.InterruptionKind
	deadline     time.Time // zero for a hint
	received     time.Time
	replacements []string
	// planned is set once the pods' new places are settled: replacements
	// launched, or none needed. Until then the node is not drained before
	// its deadline, and the plan is tried again every replanEvery.
	planned  bool
	replanAt time.Time
	// warned is set once the node is cordoned and its pods told; until
	// then progressOne tries again (a failed patch, or a leader that died
	// after marking the claim, left them undone).
	warned bool
	// cordoned is set once the node is tainted and the Interrupted event
	// sent, so that pods told late do not repeat them.
	cordoned bool
	acks     []func(context.Context) error
}

// replanEvery spaces the attempts to plan the replacement of an
// interrupted node that has none (the plan failed, or its replacements
// failed to launch), so a cluster without room does not re-run the solver
// every check.
const replanEvery = 30 * time.Second

// NewController builds the interruption controller.
func NewController(d Deps) *Controller {
	if d.Options.DrainLead <= 0 {
		d.Options.DrainLead = DefaultDrainLead
	}
	if d.Options.CheckInterval <= 0 {
		d.Options.CheckInterval = DefaultCheckInterval
	}
	if d.Options.HintTimeout <= 0 {
		d.Options.HintTimeout = DefaultHintTimeout
	}
	if d.Options.Workers <= 0 {
		d.Options.Workers = DefaultWorkers
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Recorder == nil {
		d.Recorder = &events.FakeRecorder{}
	}
	return &Controller{
		client:  d.Client,
		source:  d.Source,
		sim:     &disruption.Simulator{Solver: d.Solver, Cloud: d.CloudProvider, Gangs: disruption.GangsOf(d.Options.GangSources)},
		clock:   d.Clock,
		events:  recorder{d.Recorder},
		opts:    d.Options,
		tracked: map[string]*interruption{},
		locks:   map[string]*sync.Mutex{},
	}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register adds the loop to mgr.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if err := registerMetrics(); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	if err := mgr.Add(c); err != nil {
		return fmt.Errorf("registering %s loop: %w", Name, err)
	}
	return nil
}

// NeedLeaderElection keeps one consumer of the cloud's events.
func (c *Controller) NeedLeaderElection() bool { return true }

// Start consumes events until ctx is done. Events are handled by
// Options.Workers workers, all events about one machine by the same one, in
// order; the periodic check runs beside them.
func (c *Controller) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName(Name)
	ctx = log.IntoContext(ctx, logger)
	ch, err := c.source.Interruptions(ctx)
	if err != nil {
		return fmt.Errorf("subscribing to interruption events: %w", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	// An event whose handling failed comes back through retries after a
	// backoff: not every cloud delivers it again (GCP's and Azure's
	// notices are sent once).
	retries := make(chan queued)
	stop := make(chan struct{})
	queues := make([]chan queued, c.opts.Workers)
	for i := range queues {
		q := make(chan queued, 64)
		queues[i] = q
		wg.Go(func() {
			for item := range q {
				err := c.Handle(ctx, item.ev)
				last := item.attempt+1 >= handleAttempts
				switch {
				case err == nil:
					continue
				case errors.Is(err, errNotKnownYet) && last:
					logger.Info("interruption for a machine no nodeclaim claimed after retries; acknowledging",
						"providerID", item.ev.ProviderID, "kind", item.ev.Kind)
					actionsTotal.WithLabelValues(string(item.ev.Kind), "ignored").Inc()
					if err := ack(ctx, item.ev.Ack); err != nil {
						logger.Error(err, "acknowledging interruption", "providerID", item.ev.ProviderID)
					}
					continue
				case errors.Is(err, errNotKnownYet):
					logger.V(1).Info("interruption for a machine not known yet; retrying", "providerID", item.ev.ProviderID,
						"kind", item.ev.Kind, "attempt", item.attempt+1)
				default:
					logger.Error(err, "handling interruption", "providerID", item.ev.ProviderID, "kind", item.ev.Kind, "attempt", item.attempt+1)
				}
				if !last {
					go c.retryLater(item, retries, stop)
				}
			}
		})
	}
	defer func() {
		close(stop)
		for _, q := range queues {
			close(q)
		}
	}()
	wg.Go(func() {
		ticker := c.clock.NewTicker(c.opts.CheckInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C():
				if err := c.Progress(ctx); err != nil {
					logger.Error(err, "advancing interruptions")
				}
			}
		}
	})
	for {
		var item queued
		select {
		case <-ctx.Done():
			return nil
		case item = <-retries:
		case ev, ok := <-ch:
			if !ok {
				return nil
			}
			// Counted once here, not per attempt: a retried event is one event.
			eventsTotal.WithLabelValues(string(ev.Kind)).Inc()
			item = queued{ev: ev}
		}
		select {
		case queues[worker(item.ev.ProviderID, len(queues))] <- item:
		case <-ctx.Done():
			return nil
		}
	}
}

// queued is an event and how many times its handling has failed.
type queued struct {
	ev      cloudprovider.InterruptionEvent
	attempt int
}

// handleAttempts bounds how often one event is handled before it is given
// up (its deadline drains the node regardless once it is tracked).
const handleAttempts = 6

// retryLater sends item back after 1, 2, 4, 8 or 16 s, unless the
// controller stops first.
func (c *Controller) retryLater(item queued, retries chan<- queued, stop <-chan struct{}) {
	timer := c.clock.NewTimer(time.Second << item.attempt)
	defer timer.Stop()
	item.attempt++
	select {
	case <-timer.C():
		select {
		case retries <- item:
		case <-stop:
		}
	case <-stop:
	}
}

// worker picks the worker for a machine's events.
func worker(providerID string, n int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(providerID))
	return int(h.Sum32() % uint32(n))
}

// lock takes the claim's lock and returns its release.
func (c *Controller) lock(claim string) func() {
	c.mu.Lock()
	l := c.locks[claim]
	if l == nil {
		l = &sync.Mutex{}
		c.locks[claim] = l
	}
	c.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// tryLock takes the claim's lock if it is free.
func (c *Controller) tryLock(claim string) (func(), bool) {
	c.mu.Lock()
	l := c.locks[claim]
	if l == nil {
		l = &sync.Mutex{}
		c.locks[claim] = l
	}
	c.mu.Unlock()
	if !l.TryLock() {
		return nil, false
	}
	return l.Unlock, true
}

func (c *Controller) trackedFor(claim string) *interruption {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.tracked[claim]
}

func (c *Controller) track(t *interruption) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tracked[t.claim] = t
}

// adopt tracks t unless its claim is tracked already: an event handled
// meanwhile has the record that knows its replacements.
func (c *Controller) adopt(t *interruption) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tracked[t.claim] == nil {
		c.tracked[t.claim] = t
	}
}

// forget stops tracking an interruption whose claim is deleting or gone.
// Its lock stays (a holder may still be using it) until pruneLocks.
func (c *Controller) forget(claim string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tracked, claim)
}

// pruneLocks drops the locks of claims that no longer exist and are free.
func (c *Controller) pruneLocks(exists map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, l := range c.locks {
		if exists[name] || c.tracked[name] != nil || !l.TryLock() {
			continue
		}
		l.Unlock()
		delete(c.locks, name)
	}
}

// Handle reacts to one event: cordon, tell the pods, pre-spin a replacement,
// and drain right away when the deadline is already close.
func (c *Controller) Handle(ctx context.Context, ev cloudprovider.InterruptionEvent) error {
	now := c.clock.Now()
	logger := log.FromContext(ctx).WithValues("providerID", ev.ProviderID, "kind", ev.Kind)
	claim, err := c.claimFor(ctx, ev.ProviderID)
	if err != nil {
		return err
	}
	kind, deadline := ev.Kind, ev.Deadline
	if kind == cloudprovider.InterruptionInstanceStopped && deadline.IsZero() {
		// Already gone: nothing left to wait for.
		deadline = now
	}
	if claim != nil {
		// What the claim already records (an earlier event, maybe handled
		// by an earlier leader) stands unless this event is sooner: a hint
		// that comes after the reclaim, or again, takes no deadline away.
		if v := claim.Annotations[v1.AnnotationInterruption]; v != "" {
			rk, rd := parseAnnotation(v)
			kind, deadline = sooner(rk, rd, kind, deadline)
		}
	}
	if claim != nil && claim.DeletionTimestamp != nil {
		// Already draining: nothing to replace, but its pods (a training
		// job) still learn the deadline so they can checkpoint in time,
		// and the claim records it, so the drain deletes the pods in time
		// to stop before it rather than waiting on their budgets.
		t := &interruption{claim: claim.Name, kind: kind, deadline: deadline}
		if claim.Annotations[v1.AnnotationInterruption] != annotationValue(kind, deadline) {
			if err := c.markInterrupted(ctx, claim, t); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
		if err := c.warnNode(ctx, claim, t); err != nil {
			return err
		}
	}
	if claim == nil {
		// A claim whose launch just returned may not carry its providerID
		// yet; the event is tried again until it does.
		if launching, err := c.anyLaunching(ctx); err != nil || launching {
			return cmp.Or(err, errNotKnownYet)
		}
	}
	if claim == nil || claim.DeletionTimestamp != nil {
		logger.Info("interruption for a machine Stowage does not run or is already deleting; acknowledging")
		actionsTotal.WithLabelValues(string(ev.Kind), "ignored").Inc()
		return ack(ctx, ev.Ack)
	}
	unlock := c.lock(claim.Name)
	defer unlock()
	if t := c.trackedFor(claim.Name); t != nil {
		t.acks = append(t.acks, ev.Ack)
		// The cloud repeats itself, and a rebalance hint is often followed
		// by the reclaim: an earlier deadline is recorded on the claim and
		// told to the pods, as the first event was.
		if k, d := sooner(t.kind, t.deadline, kind, deadline); !d.Equal(t.deadline) {
			t.kind, t.deadline = k, d
			if err := c.markInterrupted(ctx, claim, t); err != nil {
				return err
			}
			if err := c.warnNode(ctx, claim, t); err != nil {
				return err
			}
		}
		c.recorded(ctx, t)
		return c.progressOne(ctx, now, t)
	}
	logger = logger.WithValues("nodeclaim", klog.KObj(claim))
	ctx = log.IntoContext(ctx, logger)
	received := now
	if cond := conditions.Get(claim.Status.Conditions, v1.ConditionInterrupted); cond != nil && cond.Status == metav1.ConditionTrue &&
		!cond.LastTransitionTime.IsZero() {
		// Marked by an earlier leader: a hint's wait runs from then.
		received = cond.LastTransitionTime.Time
	}
	t := &interruption{claim: claim.Name, kind: kind, deadline: deadline, received: received, acks: []func(context.Context) error{ev.Ack}}
	// Mark the claim first: the disruption controller leaves tainted nodes
	// of Interrupted claims alone.
	if err := c.markInterrupted(ctx, claim, t); err != nil {
		return err
	}
	c.track(t)
	c.recorded(ctx, t)
	node, pods, err := c.cordonAndWarn(ctx, claim, t)
	if err != nil {
		return err
	}
	// Replacements already in flight for this claim (a previous leader's,
	// or a disruption command's) are adopted, not bought again.
	inFlight, err := c.inFlight(ctx, claim)
	if err != nil {
		return err
	}
	if len(inFlight) > 0 {
		t.replacements, t.planned = inFlight, true
		logger.Info("adopted replacements already in flight", "replacements", inFlight)
	} else {
		c.replan(ctx, claim, node, pods, t)
	}
	return c.progressOne(ctx, now, t)
}

// recorded acknowledges t's events once its claim carries the interruption:
// a new leader resumes from that mark, so the queue need not hold them until
// the node drains (SQS redelivered each one every visibility timeout). A
// failed acknowledgement is tried again when t ends.
func (c *Controller) recorded(ctx context.Context, t *interruption) {
	if err := ackAll(ctx, t.acks); err != nil {
		log.FromContext(ctx).Error(err, "acknowledging interruption events; trying again when the node drains")
		return
	}
	t.acks = nil
}

// cordonAndWarn taints the claim's node and tells its pods about t, once;
// it returns the node (nil before it registers) and the pods to move.
func (c *Controller) cordonAndWarn(ctx context.Context, claim *v1.NodeClaim, t *interruption) (*corev1.Node, []*corev1.Pod, error) {
	node, err := claims.NodeFor(ctx, c.client, claim)
	if err != nil || node == nil {
		return node, nil, err
	}
	if err := disruption.Taint(ctx, c.client, node); err != nil {
		return nil, nil, err
	}
	value := annotationValue(t.kind, t.deadline)
	if !t.cordoned {
		actionsTotal.WithLabelValues(string(t.kind), "cordon").Inc()
		c.events.interrupted(claim, node, value)
		t.cordoned = true
	}
	pods, err := c.warnPods(ctx, node, t)
	if err != nil {
		// A pod that could not be told (a webhook refusing the patch) is
		// told on a later check; the replacement and the drain do not wait
		// for it, since the cloud takes the machine at its deadline anyway.
		log.FromContext(ctx).Error(err, "telling the pods of an interrupted node; trying again", "node", node.Name)
		return node, pods, nil
	}
	t.warned = true
	return node, pods, nil
}

// warnNode tells the pods on the claim's node about t, if it has a node.
func (c *Controller) warnNode(ctx context.Context, claim *v1.NodeClaim, t *interruption) error {
	node, err := claims.NodeFor(ctx, c.client, claim)
	if err != nil || node == nil {
		return err
	}
	_, err = c.warnPods(ctx, node, t)
	return err
}

// inFlight names the claims, not being deleted, launched to replace claim:
// by an earlier leader of this controller, or by the disruption command
// the claim is part of.
func (c *Controller) inFlight(ctx context.Context, claim *v1.NodeClaim) ([]string, error) {
	want := map[string]bool{}
	for _, v := range disruption.ReplacedBy(claim) {
		want[v] = true
	}
	list := &v1.NodeClaimList{}
	if err := c.client.List(ctx, list); err != nil {
		return nil, fmt.Errorf("listing nodeclaims: %w", err)
	}
	var out []string
	for i := range list.Items {
		r := &list.Items[i]
		if r.DeletionTimestamp == nil && want[r.Annotations[disruption.AnnotationReplacementFor]] {
			out = append(out, r.Name)
		}
	}
	return out, nil
}

// replan plans the node's pods without it and launches what the plan buys,
// setting t.planned when their new places are settled. A failure is logged:
// the node then waits for its deadline, and progressOne tries again.
func (c *Controller) replan(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node, pods []*corev1.Pod, t *interruption) {
	t.replanAt = c.clock.Now().Add(replanEvery)
	if err := c.replace(ctx, claim, node, pods, t); err != nil {
		log.FromContext(ctx).Error(err, "pre-spinning a replacement failed; the node drains at its deadline unless a later attempt succeeds")
	}
}

// Progress drains interrupted nodes whose replacement is Ready or whose
// deadline is near, and adopts Interrupted claims a previous leader left.
func (c *Controller) Progress(ctx context.Context) error {
	now := c.clock.Now()
	list := &v1.NodeClaimList{}
	if err := c.client.List(ctx, list); err != nil {
		return fmt.Errorf("listing nodeclaims: %w", err)
	}
	// Claims in flight by what they replace: "interruption/<claim>" for
	// this controller's, a command's ID for a disruption command's.
	byFor := map[string][]string{}
	exists := make(map[string]bool, len(list.Items))
	for i := range list.Items {
		claim := &list.Items[i]
		exists[claim.Name] = true
		if of := claim.Annotations[disruption.AnnotationReplacementFor]; of != "" && claim.DeletionTimestamp == nil {
			byFor[of] = append(byFor[of], claim.Name)
		}
	}
	for i := range list.Items {
		claim := &list.Items[i]
		if c.trackedFor(claim.Name) != nil || claim.DeletionTimestamp != nil ||
			!conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted) {
			continue
		}
		// Left by an earlier leader: its replacements are found by their
		// annotation, its own or those of a disruption command the claim is
		// part of (as Handle adopts them); the wait for a hint's
		// replacement runs from when the claim was marked, not from now.
		kind, deadline := parseAnnotation(claim.Annotations[v1.AnnotationInterruption])
		replacements := byFor[replacementPrefix+claim.Name]
		for _, id := range disruption.ReplacedBy(claim) {
			replacements = append(replacements, byFor[id]...)
		}
		received := now
		if cond := conditions.Get(claim.Status.Conditions, v1.ConditionInterrupted); cond != nil && !cond.LastTransitionTime.IsZero() {
			received = cond.LastTransitionTime.Time
		}
		c.adopt(&interruption{claim: claim.Name, kind: kind, deadline: deadline, received: received,
			replacements: replacements, planned: len(replacements) > 0})
	}
	c.pruneLocks(exists)
	c.mu.Lock()
	all := make([]*interruption, 0, len(c.tracked))
	for _, t := range c.tracked {
		all = append(all, t)
	}
	c.mu.Unlock()
	var errs []error
	for _, t := range all {
		unlock, ok := c.tryLock(t.claim)
		if !ok {
			continue // an event about it is being handled
		}
		errs = append(errs, c.progressOne(ctx, now, t))
		unlock()
	}
	return errors.Join(errs...)
}

// progressOne drains t's node when it is time, and forgets t once its claim is deleting.
func (c *Controller) progressOne(ctx context.Context, now time.Time, t *interruption) error {
	claim := &v1.NodeClaim{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: t.claim}, claim); err != nil {
		if client.IgnoreNotFound(err) == nil {
			c.forget(t.claim)
			return ackAll(ctx, t.acks)
		}
		return fmt.Errorf("getting nodeclaim %s: %w", t.claim, err)
	}
	if claim.DeletionTimestamp != nil {
		c.forget(t.claim)
		return ackAll(ctx, t.acks)
	}
	if !t.warned {
		if _, _, err := c.cordonAndWarn(ctx, claim, t); err != nil {
			return err
		}
	}
	if err := c.dropGone(ctx, t); err != nil {
		return err
	}
	if !t.planned && !now.Before(t.replanAt) {
		node, err := claims.NodeFor(ctx, c.client, claim)
		if err != nil {
			return err
		}
		pods, err := c.movablePods(ctx, node)
		if err != nil {
			return err
		}
		c.replan(ctx, claim, node, pods, t)
	}
	ready, err := c.replacementsReady(ctx, t)
	if err != nil {
		return err
	}
	var why string
	switch {
	case ready:
		why = "replacement is ready"
	case !t.deadline.IsZero() && !now.Before(t.deadline.Add(-c.opts.DrainLead)):
		why = fmt.Sprintf("deadline %s is near", t.deadline.UTC().Format(time.RFC3339))
	case t.deadline.IsZero() && now.Sub(t.received) >= c.opts.HintTimeout:
		why = "replacement not ready after " + c.opts.HintTimeout.String()
	default:
		return nil
	}
	log.FromContext(ctx).Info("draining interrupted node", "nodeclaim", t.claim, "kind", t.kind, "why", why)
	if err := c.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting interrupted nodeclaim %s: %w", t.claim, err)
	}
	actionsTotal.WithLabelValues(string(t.kind), "drain").Inc()
	c.events.draining(claim, why)
	c.forget(t.claim)
	return ackAll(ctx, t.acks)
}

// replacementsReady reports whether the pods' new places are settled and
// every replacement is Ready.
func (c *Controller) replacementsReady(ctx context.Context, t *interruption) (bool, error) {
	if !t.planned {
		return false, nil
	}
	for _, name := range t.replacements {
		r := &v1.NodeClaim{}
		if err := c.client.Get(ctx, client.ObjectKey{Name: name}, r); err != nil {
			if client.IgnoreNotFound(err) == nil {
				return false, nil
			}
			return false, fmt.Errorf("getting replacement nodeclaim %s: %w", name, err)
		}
		if r.DeletionTimestamp != nil || !conditions.IsTrue(r.Status.Conditions, v1.ConditionReady) {
			return false, nil
		}
	}
	return true, nil
}

// dropGone forgets replacements that are gone or being deleted (a launch
// that failed); when none is left the pods need a plan again. One failed
// replacement beside others that stand is not replanned: planning again
// would buy the others twice.
func (c *Controller) dropGone(ctx context.Context, t *interruption) error {
	if len(t.replacements) == 0 {
		return nil
	}
	var kept []string
	for _, name := range t.replacements {
		r := &v1.NodeClaim{}
		err := c.client.Get(ctx, client.ObjectKey{Name: name}, r)
		if client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("getting replacement nodeclaim %s: %w", name, err)
		}
		if err == nil && r.DeletionTimestamp == nil {
			kept = append(kept, name)
		}
	}
	if len(kept) == 0 {
		log.FromContext(ctx).Info("every replacement of the interrupted node is gone; planning again", "nodeclaim", t.claim, "replacements", t.replacements)
		t.planned = false
	}
	t.replacements = kept
	return nil
}

// errNotKnownYet is Handle's answer to an event no claim's providerID
// matches while some claim is still launching: it may be that claim's.
var errNotKnownYet = errors.New("no nodeclaim has this providerID yet, and some are launching")

// anyLaunching reports whether a claim not being deleted has no providerID
// yet.
func (c *Controller) anyLaunching(ctx context.Context) (bool, error) {
	list := &v1.NodeClaimList{}
	if err := c.client.List(ctx, list); err != nil {
		return false, fmt.Errorf("listing nodeclaims: %w", err)
	}
	return slices.ContainsFunc(list.Items, func(c v1.NodeClaim) bool {
		return c.Status.ProviderID == "" && c.DeletionTimestamp == nil
	}), nil
}

func (c *Controller) claimFor(ctx context.Context, providerID string) (*v1.NodeClaim, error) {
	list := &v1.NodeClaimList{}
	if err := c.client.List(ctx, list, client.MatchingFields{index.NodeClaimProviderID: providerID}); err != nil {
		return nil, fmt.Errorf("listing nodeclaims with providerID %s: %w", providerID, err)
	}
	if len(list.Items) == 0 {
		return nil, nil
	}
	return &list.Items[0], nil
}

// markInterrupted sets the Interrupted condition and the annotation that
// lets a new leader pick the interruption up.
func (c *Controller) markInterrupted(ctx context.Context, claim *v1.NodeClaim, t *interruption) error {
	value := annotationValue(t.kind, t.deadline)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		fresh := &v1.NodeClaim{}
		if err := c.client.Get(ctx, client.ObjectKeyFromObject(claim), fresh); err != nil {
			return err
		}
		stored := fresh.DeepCopy()
		if fresh.Annotations == nil {
			fresh.Annotations = map[string]string{}
		}
		fresh.Annotations[v1.AnnotationInterruption] = value
		if err := c.client.Patch(ctx, fresh, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
			return err
		}
		stored = fresh.DeepCopy()
		conditions.Set(&fresh.Status.Conditions, c.clock, fresh.Generation, v1.ConditionInterrupted,
			metav1.ConditionTrue, string(t.kind), "the cloud announced "+value)
		return c.client.Status().Patch(ctx, fresh, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{}))
	})
	if err != nil {
		return fmt.Errorf("marking nodeclaim %s interrupted: %w", claim.Name, err)
	}
	return nil
}

// warnPods annotates the node's pods with the interruption and sends each an
// Event; it returns the pods that will need a new place.
func (c *Controller) warnPods(ctx context.Context, node *corev1.Node, t *interruption) ([]*corev1.Pod, error) {
	list := &corev1.PodList{}
	if err := c.client.List(ctx, list, client.MatchingFields{index.PodNodeName: node.Name}); err != nil {
		return nil, fmt.Errorf("listing pods on node %s: %w", node.Name, err)
	}
	value := annotationValue(t.kind, t.deadline)
	var out []*corev1.Pod
	var errs []error
	for i := range list.Items {
		p := &list.Items[i]
		if scheduling.Finished(p) {
			continue
		}
		if p.Annotations[v1.AnnotationInterruption] != value {
			stored := p.DeepCopy()
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[v1.AnnotationInterruption] = value
			if err := c.client.Patch(ctx, p, client.MergeFrom(stored)); client.IgnoreNotFound(err) != nil {
				errs = append(errs, fmt.Errorf("annotating pod %s/%s: %w", p.Namespace, p.Name, err))
			}
			// Only while its annotation is not the value: a pod told
			// already is not told again at every check while another
			// one is retried.
			c.events.podInterrupted(p, node, value)
		}
		if movable(p) {
			out = append(out, p)
		}
	}
	// A gang checkpoints together: its pods on other machines get the signal too.
	pods := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		pods[i] = &list.Items[i]
	}
	errs = append(errs, disruption.SignalGangPeers(ctx, c.client, pods, value, c.opts.GangSources))
	return out, errors.Join(errs...)
}

// movablePods are the pods on node that need a new node when it goes.
func (c *Controller) movablePods(ctx context.Context, node *corev1.Node) ([]*corev1.Pod, error) {
	if node == nil {
		return nil, nil
	}
	list := &corev1.PodList{}
	if err := c.client.List(ctx, list, client.MatchingFields{index.PodNodeName: node.Name}); err != nil {
		return nil, fmt.Errorf("listing pods on node %s: %w", node.Name, err)
	}
	var out []*corev1.Pod
	for i := range list.Items {
		if p := &list.Items[i]; !scheduling.Finished(p) && movable(p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// replace plans the node's pods without it and launches the new machines.
// The pods' new places are settled (t.planned) when it launched machines
// for them, or when none are needed; a plan that leaves pods unschedulable
// and buys nothing is not.
func (c *Controller) replace(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node, pods []*corev1.Pod, t *interruption) error {
	if len(pods) == 0 {
		t.planned = true
		return nil
	}
	// Machines launched before a failure stand: planning again would buy them twice.
	defer func() { t.planned = t.planned || len(t.replacements) > 0 }()
	st, err := disruption.ReadState(ctx, c.client, c.clock.Now())
	if err != nil {
		return err
	}
	cand := &disruption.Candidate{Claim: claim, Node: node, Pods: pods}
	sim, err := c.sim.Simulate(ctx, st, []*disruption.Candidate{cand}, nil)
	if err != nil {
		return err
	}
	for _, n := range sim.Plan.NewNodes {
		pool := st.Pools[n.NodePool]
		if pool == nil {
			return fmt.Errorf("plan names nodepool %q, which is not in the cluster", n.NodePool)
		}
		r, err := disruption.ReplacementClaim(pool, n, claim, st.Now)
		if err != nil {
			return err
		}
		// A new leader finds the replacements by this annotation.
		r.Annotations[disruption.AnnotationReplacementFor] = replacementPrefix + claim.Name
		if err := c.client.Create(ctx, r); err != nil {
			return fmt.Errorf("creating replacement nodeclaim in nodepool %s: %w", pool.Name, err)
		}
		t.replacements = append(t.replacements, r.Name)
	}
	if len(t.replacements) > 0 {
		actionsTotal.WithLabelValues(string(t.kind), "replace").Inc()
		c.events.replacing(claim, t.replacements)
		log.FromContext(ctx).Info("launched replacements for interrupted node", "replacements", t.replacements,
			"unschedulable", len(sim.Plan.Unschedulable))
	}
	if len(sim.Plan.NewNodes) == 0 && len(sim.Plan.Unschedulable) > 0 {
		return fmt.Errorf("%d of the node's pods fit nowhere: %s", len(sim.Plan.Unschedulable), sim.Plan.Unschedulable[0].Reason)
	}
	t.planned = true
	return nil
}

// replacementPrefix marks the replacement-for annotation of claims launched
// for an interrupted claim: "interruption/<claim name>".
const replacementPrefix = disruption.InterruptionReplacementPrefix

// movable reports whether a pod needs a new node when this one goes.
func movable(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	if scheduling.DaemonSetPod(p) {
		return false
	}
	return true
}

func ack(ctx context.Context, f func(context.Context) error) error {
	if f == nil {
		return nil
	}
	if err := f(ctx); err != nil {
		return fmt.Errorf("acknowledging interruption event: %w", err)
	}
	return nil
}

func ackAll(ctx context.Context, fs []func(context.Context) error) error {
	var errs []error
	for _, f := range fs {
		errs = append(errs, ack(ctx, f))
	}
	return errors.Join(errs...)
}

// sooner is the interruption that ends first: the second only when its
// deadline is earlier than the first's, or the first has none (a hint).
func sooner(kind cloudprovider.InterruptionKind, deadline time.Time, otherKind cloudprovider.InterruptionKind,
	other time.Time) (cloudprovider.InterruptionKind, time.Time) {
	if !other.IsZero() && (deadline.IsZero() || other.Before(deadline)) {
		return otherKind, other
	}
	return kind, deadline
}

// annotationValue is the pods' and claim's stowage.dev/interruption value:
// the kind, and the deadline in RFC 3339 when there is one, e.g.
// "SpotReclaim deadline=2026-11-27T12:02:00Z".
func annotationValue(kind cloudprovider.InterruptionKind, deadline time.Time) string {
	if deadline.IsZero() {
		return string(kind)
	}
	return string(kind) + " deadline=" + deadline.UTC().Format(time.RFC3339)
}

func parseAnnotation(s string) (cloudprovider.InterruptionKind, time.Time) {
	kind, deadline := v1.ParseInterruption(s)
	return cloudprovider.InterruptionKind(kind), deadline
}
