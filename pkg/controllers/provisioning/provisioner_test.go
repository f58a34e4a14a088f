package provisioning

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func res(pairs ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(pairs); i += 2 {
		out[corev1.ResourceName(pairs[i])] = resource.MustParse(pairs[i+1])
	}
	return out
}

func pendingPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: res("cpu", "1", "nvidia.com/gpu", "1"),
		}}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
		}}},
	}
}

func withPod(p *corev1.Pod, mutate ...func(*corev1.Pod)) *corev1.Pod {
	for _, m := range mutate {
		m(p)
	}
	return p
}

var g5 = &cloudprovider.InstanceType{
	Name:     "g5.12xlarge",
	Capacity: res("cpu", "48", "memory", "192Gi", "nvidia.com/gpu", "4", "pods", "110"),
	Offerings: []cloudprovider.Offering{
		{Zone: "us-east-1a", CapacityType: v1.CapacityTypeSpot, PricePerHour: 3.4912, Available: true},
		{Zone: "us-east-1b", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 5.672, Available: true},
	},
}

func gpuPool() *v1.NodePool {
	limit := int32(10)
	return &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: v1.NodePoolSpec{
			Weight: &limit,
			Limits: v1.Limits(res("nvidia.com/gpu", "8")),
			Template: v1.NodeClaimTemplate{
				ObjectMeta: v1.ObjectMeta{Labels: map[string]string{"team": "ml"}, Annotations: map[string]string{"a": "b"}},
				Spec: v1.NodeClaimTemplateSpec{
					Taints:              []corev1.Taint{{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}},
					StartupTaints:       []corev1.Taint{{Key: "gpu-driver", Effect: corev1.TaintEffectNoSchedule}},
					NodeClassRef:        &v1.NodeClassReference{Group: "aws.stowage.dev", Kind: "EC2NodeClass", Name: "default"},
					ExpireAfter:         v1.MustParseNillableDuration("720h"),
					RegistrationTimeout: &metav1.Duration{Duration: 15 * time.Minute},
					GPU:                 &v1.GPUSharing{MIGProfile: "1g.10gb"},
				},
			},
		},
	}
}

func tolerateGPU(p *corev1.Pod) {
	p.Spec.Tolerations = []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists}}
}

// stubCloud serves fixed instance types per pool.
type stubCloud struct {
	types map[string][]*cloudprovider.InstanceType
	err   map[string]error
}

func (s *stubCloud) InstanceTypes(_ context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	return s.types[pool.Name], s.err[pool.Name]
}

// stubSolver records each snapshot and answers with plan(snapshot).
type stubSolver struct {
	mu        sync.Mutex
	snapshots []*solver.Snapshot
	plan      func(*solver.Snapshot) *solver.Plan
}

func (s *stubSolver) Solve(_ context.Context, snap *solver.Snapshot) (*solver.Plan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapshots = append(s.snapshots, snap)
	return s.plan(snap), nil
}

// onePerPod buys one node of the pool's first instance type per pod, with
// every offering as a choice.
func onePerPod(snap *solver.Snapshot) *solver.Plan {
	plan := &solver.Plan{}
	pool := snap.NodePools[0]
	it := pool.InstanceTypes[0]
	for _, p := range snap.Pods {
		n := &solver.NewNode{
			NodePool: pool.Name,
			Pods:     []*corev1.Pod{p},
			Requests: res("cpu", "1", "nvidia.com/gpu", "1"),
			Requirements: []v1.NodeSelectorRequirementWithMinValues{
				{Key: v1.LabelNodePool, Operator: corev1.NodeSelectorOpIn, Values: []string{pool.Name}},
				{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{it.Name}},
			},
		}
		for _, o := range it.Offerings {
			n.Choices = append(n.Choices, solver.Choice{InstanceType: it, Offering: o})
		}
		plan.NewNodes = append(plan.NewNodes, n)
		plan.CostPerHour += n.PricePerHour()
	}
	return plan
}

type fixture struct {
	ctrl    *Controller
	client  client.Client
	cluster *state.Cluster
	solver  *stubSolver
	events  *events.FakeRecorder
	clock   *clocktesting.FakeClock
}

