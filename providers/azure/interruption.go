package azure

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// Node conditions AKS's node-problem-detector sets from the VM's scheduled
// events (the instance metadata service), so no agent of Stowage's own runs
// on the node.
const (
	ConditionPreemptionScheduled = "PreemptionScheduled"
	// ConditionPreemptScheduled is the spelling some node-problem-detector
	// configurations use; both are read.
	ConditionPreemptScheduled = "PreemptScheduled"
	ConditionVMEventScheduled = "VMEventScheduled"
)

// Defaults for InterruptionOptions left zero.
const (
	DefaultVMPollInterval = time.Minute
	// spotNotice is the least notice Azure gives a spot VM: 30 seconds.
	spotNotice  = 30 * time.Second
	eventBuffer = 256
)

// InterruptionOptions configure an InterruptionSource.
type InterruptionOptions struct {
	ClusterName   string
	ResourceGroup string
	// VMs lists the node resource group for the backstop; nil turns it off.
	VMs   VirtualMachinesAPI
	Clock clock.Clock
	// PollInterval is how often VMs are listed for the backstop.
	PollInterval time.Duration
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// InterruptionSource turns the Node conditions AKS sets for scheduled
// events (spot preemption, maintenance) into interruption events, and, as a
// backstop for notices that never arrived, lists the cluster's VMs and
// reports those that vanished or started deleting without Stowage asking.
//
// It is a controller (Register watches Nodes through the manager's cache)
// and the provider's InterruptionSource.
type InterruptionSource struct {
	opts   InterruptionOptions
	events chan cloudprovider.InterruptionEvent

	mu   sync.Mutex
	seen map[string]time.Time // condition keys already sent
	// deleting reports VMs Stowage itself is deleting; set by the provider.
	deleting func(vm string) bool
	// providerID names a VM's Node for the backstop; set by the provider.
	providerID func(vm string) string
}

// NewInterruptionSource fills defaults.
func NewInterruptionSource(opts InterruptionOptions) *InterruptionSource {
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultVMPollInterval
	}
	return &InterruptionSource{opts: opts, events: make(chan cloudprovider.InterruptionEvent, eventBuffer), seen: map[string]time.Time{}}
}

// SetClusterName sets the cluster whose VMs the backstop watches, for
// callers that learn it after building the source.
func (s *InterruptionSource) SetClusterName(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opts.ClusterName = name
}

// Name is the controller's name.
func (s *InterruptionSource) Name() string { return "azure.interruption" }

// Register watches Nodes whose conditions change.
func (s *InterruptionSource) Register(_ context.Context, mgr manager.Manager) error {
	changed := predicate.Funcs{
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*corev1.Node)
			n, ok2 := e.ObjectNew.(*corev1.Node)
			return !ok1 || !ok2 || interruptionKey(o) != interruptionKey(n)
		},
	}
	opts := controller.Options{}
	if s.opts.SkipNameValidation {
		opts.SkipNameValidation = &s.opts.SkipNameValidation
	}
	if err := builder.ControllerManagedBy(mgr).Named(s.Name()).WithOptions(opts).
		For(&corev1.Node{}, builder.WithPredicates(changed)).
		Complete(reconcile.AsReconciler[*corev1.Node](mgr.GetClient(), s)); err != nil {
		return fmt.Errorf("registering %s: %w", s.Name(), err)
	}
	return nil
}

// interruptionKey summarises a Node's interruption conditions.
func interruptionKey(n *corev1.Node) string {
	var b strings.Builder
	for _, c := range n.Status.Conditions {
		if isInterruptionCondition(string(c.Type)) {
			fmt.Fprintf(&b, "%s=%s@%s;", c.Type, c.Status, c.LastTransitionTime.UTC().Format(time.RFC3339))
		}
	}
	return b.String()
}

func isInterruptionCondition(t string) bool {
	return t == ConditionPreemptionScheduled || t == ConditionPreemptScheduled || t == ConditionVMEventScheduled
}

// Reconcile sends an event for each interruption condition of a Stowage
// Node that turned True, once per transition.
func (s *InterruptionSource) Reconcile(ctx context.Context, node *corev1.Node) (reconcile.Result, error) {
	if node.Spec.ProviderID == "" || node.Labels[v1.LabelNodePool] == "" {
		return reconcile.Result{}, nil
	}
	for _, c := range node.Status.Conditions {
		if c.Status != corev1.ConditionTrue || !isInterruptionCondition(string(c.Type)) {
			continue
		}
		ev, ok := eventFromCondition(node.Spec.ProviderID, c)
		if !ok {
			continue
		}
		key := node.Name + "/" + string(c.Type) + "/" + c.LastTransitionTime.UTC().Format(time.RFC3339Nano)
		s.mu.Lock()
		_, sent := s.seen[key]
		s.mu.Unlock()
		if sent {
			continue
		}
		select {
		case s.events <- ev:
			s.mu.Lock()
			s.seen[key] = s.opts.Clock.Now()
			s.gcSeenLocked()
			s.mu.Unlock()
			log.FromContext(ctx).Info("interruption notice from node condition", "node", node.Name, "condition", c.Type,
				"kind", ev.Kind, "deadline", ev.Deadline)
		default:
			// Nobody is reading yet (not the leader, or busy): try again shortly.
			return reconcile.Result{RequeueAfter: time.Second}, nil
		}
	}
	return reconcile.Result{}, nil
}

func (s *InterruptionSource) gcSeenLocked() {
	cutoff := s.opts.Clock.Now().Add(-24 * time.Hour)
	for k, t := range s.seen {
		if t.Before(cutoff) {
			delete(s.seen, k)
		}
	}
}

