package interruption

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/disruption"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

var gpu1 = &cloudprovider.InstanceType{
	Name: "gpu1",
	Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods: resource.MustParse("110"), v1.ResourceNvidiaGPU: resource.MustParse("1")},
	Offerings: []cloudprovider.Offering{{Zone: "zone-a", CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.4, Available: true}},
}

type oneType struct{}

func (oneType) InstanceTypes(context.Context, *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	return []*cloudprovider.InstanceType{gpu1}, nil
}

// oneNode plans every pod onto one new gpu1 spot machine.
func oneNode(_ context.Context, s *solver.Snapshot) (*solver.Plan, error) {
	if len(s.Pods) == 0 {
		return &solver.Plan{}, nil
	}
	n := &solver.NewNode{NodePool: "p", Pods: s.Pods, Choices: []solver.Choice{{InstanceType: gpu1, Offering: gpu1.Offerings[0]}}}
	return &solver.Plan{NewNodes: []*solver.NewNode{n}, CostPerHour: n.PricePerHour()}, nil
}

type env struct {
	client   client.Client
	clock    *clocktesting.FakeClock
	ctrl     *Controller
	recorder *events.FakeRecorder
	acks     atomic.Int32
}

const pid = "fake://zone-a/i-1"

func newEnv(t *testing.T, pods int, mutate ...func(*v1.NodeClaim)) *env {
	t.Helper()
	e := &env{clock: clocktesting.NewFakeClock(start), recorder: events.NewFakeRecorder(100)}
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{ExpireAfter: v1.Never}}}}
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "c1", Labels: map[string]string{v1.LabelNodePool: "p"}},
		Spec: v1.NodeClaimSpec{ExpireAfter: v1.Never,
			Offerings: []v1.OfferingChoice{{InstanceType: "gpu1", Zone: "zone-a", CapacityType: v1.CapacityTypeSpot}}},
		Status: v1.NodeClaimStatus{ProviderID: pid, NodeName: "n1", Allocatable: gpu1.Capacity,
			Conditions: []metav1.Condition{{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready",
				LastTransitionTime: metav1.NewTime(start)}}},
	}
	for _, m := range mutate {
		m(claim)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelNodePool: "p"}},
		Spec: corev1.NodeSpec{ProviderID: pid}, Status: corev1.NodeStatus{Allocatable: gpu1.Capacity}}
	objs := []client.Object{pool, claim, node}
	for i := 0; i < pods; i++ {
		objs = append(objs, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "train-" + string(rune('a'+i))},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("1")}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning},
		})
	}
	e.client = cloudtest.NewClientBuilder().WithObjects(objs...).Build()
	e.newLeader()
	return e
}

func (e *env) event(kind cloudprovider.InterruptionKind, deadline time.Time) cloudprovider.InterruptionEvent {
	return cloudprovider.InterruptionEvent{ProviderID: pid, Kind: kind, Deadline: deadline,
		Ack: func(context.Context) error { e.acks.Add(1); return nil }}
}

func (e *env) claimGone(t *testing.T) bool {
	t.Helper()
	err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, &v1.NodeClaim{})
	if client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	return err != nil
}

func (e *env) replacements(t *testing.T) []string {
	t.Helper()
	list := &v1.NodeClaimList{}
	if err := e.client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range list.Items {
		if c.Name != "c1" {
			out = append(out, c.Name)
		}
	}
	return out
}