func newFixture(t *testing.T, plan func(*solver.Snapshot) *solver.Plan) *fixture {
	t.Helper()
	clk := clocktesting.NewFakeClock(now)
	f := &fixture{
		client:  cloudtest.NewClientBuilder().Build(),
		cluster: state.NewCluster(clk),
		solver:  &stubSolver{plan: plan},
		events:  events.NewFakeRecorder(100),
		clock:   clk,
	}
	f.ctrl = NewController(Deps{
		Client:        f.client,
		Cluster:       f.cluster,
		CloudProvider: &stubCloud{types: map[string][]*cloudprovider.InstanceType{"gpu": {g5}}},
		Solver:        f.solver,
		Clock:         clk,
		Recorder:      f.events,
	})
	f.cluster.UpdateNodePool(gpuPool())
	return f
}

func (f *fixture) schedule(t *testing.T) *Result {
	t.Helper()
	r, err := f.ctrl.Schedule(context.Background(), Window{Opened: f.clock.Now(), Closed: f.clock.Now()})
	if err != nil {
		t.Fatalf("Schedule() error: %v", err)
	}
	return r
}

func (f *fixture) drainEvents() []string {
	var out []string
	for {
		select {
		case e := <-f.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestScheduleCreatesNodeClaim(t *testing.T) {
	f := newFixture(t, onePerPod)
	f.cluster.UpdatePod(withPod(pendingPod("infer"), tolerateGPU))

	r := f.schedule(t)
	if len(r.Created) != 1 {
		t.Fatalf("created %d nodeclaims, want 1", len(r.Created))
	}
	list := &v1.NodeClaimList{}
	if err := f.client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("API has %d nodeclaims, want 1", len(list.Items))
	}
	got := list.Items[0]
	if !strings.HasPrefix(got.Name, "gpu-") {
		t.Errorf("name %q does not start with the pool's name", got.Name)
	}
	if diff := cmp.Diff(map[string]string{"team": "ml", v1.LabelNodePool: "gpu"}, got.Labels); diff != "" {
		t.Errorf("labels mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"a": "b"}, got.Annotations); diff != "" {
		t.Errorf("annotations mismatch (-want +got):\n%s", diff)
	}
	pool := gpuPool()
	want := v1.NodeClaimSpec{
		Requirements: []v1.NodeSelectorRequirementWithMinValues{
			{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"g5.12xlarge"}},
		},
		Offerings: []v1.OfferingChoice{
			{InstanceType: "g5.12xlarge", Zone: "us-east-1a", CapacityType: "spot", PricePerHour: "3.4912"},
			{InstanceType: "g5.12xlarge", Zone: "us-east-1b", CapacityType: "on-demand", PricePerHour: "5.672"},
		},
		Resources:           v1.ResourceRequirements{Requests: res("cpu", "1", "nvidia.com/gpu", "1")},
		Taints:              pool.Spec.Template.Spec.Taints,
		StartupTaints:       pool.Spec.Template.Spec.StartupTaints,
		NodeClassRef:        pool.Spec.Template.Spec.NodeClassRef,
		ExpireAfter:         pool.Spec.Template.Spec.ExpireAfter,
		RegistrationTimeout: pool.Spec.Template.Spec.RegistrationTimeout,
		GPU:                 pool.Spec.Template.Spec.GPU,
	}
	if diff := cmp.Diff(want, got.Spec, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 }),
		cmp.Comparer(func(a, b v1.NillableDuration) bool { return a.String() == b.String() })); diff != "" {
		t.Errorf("spec mismatch (-want +got):\n%s", diff)
	}

	wantEvent := fmt.Sprintf("Normal Nominated planned onto nodeclaim %s (g5.12xlarge spot us-east-1a $3.49/h)", got.Name)
	if diff := cmp.Diff([]string{wantEvent}, f.drainEvents()); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	if to := f.cluster.NominatedTo(pendingPod("infer")); to != got.Name {
		t.Errorf("pod nominated to %q, want %q", to, got.Name)
	}

	// The next pass must neither re-plan the nominated pod nor forget the
	// claim, even before an informer reports it.
	f.cluster.UpdatePod(withPod(pendingPod("second"), tolerateGPU))
	r = f.schedule(t)
	if diff := cmp.Diff([]string{"second"}, podNames(r.Pods)); diff != "" {
		t.Errorf("second pass pods mismatch (-want +got):\n%s", diff)
	}
	snap := f.solver.snapshots[1]
	if len(snap.Nodes) != 1 || snap.Nodes[0].Name != got.Name || !snap.Nodes[0].InFlight {
		t.Fatalf("second snapshot nodes = %+v, want the in-flight claim %s", snap.Nodes, got.Name)
	}
	if diff := cmp.Diff([]string{"infer"}, podNames(snap.Nodes[0].Pods)); diff != "" {
		t.Errorf("in-flight node pods mismatch (-want +got):\n%s", diff)
	}
	usage := snap.NodePools[0].Usage
	if gpus := usage[v1.ResourceNvidiaGPU]; gpus.Cmp(resource.MustParse("4")) != 0 {
		t.Errorf("usage nvidia.com/gpu = %s, want 4 (the in-flight g5.12xlarge)", gpus.String())
	}
	if nodes := usage[state.ResourceNodes]; nodes.Value() != 1 {
		t.Errorf("usage nodes = %s, want 1", nodes.String())
	}
}

