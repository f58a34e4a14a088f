package interruption

import (
	"context"
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
		v1.ResourceNvidiaGPU: resource.MustParse("1")},
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
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: oneType{}, Solver: disruption.SolverFunc(oneNode),
		Clock: e.clock, Recorder: e.recorder})
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
	e.clock.Step(30 * time.Second)
	e.progress(t)
	if e.claimGone(t) || e.acks.Load() != 0 {
		t.Fatal("drained or acknowledged before the replacement was ready or the deadline near")
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
	e.progress(t)
	if !e.claimGone(t) {
		t.Fatal("an interruption left by a previous leader was not drained")
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
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: oneType{}, Solver: disruption.SolverFunc(oneNode),
		Clock: e.clock, Recorder: e.recorder})
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