func (e *env) setReady(t *testing.T, name string) {
	t.Helper()
	c := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: name}, c); err != nil {
		t.Fatal(err)
	}
	conditions.Set(&c.Status.Conditions, e.clock, 0, v1.ConditionReady, metav1.ConditionTrue, "Ready", "")
	if err := e.client.Status().Update(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

func (e *env) progress(t *testing.T) {
	t.Helper()
	if err := e.ctrl.Progress(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSpotReclaimReplacesThenDrains(t *testing.T) {
	e := newEnv(t, 2)
	ctx := context.Background()
	deadline := start.Add(2 * time.Minute)
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionSpotReclaim, deadline)); err != nil {
		t.Fatal(err)
	}
	claim := &v1.NodeClaim{}
	if err := e.client.Get(ctx, client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatal(err)
	}
	want := "SpotReclaim deadline=2026-11-27T12:02:00Z"
	if c := conditions.Get(claim.Status.Conditions, v1.ConditionInterrupted); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Interrupted condition = %+v, want True", c)
	}
	if diff := cmp.Diff(want, claim.Annotations[v1.AnnotationInterruption]); diff != "" {
		t.Errorf("claim annotation (-want +got):\n%s", diff)
	}
	node := &corev1.Node{}
	if err := e.client.Get(ctx, client.ObjectKey{Name: "n1"}, node); err != nil {
		t.Fatal(err)
	}
	if len(node.Spec.Taints) != 1 || node.Spec.Taints[0].Key != v1.DisruptedTaintKey {
		t.Errorf("node taints = %v, want the disrupted taint", node.Spec.Taints)
	}
	pods := &corev1.PodList{}
	if err := e.client.List(ctx, pods); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if diff := cmp.Diff(want, p.Annotations[v1.AnnotationInterruption]); diff != "" {
			t.Errorf("pod %s annotation (-want +got):\n%s", p.Name, diff)
		}
	}
	repl := e.replacements(t)
	if len(repl) != 1 {
		t.Fatalf("replacements = %v, want one", repl)
	}
	// Acknowledged once recorded on the claim, so the queue stops
	// redelivering it; a new leader would resume from the claim's mark.
	if got := e.acks.Load(); got != 1 {
		t.Errorf("acks after the event was recorded = %d, want 1", got)
	}
	e.clock.Step(30 * time.Second)
	e.progress(t)
	if e.claimGone(t) {
		t.Fatal("drained before the replacement was ready or the deadline near")
	}
	e.setReady(t, repl[0])
	e.progress(t)
	if !e.claimGone(t) {
		t.Fatal("not drained once the replacement was ready")
	}
	if got := e.acks.Load(); got != 1 {
		t.Errorf("acks = %d, want 1", got)
	}
	var evs []string
	for len(e.recorder.Events) > 0 {
		evs = append(evs, <-e.recorder.Events)
	}
	if got := strings.Join(evs, "\n"); strings.Count(got, ReasonInterrupted) < 4 || !strings.Contains(got, "checkpoint") {
		t.Errorf("events:\n%s\nwant Interrupted on the claim, the node and each pod", got)
	}
}

func TestDeadlineDrainsWithoutReadyReplacement(t *testing.T) {
	e := newEnv(t, 1)
	if err := e.ctrl.Handle(context.Background(), e.event(cloudprovider.InterruptionSpotReclaim, start.Add(2*time.Minute))); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(59 * time.Second)
	e.progress(t)
	if e.claimGone(t) {
		t.Fatal("drained more than DrainLead before the deadline")
	}
	e.clock.Step(time.Second)
	e.progress(t)
	if !e.claimGone(t) {
		t.Fatal("not drained DrainLead before the deadline")
	}
}

func TestHintWaitsForReplacement(t *testing.T) {
	e := newEnv(t, 1)
	if err := e.ctrl.Handle(context.Background(), e.event(cloudprovider.InterruptionRebalanceHint, time.Time{})); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(DefaultHintTimeout - time.Second)
	e.progress(t)
	if e.claimGone(t) {
		t.Fatal("hint drained before its replacement was ready")
	}
	e.clock.Step(time.Second)
	e.progress(t)
	if !e.claimGone(t) {
		t.Fatal("hint not drained after HintTimeout")
	}
}

func TestInstanceStoppedDrainsAtOnce(t *testing.T) {
	e := newEnv(t, 1)
	if err := e.ctrl.Handle(context.Background(), e.event(cloudprovider.InterruptionInstanceStopped, time.Time{})); err != nil {
		t.Fatal(err)
	}
	if !e.claimGone(t) {
		t.Fatal("stopped instance not drained at once")
	}
	if len(e.replacements(t)) != 1 {
		t.Errorf("replacements = %v, want one pre-spun", e.replacements(t))
	}
}