func TestScheduleIgnoresPodsNoPoolCanHold(t *testing.T) {
	yes := true
	f := newFixture(t, onePerPod)
	f.cluster.UpdatePod(pendingPod("no-toleration"))
	f.cluster.UpdatePod(withPod(pendingPod("daemon"), tolerateGPU, func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "ds", Controller: &yes}}
	}))
	f.cluster.UpdatePod(withPod(pendingPod("bound"), tolerateGPU, func(p *corev1.Pod) { p.Spec.NodeName = "n1" }))

	for i := 0; i < 2; i++ {
		r := f.schedule(t)
		if len(r.Pods) != 0 || r.Plan != nil {
			t.Fatalf("pass %d planned %v, want nothing", i, podNames(r.Pods))
		}
	}
	want := []string{"Warning NoCompatibleNodePool no NodePool can hold this pod: nodepool gpu: taint nvidia.com/gpu:NoSchedule not tolerated"}
	if diff := cmp.Diff(want, f.drainEvents()); diff != "" {
		t.Errorf("events mismatch, want one event over two passes (-want +got):\n%s", diff)
	}
	if len(f.solver.snapshots) != 0 {
		t.Errorf("solver called %d times, want 0", len(f.solver.snapshots))
	}
}

func TestScheduleReportsUnschedulableAndBindings(t *testing.T) {
	f := newFixture(t, func(snap *solver.Snapshot) *solver.Plan {
		plan := &solver.Plan{}
		for _, p := range snap.Pods {
			if p.Name == "a" {
				plan.Bindings = append(plan.Bindings, solver.Binding{Pod: p, NodeName: "launching"})
			} else {
				plan.Unschedulable = append(plan.Unschedulable, solver.Unschedulable{Pod: p, Reason: "nodepool gpu: limit nvidia.com/gpu 8 reached"})
			}
		}
		return plan
	})
	f.cluster.UpdateNodeClaim(&v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "launching", Labels: map[string]string{v1.LabelNodePool: "gpu"}},
		Spec:       v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{{InstanceType: "g5.12xlarge"}}},
	})
	f.cluster.UpdatePod(withPod(pendingPod("a"), tolerateGPU))
	f.cluster.UpdatePod(withPod(pendingPod("b"), tolerateGPU))

	// The second pass repeats the refusal; the pod is told once.
	f.schedule(t)
	f.schedule(t)
	want := []string{
		"Normal Nominated planned onto launching nodeclaim launching",
		"Warning FailedProvisioning nodepool gpu: limit nvidia.com/gpu 8 reached",
	}
	if diff := cmp.Diff(want, f.drainEvents()); diff != "" {
		t.Errorf("events mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b"}, podNames(f.solver.snapshots[1].Pods)); diff != "" {
		t.Errorf("second pass pods mismatch, want only the refused pod (-want +got):\n%s", diff)
	}
	if !f.cluster.IsNominated(pendingPod("a")) || f.cluster.IsNominated(pendingPod("b")) {
		t.Error("want a nominated and b not")
	}
}

func TestScheduleWaitsForSync(t *testing.T) {
	f := newFixture(t, onePerPod)
	f.ctrl.cluster = state.NewCluster(f.clock, state.WithSynced(func() bool { return false }))
	if _, err := f.ctrl.Schedule(context.Background(), Window{}); err == nil {
		t.Fatal("Schedule() succeeded before the cluster view synced")
	}
}