// timestamp finds a time in a condition message: scheduled events carry
// NotBefore in RFC 1123 form ("Mon, 19 Sep 2016 18:29:47 GMT"); RFC 3339 is
// accepted too.
var (
	rfc1123Re = regexp.MustCompile(`[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} (GMT|UTC)`)
	rfc3339Re = regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`)
)

func timestamp(msg string) (time.Time, bool) {
	if m := rfc1123Re.FindString(msg); m != "" {
		if t, err := time.Parse(time.RFC1123, strings.Replace(m, "UTC", "GMT", 1)); err == nil {
			return t, true
		}
	}
	if m := rfc3339Re.FindString(msg); m != "" {
		if t, err := time.Parse(time.RFC3339, m); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// eventFromCondition reads one True interruption condition. A preemption's
// deadline is the NotBefore in the message, else 30 seconds after the
// condition turned True; maintenance without a NotBefore is a hint. Freeze
// events (a pause of seconds) are not interruptions.
func eventFromCondition(pid string, c corev1.NodeCondition) (cloudprovider.InterruptionEvent, bool) {
	text := c.Reason + " " + c.Message
	lower := strings.ToLower(text)
	deadline, hasDeadline := timestamp(c.Message)
	ev := cloudprovider.InterruptionEvent{ProviderID: pid, Message: strings.TrimSpace(string(c.Type) + ": " + c.Message)}
	switch {
	case c.Type == ConditionPreemptionScheduled || c.Type == ConditionPreemptScheduled || strings.Contains(lower, "preempt"):
		ev.Kind = cloudprovider.InterruptionSpotReclaim
		if !hasDeadline {
			deadline = c.LastTransitionTime.Add(spotNotice)
		}
		ev.Deadline = deadline
	case strings.Contains(lower, "freeze"):
		return ev, false
	default:
		ev.Kind = cloudprovider.InterruptionScheduledMaintenance
		if hasDeadline {
			ev.Deadline = deadline
		}
	}
	return ev, true
}

// Interruptions implements cloudprovider.InterruptionSource: Node-condition
// events, and the VM-state backstop while ctx lasts.
func (s *InterruptionSource) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	out := make(chan cloudprovider.InterruptionEvent)
	go func() {
		defer close(out)
		s.mu.Lock()
		pid, deleting, cluster := s.providerID, s.deleting, s.opts.ClusterName
		s.mu.Unlock()
		var tick <-chan time.Time
		var timer clock.Timer
		if s.opts.VMs != nil && pid != nil {
			timer = s.opts.Clock.NewTimer(s.opts.PollInterval)
			defer timer.Stop()
			tick = timer.C()
		}
		logger := log.FromContext(ctx).WithName(Name).WithName("interruption")
		last := map[string]bool{} // VMs live at the previous poll
		for {
			var pending []cloudprovider.InterruptionEvent
			select {
			case <-ctx.Done():
				return
			case ev := <-s.events:
				pending = append(pending, ev)
			case <-tick:
				timer.Reset(s.opts.PollInterval)
				evs, live, err := s.pollVMs(ctx, cluster, last, pid, deleting)
				if err != nil {
					logger.Error(err, "listing VMs for the interruption backstop")
					continue
				}
				last, pending = live, evs
			}
			for _, ev := range pending {
				select {
				case out <- ev:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out, nil
}

// pollVMs lists the cluster's VMs and reports, as stopped, those live at the
// previous poll that are now gone or deleting without Stowage deleting them:
// an eviction whose notice was missed.
func (s *InterruptionSource) pollVMs(ctx context.Context, cluster string, last map[string]bool, pid func(string) string, deleting func(string) bool) ([]cloudprovider.InterruptionEvent, map[string]bool, error) {
	live := map[string]bool{}
	pager := s.opts.VMs.NewListPager(s.opts.ResourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, last, err
		}
		for _, vm := range page.Value {
			if vm == nil || tagMap(vm.Tags)[TagCluster] != cluster {
				continue
			}
			if !strings.EqualFold(provisioningState(vm), "Deleting") {
				live[strings.ToLower(deref(vm.Name))] = true
			}
		}
	}
	var out []cloudprovider.InterruptionEvent
	now := s.opts.Clock.Now()
	for name := range last {
		if live[name] || (deleting != nil && deleting(name)) {
			continue
		}
		out = append(out, cloudprovider.InterruptionEvent{ProviderID: pid(name), Kind: cloudprovider.InterruptionInstanceStopped,
			Deadline: now, Message: "VM " + name + " is gone or deleting, and Stowage did not delete it (spot eviction or out-of-band delete)"})
	}
	return out, live, nil
}

// markDeleting records VMs the provider is deleting, so the backstop does
// not report them.
func (p *Provider) markDeleting(vm string, on bool) {
	p.deletingMu.Lock()
	defer p.deletingMu.Unlock()
	key := strings.ToLower(vm)
	if on {
		p.deletingVMs[key] = p.clock.Now()
	} else {
		delete(p.deletingVMs, key)
	}
	cutoff := p.clock.Now().Add(-time.Hour)
	for k, t := range p.deletingVMs {
		if t.Before(cutoff) {
			delete(p.deletingVMs, k)
		}
	}
}

func (p *Provider) isDeleting(vm string) bool {
	p.deletingMu.Lock()
	defer p.deletingMu.Unlock()
	_, ok := p.deletingVMs[strings.ToLower(vm)]
	return ok
}