func TestUnknownMachineIsAcknowledged(t *testing.T) {
	e := newEnv(t, 0)
	ev := e.event(cloudprovider.InterruptionSpotReclaim, start.Add(time.Minute))
	ev.ProviderID = "fake://zone-a/other"
	if err := e.ctrl.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if e.acks.Load() != 1 || e.claimGone(t) {
		t.Errorf("acks = %d, claim gone = %v; want acknowledged and untouched", e.acks.Load(), e.claimGone(t))
	}
}

func TestAdoptsInterruptionAfterRestart(t *testing.T) {
	deadline := start.Add(5 * time.Minute)
	e := newEnv(t, 1, func(c *v1.NodeClaim) {
		c.Annotations = map[string]string{v1.AnnotationInterruption: annotationValue(cloudprovider.InterruptionScheduledMaintenance, deadline)}
		c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{Type: v1.ConditionInterrupted, Status: metav1.ConditionTrue,
			Reason: "ScheduledMaintenance", LastTransitionTime: metav1.NewTime(start)})
	})
	// The previous leader left no replacement: the new one plans one and
	// waits for it, or for the deadline.
	e.progress(t)
	if got := e.replacements(t); len(got) != 1 || e.claimGone(t) {
		t.Fatalf("replacements = %v, claim gone = %v; want one replacement bought and the node kept", got, e.claimGone(t))
	}
	e.clock.Step(4 * time.Minute) // DrainLead before the deadline
	e.progress(t)
	if !e.claimGone(t) {
		t.Fatal("an interruption left by a previous leader was not drained at its deadline")
	}
	if got := e.replacements(t); len(got) != 1 {
		t.Errorf("replacements = %v, want still the one", got)
	}
}

func TestAnnotationRoundTrip(t *testing.T) {
	cases := []struct {
		kind     cloudprovider.InterruptionKind
		deadline time.Time
	}{
		{cloudprovider.InterruptionSpotReclaim, start.Add(2 * time.Minute)},
		{cloudprovider.InterruptionRebalanceHint, time.Time{}},
	}
	for _, tc := range cases {
		kind, deadline := parseAnnotation(annotationValue(tc.kind, tc.deadline))
		if kind != tc.kind || !deadline.Equal(tc.deadline) {
			t.Errorf("round trip of %s %v = %s %v", tc.kind, tc.deadline, kind, deadline)
		}
	}
}

// A new leader waits for the replacements its predecessor launched (found
// by their annotation) instead of draining at once.
func TestAdoptedInterruptionWaitsForItsReplacement(t *testing.T) {
	deadline := start.Add(10 * time.Minute)
	e := newEnv(t, 1)
	if err := e.ctrl.Handle(context.Background(), e.event(cloudprovider.InterruptionScheduledMaintenance, deadline)); err != nil {
		t.Fatal(err)
	}
	repl := e.replacements(t)
	if len(repl) != 1 {
		t.Fatalf("replacements = %v, want one", repl)
	}
	// The leader changes.
	e.newLeader()
	e.progress(t)
	if e.claimGone(t) {
		t.Fatal("the new leader drained before the replacement was Ready")
	}
	e.setReady(t, repl[0])
	e.progress(t)
	if !e.claimGone(t) {
		t.Error("not drained once the adopted replacement was Ready")
	}
}

// fanSource delivers a fixed set of events.
type fanSource struct {
	events []cloudprovider.InterruptionEvent
}

func (f fanSource) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	ch := make(chan cloudprovider.InterruptionEvent, len(f.events))
	for _, ev := range f.events {
		ch <- ev
	}
	return ch, nil
}