func TestDecisionLatency(t *testing.T) {
	at := func(s float64) time.Time { return now.Add(time.Duration(s * float64(time.Second))) }
	tests := []struct {
		name    string
		seen    time.Time
		window  Window
		created time.Time
		want    time.Duration
	}{
		{"seen when the batch opened", at(0), Window{at(0), at(1)}, at(1.5), 500 * time.Millisecond},
		{"seen mid-batch", at(0.5), Window{at(0), at(1)}, at(1.2), 200 * time.Millisecond},
		{"seen before an earlier failed pass", at(-10), Window{at(0), at(1)}, at(1.5), 10500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, onePerPod)
			f.ctrl.seen["uid-p"] = tt.seen
			if got := f.ctrl.decisionLatency(pendingPod("p"), tt.window, tt.created); got != tt.want {
				t.Errorf("decisionLatency() = %v, want %v", got, tt.want)
			}
		})
	}
}

func podNames(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func TestReconcileOpensABatch(t *testing.T) {
	f := newFixture(t, onePerPod)
	ctx := context.Background()
	pod := withPod(pendingPod("p"), tolerateGPU)
	if _, err := f.ctrl.Reconcile(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := len(f.ctrl.batcher.trigger); got != 1 {
		t.Fatalf("%d triggers pending after an unschedulable pod, want 1", got)
	}
	if seen, ok := f.ctrl.seen[pod.UID]; !ok || !seen.Equal(now) {
		t.Errorf("first seen = %v, %v; want %v", seen, ok, now)
	}
	<-f.ctrl.batcher.trigger
	// Seen again later: the first time is kept for the latency metric, and
	// the news only makes sure a batch is open, without extending one.
	f.clock.Step(time.Second)
	if _, err := f.ctrl.Reconcile(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if seen := f.ctrl.seen[pod.UID]; !seen.Equal(now) {
		t.Errorf("first seen moved to %v", seen)
	}
	if trig, poke := len(f.ctrl.batcher.trigger), len(f.ctrl.batcher.poke); trig != 0 || poke != 1 {
		t.Errorf("a known pod seen again left %d triggers and %d pokes, want 0 and 1", trig, poke)
	}
	// Bound: forgotten.
	bound := withPod(pod.DeepCopy(), func(p *corev1.Pod) { p.Spec.NodeName = "n1" })
	if _, err := f.ctrl.Reconcile(ctx, bound); err != nil {
		t.Fatal(err)
	}
	if _, ok := f.ctrl.seen[pod.UID]; ok {
		t.Error("bound pod still tracked as pending")
	}
}

func TestStartDecidesOncePerBatch(t *testing.T) {
	f := newFixture(t, onePerPod)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.ctrl.Start(ctx) }()
	f.closeBatch(ctx, t, "p")
	// The pass runs asynchronously: wait for its claim.
	if n := f.waitForClaims(t, 1); n != 1 {
		t.Fatalf("%d claims, want 1", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start() = %v, want nil after cancel", err)
	}
	f.solver.mu.Lock()
	defer f.solver.mu.Unlock()
	if len(f.solver.snapshots) != 1 {
		t.Errorf("solver called %d times for one batch, want 1", len(f.solver.snapshots))
	}
}

// TestNextBatchClosesDuringAPass: pods that turn up while a pass solves
// and writes are batched meanwhile, so their pass starts as soon as the
// running one ends instead of opening its window only then.
func TestNextBatchClosesDuringAPass(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls int
	f := newFixture(t, func(snap *solver.Snapshot) *solver.Plan {
		if calls++; calls == 1 {
			close(entered)
			<-release
		}
		return onePerPod(snap)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.ctrl.Start(ctx) }()
	f.closeBatch(ctx, t, "first")
	<-entered
	f.closeBatch(ctx, t, "second") // while the first pass is still solving
	close(release)
	// No clock step from here: the second pass must run on its own.
	n := f.waitForClaims(t, 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start() = %v, want nil after cancel", err)
	}
	if n != 2 {
		t.Fatalf("%d claims, want 2: the batch closed during the first pass must be decided right after it", n)
	}
}

// closeBatch makes pod name pending, lets the running loop open a batch for
// it and steps the clock past the batch's idle window.
func (f *fixture) closeBatch(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	f.cluster.UpdatePod(withPod(pendingPod(name), tolerateGPU))
	if _, err := f.ctrl.Reconcile(ctx, withPod(pendingPod(name), tolerateGPU)); err != nil {
		t.Fatal(err)
	}
	// The resync ticker plus the batch's idle and max timers.
	deadline := time.Now().Add(10 * time.Second)
	for f.clock.Waiters() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no batch window opened for %s", name)
		}
		time.Sleep(time.Millisecond)
	}
	f.clock.Step(DefaultBatchIdleDuration)
}

// waitForClaims waits up to 10 s of wall time for want claims, and returns
// how many there are.
func (f *fixture) waitForClaims(t *testing.T, want int) int {
	t.Helper()
	list := &v1.NodeClaimList{}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if err := f.client.List(context.Background(), list); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) >= want {
			break
		}
	}
	return len(list.Items)
}