// An event whose handling is stuck (a slow API call) does not hold up an
// event about another machine.
func TestEventsAreHandledConcurrently(t *testing.T) {
	e := newEnv(t, 0)
	other := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "c2", Labels: map[string]string{v1.LabelNodePool: "p"}},
		Spec:       v1.NodeClaimSpec{ExpireAfter: v1.Never, Offerings: []v1.OfferingChoice{{InstanceType: "gpu1", Zone: "zone-a", CapacityType: v1.CapacityTypeSpot}}},
		Status:     v1.NodeClaimStatus{ProviderID: "fake://zone-a/i-2"},
	}
	release := make(chan struct{})
	var blocked atomic.Bool
	base := e.client
	if err := base.Create(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	e.client = interceptor.NewClient(base.(client.WithWatch), interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if obj.GetName() == "c1" {
				blocked.Store(true)
				<-release
			}
			return c.Patch(ctx, obj, p, opts...)
		},
	})
	src := fanSource{events: []cloudprovider.InterruptionEvent{
		e.event(cloudprovider.InterruptionSpotReclaim, start.Add(2*time.Minute)),
		{ProviderID: "fake://zone-a/i-2", Kind: cloudprovider.InterruptionSpotReclaim, Deadline: start.Add(2 * time.Minute)},
	}}
	e.ctrl = NewController(Deps{Client: e.client, Source: src, CloudProvider: oneType{}, Solver: disruption.SolverFunc(oneNode),
		Clock: e.clock, Recorder: e.recorder, Options: Options{Workers: 4}})
	if worker("fake://zone-a/i-1", 4) == worker("fake://zone-a/i-2", 4) {
		t.Skip("both machines hash to one worker; pick other IDs")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.ctrl.Start(ctx) }()
	defer func() {
		close(release)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// c2 has no pods, so once handled it is drained (deleted) at once.
		err := base.Get(context.Background(), client.ObjectKey{Name: "c2"}, &v1.NodeClaim{})
		if client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		if err != nil && blocked.Load() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("c2 was not marked Interrupted while c1's handling was stuck (c1 blocked: %v)", blocked.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newLeader replaces the controller, as a leader change does: nothing is
// tracked in memory.
func (e *env) newLeader() { e.ctrl = e.controllerOn(e.client) }

// controllerOn is a controller of the env's cloud and clock on client (one
// that fails some writes, say).
func (e *env) controllerOn(c client.Client) *Controller {
	return NewController(Deps{Client: c, CloudProvider: oneType{}, Solver: disruption.SolverFunc(oneNode),
		Clock: e.clock, Recorder: e.recorder})
}

func (e *env) get(t *testing.T, obj client.Object, key client.ObjectKey) {
	t.Helper()
	if err := e.client.Get(context.Background(), key, obj); err != nil {
		t.Fatal(err)
	}
}

// The event comes again to a new leader before its first check (SQS
// redelivers, GCP looks back, Azure re-reads node conditions): the
// replacement the old leader launched is adopted, not bought twice.
func TestRedeliveryToANewLeaderAdoptsTheReplacement(t *testing.T) {
	e := newEnv(t, 1)
	ev := e.event(cloudprovider.InterruptionScheduledMaintenance, start.Add(time.Hour))
	if err := e.ctrl.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	e.newLeader()
	if err := e.ctrl.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if got := e.replacements(t); len(got) != 1 {
		t.Errorf("replacements after the redelivery = %v, want the one", got)
	}
}

// A plan that fails leaves the node cordoned until its deadline, not
// drained at once with nowhere for its pods to go, and is tried again.
func TestFailedPlanWaitsForTheDeadlineAndRetries(t *testing.T) {
	e := newEnv(t, 1)
	var fail atomic.Bool
	fail.Store(true)
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: oneType{}, Clock: e.clock, Recorder: e.recorder,
		Solver: disruption.SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) {
			if fail.Load() {
				return nil, errors.New("injected: solver failure")
			}
			return oneNode(ctx, s)
		})})
	if err := e.ctrl.Handle(context.Background(), e.event(cloudprovider.InterruptionScheduledMaintenance, start.Add(24*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if e.claimGone(t) || len(e.replacements(t)) != 0 {
		t.Fatalf("claim gone = %v, replacements %v; want the node kept and nothing bought", e.claimGone(t), e.replacements(t))
	}
	fail.Store(false)
	e.clock.Step(replanEvery)
	e.progress(t)
	if got := e.replacements(t); len(got) != 1 || e.claimGone(t) {
		t.Fatalf("after the retry: replacements %v, claim gone %v; want one bought and the node kept", got, e.claimGone(t))
	}
}

// A replacement that failed to launch is bought again, rather than the node
// staying cordoned until a deadline days away; one being deleted is not
// Ready.
func TestGoneReplacementIsBoughtAgain(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionScheduledMaintenance, start.Add(72*time.Hour))); err != nil {
		t.Fatal(err)
	}
	first := e.replacements(t)
	e.setReady(t, first[0])
	r := &v1.NodeClaim{}
	e.get(t, r, client.ObjectKey{Name: first[0]})
	r.Finalizers = []string{"test/hold"}
	if err := e.client.Update(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Delete(ctx, r); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(replanEvery)
	e.progress(t)
	if e.claimGone(t) {
		t.Fatal("drained onto a Ready replacement that is being deleted")
	}
	var again []string
	for _, name := range e.replacements(t) {
		if name != first[0] {
			again = append(again, name)
		}
	}
	if len(again) != 1 {
		t.Fatalf("replacements besides the deleted one = %v, want one bought again", again)
	}
	e.setReady(t, again[0])
	e.progress(t)
	if !e.claimGone(t) {
		t.Error("not drained once the second replacement was Ready")
	}
}

// A rebalance hint, then the reclaim: the claim and the pods are told the
// deadline, and a new leader drains before it rather than waiting the hint
// timeout.
func TestReclaimAfterAHintIsRecorded(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionRebalanceHint, time.Time{})); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(10 * time.Second)
	deadline := start.Add(10*time.Second + 2*time.Minute)
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionSpotReclaim, deadline)); err != nil {
		t.Fatal(err)
	}
	want := annotationValue(cloudprovider.InterruptionSpotReclaim, deadline)
	claim, pod := &v1.NodeClaim{}, &corev1.Pod{}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	e.get(t, pod, client.ObjectKey{Namespace: "ml", Name: "train-a"})
	if claim.Annotations[v1.AnnotationInterruption] != want || pod.Annotations[v1.AnnotationInterruption] != want {
		t.Errorf("claim says %q, pod says %q; want %q", claim.Annotations[v1.AnnotationInterruption], pod.Annotations[v1.AnnotationInterruption], want)
	}
	if c := conditions.Get(claim.Status.Conditions, v1.ConditionInterrupted); c == nil || c.Reason != string(cloudprovider.InterruptionSpotReclaim) {
		t.Errorf("Interrupted condition = %+v, want reason %s", c, cloudprovider.InterruptionSpotReclaim)
	}
	e.newLeader()
	e.clock.Step(80 * time.Second) // 40 s before the reclaim
	e.progress(t)
	if !e.claimGone(t) {
		t.Error("a new leader did not drain DrainLead before the reclaim")
	}
}

// The claim is already being replaced by a disruption command (drift) when
// the cloud interrupts it: the command's replacement is adopted.
func TestInterruptionAdoptsADisruptionCommandsReplacement(t *testing.T) {
	e := driftInFlight(t)
	ctx := context.Background()
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionScheduledMaintenance, start.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := e.replacements(t); len(got) != 1 || got[0] != "drift-replacement" {
		t.Errorf("claims replacing c1 = %v, want only the drift replacement", got)
	}
}

// failFirstPatch fails the first Patch, as an API server timeout would.
type failFirstPatch struct {
	client.Client
	failed atomic.Bool
}

func (f *failFirstPatch) Patch(ctx context.Context, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
	if f.failed.CompareAndSwap(false, true) {
		return errors.New("injected: API server timeout")
	}
	return f.Client.Patch(ctx, obj, p, opts...)
}

// An event whose handling failed is handled again after a backoff: GCP and
// Azure send a notice once.
func TestFailedEventIsRetried(t *testing.T) {
	e := newEnv(t, 1)
	failing := &failFirstPatch{Client: e.client}
	ev := e.event(cloudprovider.InterruptionSpotReclaim, start.Add(2*time.Minute))
	ev.Ack = nil
	defer e.run(t, failing, ev)()
	until := time.Now().Add(10 * time.Second)
	for {
		claim := &v1.NodeClaim{}
		e.get(t, claim, client.ObjectKey{Name: "c1"})
		if conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted) {
			if !failing.failed.Load() {
				t.Fatal("the injected failure never happened")
			}
			return
		}
		if time.Now().After(until) {
			t.Fatal("the event was not handled again after its handling failed")
		}
		if failing.failed.Load() && e.clock.HasWaiters() {
			e.clock.Step(time.Second) // the retry's backoff
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A spot reclaim takes both machines of a two-pod gang. The second
// member's plan finds its gang short (its peer is on a machine going
// away too) and buys nothing; its node then waits for the deadline
// rather than being drained at once.
func TestSecondGangMemberWaitsForTheDeadline(t *testing.T) {
	clk := clocktesting.NewFakeClock(start)
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{ExpireAfter: v1.Never}}}}
	objs := []client.Object{pool}
	for _, n := range []string{"1", "2"} {
		id := "fake://zone-a/i-" + n
		objs = append(objs,
			&v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c" + n, Labels: map[string]string{v1.LabelNodePool: "p"}},
				Spec:   v1.NodeClaimSpec{ExpireAfter: v1.Never, Offerings: []v1.OfferingChoice{{InstanceType: "gpu1", Zone: "zone-a", CapacityType: v1.CapacityTypeSpot}}},
				Status: v1.NodeClaimStatus{ProviderID: id, NodeName: "n" + n, Allocatable: gpu1.Capacity}},
			&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n" + n, Labels: map[string]string{v1.LabelNodePool: "p", v1.LabelZone: "zone-a",
				v1.LabelCapacityType: v1.CapacityTypeSpot, v1.LabelInstanceType: "gpu1"}},
				Spec: corev1.NodeSpec{ProviderID: id}, Status: corev1.NodeStatus{Allocatable: gpu1.Capacity, Capacity: gpu1.Capacity}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "w-" + n,
				Labels: map[string]string{v1.LabelPodGroup: "job", v1.LabelPodGroupSize: "2"}},
				Spec: corev1.PodSpec{NodeName: "n" + n, Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("1")}}}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning}})
	}
	cl := cloudtest.NewClientBuilder().WithObjects(objs...).Build()
	ctrl := NewController(Deps{Client: cl, CloudProvider: oneType{}, Clock: clk, Recorder: events.NewFakeRecorder(100),
		Solver: disruption.SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })})
	ctx := context.Background()
	for _, n := range []string{"1", "2"} {
		ev := cloudprovider.InterruptionEvent{ProviderID: "fake://zone-a/i-" + n, Kind: cloudprovider.InterruptionSpotReclaim, Deadline: start.Add(2 * time.Minute)}
		if err := ctrl.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Get(ctx, client.ObjectKey{Name: "c2"}, &v1.NodeClaim{}); err != nil {
		t.Fatalf("the second member's node was drained at once: %v", err)
	}
	clk.Step(time.Minute) // DrainLead before the deadline
	if err := ctrl.Progress(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"c1", "c2"} {
		if err := cl.Get(ctx, client.ObjectKey{Name: n}, &v1.NodeClaim{}); client.IgnoreNotFound(err) != nil || err == nil {
			t.Errorf("%s not drained at its deadline (%v)", n, err)
		}
	}
}