func TestSchedulePlansAroundAFailingPool(t *testing.T) {
	f := newFixture(t, onePerPod)
	f.ctrl.cloud = &stubCloud{
		types: map[string][]*cloudprovider.InstanceType{"gpu": {g5}},
		err:   map[string]error{"broken": fmt.Errorf("throttled")},
	}
	broken := gpuPool()
	broken.Name = "broken"
	broken.Spec.Weight = nil
	f.cluster.UpdateNodePool(broken)
	f.cluster.UpdatePod(withPod(pendingPod("p"), tolerateGPU))

	r, err := f.ctrl.Schedule(context.Background(), Window{Opened: now, Closed: now})
	if err == nil || !strings.Contains(err.Error(), "nodepool broken: throttled") {
		t.Errorf("Schedule() error = %v, want one naming the broken pool", err)
	}
	if r == nil || len(r.Created) != 1 {
		t.Fatalf("Schedule() = %+v, want one claim from the working pool", r)
	}
	var pools []string
	for _, p := range f.solver.snapshots[0].NodePools {
		pools = append(pools, p.Name)
	}
	if diff := cmp.Diff([]string{"gpu"}, pools); diff != "" {
		t.Errorf("snapshot pools mismatch (-want +got):\n%s", diff)
	}
}

// concurrencyProbe counts NodeClaim creates in flight. The first two creates
// wait for each other, so a loop that creates one claim at a time shows up
// as a maximum of 1 rather than as a slow test.
type concurrencyProbe struct {
	mu          sync.Mutex
	inFlight    int
	maxInFlight int
	started     int
	bothStarted chan struct{}
	fail        string // GenerateName prefix of the pod whose create fails
}

func (p *concurrencyProbe) create(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
	p.mu.Lock()
	p.inFlight++
	p.maxInFlight = max(p.maxInFlight, p.inFlight)
	p.started++
	if p.started == 2 {
		close(p.bothStarted)
	}
	first := p.started <= 2
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.inFlight--
		p.mu.Unlock()
	}()
	if first {
		select {
		case <-p.bothStarted:
		case <-time.After(5 * time.Second): // sequential creates: never comes
		}
	}
	if claim := obj.(*v1.NodeClaim); claim.Spec.Resources.Requests.Cpu().String() == p.fail {
		return fmt.Errorf("injected failure")
	}
	return c.Create(ctx, obj, opts...)
}

func TestScheduleCreatesNodeClaimsConcurrently(t *testing.T) {
	const pods = 40
	probe := &concurrencyProbe{bothStarted: make(chan struct{}), fail: "7"}
	// Pod i asks for i+1 CPUs, so each claim can be traced to its pod and
	// the seventh create fails.
	plan := func(snap *solver.Snapshot) *solver.Plan {
		p := onePerPod(snap)
		for i, n := range p.NewNodes {
			n.Requests = res("cpu", fmt.Sprint(i+1))
		}
		return p
	}
	f := newFixture(t, plan)
	f.client = cloudtest.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{Create: probe.create}).Build()
	f.ctrl.client = f.client
	var names []string
	for i := range pods {
		name := fmt.Sprintf("p%02d", i)
		names = append(names, name)
		f.cluster.UpdatePod(withPod(pendingPod(name), tolerateGPU))
	}

	r, err := f.ctrl.Schedule(context.Background(), Window{Opened: now, Closed: now})
	if err == nil || !strings.Contains(err.Error(), "creating 1 of 40 nodeclaims failed") || !strings.Contains(err.Error(), "injected failure") {
		t.Errorf("Schedule() error = %v, want one counting the single failed create", err)
	}
	if probe.maxInFlight < 2 || probe.maxInFlight > maxConcurrentCreates {
		t.Errorf("creates in flight peaked at %d, want between 2 and %d", probe.maxInFlight, maxConcurrentCreates)
	}
	// Created keeps plan order and leaves out the failed claim.
	var gotCPU []string
	for _, c := range r.Created {
		gotCPU = append(gotCPU, c.Spec.Resources.Requests.Cpu().String())
	}
	var wantCPU []string
	for i := range pods {
		if i != 6 {
			wantCPU = append(wantCPU, fmt.Sprint(i+1))
		}
	}
	if diff := cmp.Diff(wantCPU, gotCPU); diff != "" {
		t.Errorf("created claims mismatch (-want +got):\n%s", diff)
	}
	// Every created claim is in the view and nominates its pod before the
	// next pass; the pod whose claim failed is left to be planned again.
	for i, name := range names {
		to := f.cluster.NominatedTo(pendingPod(name))
		if i == 6 {
			if to != "" {
				t.Errorf("pod %s nominated to %q, want none: its claim was never created", name, to)
			}
			continue
		}
		if to == "" || f.cluster.NodeClaim(to) == nil {
			t.Errorf("pod %s nominated to %q, want a claim in the cluster view", name, to)
		}
	}
	var nominated, failed int
	for _, e := range f.drainEvents() {
		switch {
		case strings.HasPrefix(e, "Normal Nominated planned onto nodeclaim gpu-"):
			nominated++
		case strings.HasPrefix(e, "Warning FailedProvisioning creating nodeclaim for nodepool gpu: injected failure"):
			failed++
		default:
			t.Errorf("unexpected event %q", e)
		}
	}
	if nominated != pods-1 || failed != 1 {
		t.Errorf("events: %d nominated and %d failed, want %d and 1", nominated, failed, pods-1)
	}
}

// TestClaimsOfLongestWaitingPodsAreWrittenFirst: a plan's claims are
// written in the order their pods were first seen, so pods that waited
// through the previous pass do not also wait behind the whole write; pods
// seen once the batch had opened waited alike, and of those the claims with
// the most pods go first.
func TestClaimsOfLongestWaitingPodsAreWrittenFirst(t *testing.T) {
	f := newFixture(t, nil)
	pod := func(name string, seen time.Duration) *corev1.Pod {
		p := pendingPod(name)
		if seen >= 0 {
			f.ctrl.seen[p.UID] = now.Add(seen)
		}
		return p
	}
	nodes := []*solver.NewNode{
		{Pods: []*corev1.Pod{pod("late", 3*time.Second)}},
		{Pods: []*corev1.Pod{pod("phantom", -1)}}, // no pod waits on it
		{Pods: []*corev1.Pod{pod("mid", 2*time.Second), pod("early", time.Second)}},
		{Pods: []*corev1.Pod{pod("earliest", 0)}},
		{Pods: []*corev1.Pod{pod("late-too", 3*time.Second)}},
		{Pods: []*corev1.Pod{pod("late-a", 3*time.Second), pod("late-b", 3500*time.Millisecond)}},
	}
	w := Window{Opened: now.Add(2500 * time.Millisecond), Closed: now.Add(4 * time.Second)}
	got := f.ctrl.longestWaitingFirst(nodes, w)
	if want := []int{3, 2, 5, 0, 4, 1}; !slices.Equal(got, want) {
		t.Errorf("write order = %v, want %v", got, want)
	}
}

// A pod the kube-scheduler is preempting for (nominatedNodeName set by it
// while its victims terminate) will bind to that node: nothing is bought.
func TestSchedulePassesOverPreemptingPods(t *testing.T) {
	f := newFixture(t, onePerPod)
	f.cluster.UpdateNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{
		Allocatable: res("cpu", "4", "nvidia.com/gpu", "1", "pods", "110"),
		Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
	f.cluster.UpdatePod(withPod(pendingPod("victim"), tolerateGPU, func(p *corev1.Pod) {
		p.Spec.NodeName, p.Status = "n1", corev1.PodStatus{Phase: corev1.PodRunning}
		ts := metav1.NewTime(now)
		p.DeletionTimestamp = &ts
	}))
	f.cluster.UpdatePod(withPod(pendingPod("preemptor"), tolerateGPU, func(p *corev1.Pod) { p.Status.NominatedNodeName = "n1" }))
	// The same pod, nominated to a node that is gone, is planned.
	f.cluster.UpdatePod(withPod(pendingPod("stale"), tolerateGPU, func(p *corev1.Pod) { p.Status.NominatedNodeName = "n-gone" }))
	r := f.schedule(t)
	var planned []string
	for _, c := range r.Created {
		planned = append(planned, c.Name)
	}
	if len(r.Created) != 1 || len(f.solver.snapshots) != 1 || len(f.solver.snapshots[0].Pods) != 1 || f.solver.snapshots[0].Pods[0].Name != "stale" {
		t.Errorf("created %v; want one machine, for the pod nominated to a node that is gone, and none for the preemptor", planned)
	}
}