// A reclaim of a machine already being drained (consolidation, drift)
// replaces nothing, but its pods still learn the deadline.
func TestReclaimOfADrainingMachineWarnsItsPods(t *testing.T) {
	e := newEnv(t, 1, func(c *v1.NodeClaim) { c.Finalizers = []string{v1.TerminationFinalizer} })
	ctx := context.Background()
	claim := &v1.NodeClaim{}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	if err := e.client.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	deadline := start.Add(2 * time.Minute)
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionSpotReclaim, deadline)); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	e.get(t, pod, client.ObjectKey{Namespace: "ml", Name: "train-a"})
	if want := annotationValue(cloudprovider.InterruptionSpotReclaim, deadline); pod.Annotations[v1.AnnotationInterruption] != want {
		t.Errorf("pod says %q, want %q", pod.Annotations[v1.AnnotationInterruption], want)
	}
	if got := e.replacements(t); len(got) != 0 || e.acks.Load() != 1 {
		t.Errorf("replacements %v, acks %d; want none bought and the event acknowledged", got, e.acks.Load())
	}
}

// A reclaim can arrive before the launch's providerID is written to its
// claim: the event is tried again until it is, not dropped as another
// machine's.
func TestEventBeforeTheProviderIDIsRetried(t *testing.T) {
	e := newEnv(t, 1, func(c *v1.NodeClaim) { c.Status.ProviderID = "" })
	ev := e.event(cloudprovider.InterruptionSpotReclaim, start.Add(2*time.Minute))
	lists := &countingLists{Client: e.client}
	defer e.run(t, lists, ev)()
	// The first attempt looks the claim up, finds none, and sees one launching.
	until := time.Now().Add(10 * time.Second)
	for lists.n.Load() < 2 {
		if time.Now().After(until) {
			t.Fatal("the event was never retried")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if e.acks.Load() != 0 {
		t.Fatal("an event for a launching machine was acknowledged as someone else's")
	}
	claim := &v1.NodeClaim{}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	claim.Status.ProviderID = pid
	if err := e.client.Status().Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	for {
		e.get(t, claim, client.ObjectKey{Name: "c1"})
		if conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted) {
			return
		}
		if time.Now().After(until) {
			t.Fatal("the event was not handled once the claim had its providerID")
		}
		if e.clock.HasWaiters() {
			e.clock.Step(time.Second) // the retry's backoff
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countingLists counts the NodeClaim lists made through it.
type countingLists struct {
	client.Client
	n atomic.Int32
}

func (c *countingLists) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	err := c.Client.List(ctx, list, opts...)
	if _, ok := list.(*v1.NodeClaimList); ok {
		c.n.Add(1)
	}
	return err
}

// run starts a controller reading c and delivering ev, and returns what
// stops it.
func (e *env) run(t *testing.T, c client.Client, ev cloudprovider.InterruptionEvent) (stop func()) {
	t.Helper()
	e.ctrl = NewController(Deps{Client: c, Source: fanSource{events: []cloudprovider.InterruptionEvent{ev}}, CloudProvider: oneType{},
		Solver: disruption.SolverFunc(oneNode), Clock: e.clock, Recorder: e.recorder})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.ctrl.Start(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	}
}

// driftInFlight is an env whose claim c1 is the candidate of a drift
// command (c1-1) with its replacement, drift-replacement, launching.
func driftInFlight(t *testing.T) *env {
	t.Helper()
	e := newEnv(t, 1, func(c *v1.NodeClaim) {
		c.Annotations = map[string]string{disruption.AnnotationCommand: `{"id":"c1-1","method":"replace","reason":"Drifted","replacements":1}`}
	})
	ctx := context.Background()
	pool, claim := &v1.NodePool{}, &v1.NodeClaim{}
	e.get(t, pool, client.ObjectKey{Name: "p"})
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	pod := &corev1.Pod{}
	e.get(t, pod, client.ObjectKey{Namespace: "ml", Name: "train-a"})
	plan, _ := oneNode(ctx, &solver.Snapshot{Pods: []*corev1.Pod{pod}})
	r, err := disruption.ReplacementClaim(pool, plan.NewNodes[0], claim, start)
	if err != nil {
		t.Fatal(err)
	}
	r.Name = "drift-replacement"
	r.Annotations[disruption.AnnotationReplacementFor] = "c1-1"
	if err := e.client.Create(ctx, r); err != nil {
		t.Fatal(err)
	}
	return e
}
