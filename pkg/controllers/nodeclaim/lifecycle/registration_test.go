package lifecycle

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var (
	gpuTaint      = corev1.Taint{Key: "nvidia.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	gpuToleration = corev1.Toleration{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	startupTaint  = corev1.Taint{Key: "example.com/driver-loading", Effect: corev1.TaintEffectNoSchedule}
	unregistered  = v1.UnregisteredTaint
)

// launchedEnv returns an env with claim c1 launched and its providerID.
func launchedEnv(t *testing.T, mutate func(*v1.NodeClaim)) (*env, string) {
	t.Helper()
	claim := newClaim("c1", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot))
	claim.Spec.Taints = []corev1.Taint{gpuTaint}
	claim.Spec.StartupTaints = []corev1.Taint{startupTaint}
	claim.Spec.Resources.Requests = corev1.ResourceList{
		corev1.ResourceCPU:   resource.MustParse("2"),
		v1.ResourceNvidiaGPU: resource.MustParse("1"),
	}
	if mutate != nil {
		mutate(claim)
	}
	e := newEnv(t, claim)
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("launch: %v", err)
	}
	return e, e.claim(t, "c1").Status.ProviderID
}

func kwokNode(name, providerID string, ready bool, taints ...corev1.Taint) *corev1.Node {
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Spec:       corev1.NodeSpec{ProviderID: providerID, Taints: taints},
		Status: corev1.NodeStatus{
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
		},
	}
}

func TestRegistrationSyncsNode(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	if err := e.client.Create(context.Background(), kwokNode("n1", providerID, false, unregistered)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	claim := e.claim(t, "c1")
	if claim.Status.NodeName != "n1" || !conditions.IsTrue(claim.Status.Conditions, v1.ConditionRegistered) {
		t.Fatalf("nodeName=%q conditions=%v, want n1 registered", claim.Status.NodeName, conditionStatuses(claim))
	}
	node := e.node(t, "n1")
	wantLabels := map[string]string{
		"kubernetes.io/hostname": "n1",
		"team":                   "ml",
		v1.LabelNodePool:         "gpu",
		v1.LabelCapacityType:     "spot",
		v1.LabelInstanceType:     "g5.xlarge",
		v1.LabelZone:             "zone-a",
		v1.LabelNodeClaim:        "c1",
		v1.LabelRegistered:       "true",
	}
	if diff := cmp.Diff(wantLabels, node.Labels); diff != "" {
		t.Errorf("node labels (-want +got):\n%s", diff)
	}
	// Not Ready yet: still held back from the scheduler.
	if diff := cmp.Diff([]corev1.Taint{gpuTaint, startupTaint, unregistered}, node.Spec.Taints,
		cmpopts.SortSlices(func(a, b corev1.Taint) bool { return a.Key < b.Key })); diff != "" {
		t.Errorf("node taints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{v1.TerminationFinalizer}, node.Finalizers); diff != "" {
		t.Errorf("node finalizers (-want +got):\n%s", diff)
	}
	if len(node.OwnerReferences) != 1 || node.OwnerReferences[0].Kind != "NodeClaim" ||
		node.OwnerReferences[0].UID != claim.UID {
		t.Errorf("owner references = %+v, want the nodeclaim", node.OwnerReferences)
	}
}

// A fresh Node's status changes every few hundred milliseconds, so the copy
// registration reads is often out of date. Labels, finalizer and owner are
// added to it anyway; taints are placed only from an up-to-date copy.
func TestRegistrationWithAStaleNodeCopy(t *testing.T) {
	ctx := context.Background()
	e, _ := launchedEnv(t, nil)
	claim := e.claim(t, "c1")
	r := &registration{client: e.client, clock: e.clock}
	staleCopy := func(name string, taints ...corev1.Taint) *corev1.Node {
		t.Helper()
		if err := e.client.Create(ctx, kwokNode(name, "fake://"+name, false, taints...)); err != nil {
			t.Fatal(err)
		}
		stale := e.node(t, name)
		heartbeat := stale.DeepCopy()
		heartbeat.Status.Conditions[0].Message = "kubelet is posting ready status"
		if err := e.client.Status().Update(ctx, heartbeat); err != nil {
			t.Fatal(err)
		}
		return stale
	}

	// Registered with its taints, as the kubelet does with the claim's.
	if err := r.syncNode(ctx, claim, staleCopy("n1", gpuTaint, startupTaint, unregistered)); err != nil {
		t.Fatalf("sync of a stale copy that adds no taints: %v", err)
	}
	node := e.node(t, "n1")
	if node.Labels[v1.LabelRegistered] != "true" || node.Labels[v1.LabelNodeClaim] != "c1" {
		t.Errorf("labels = %v, want registered and the claim's", node.Labels)
	}
	if diff := cmp.Diff([]string{v1.TerminationFinalizer}, node.Finalizers); diff != "" {
		t.Errorf("finalizers (-want +got):\n%s", diff)
	}
	if len(node.OwnerReferences) != 1 || node.OwnerReferences[0].UID != claim.UID {
		t.Errorf("owner references = %+v, want the nodeclaim", node.OwnerReferences)
	}
	if got := node.Status.Conditions[0].Message; got != "kubelet is posting ready status" {
		t.Errorf("the sync overwrote the newer status: message %q", got)
	}
	if len(node.Spec.Taints) != 3 {
		t.Errorf("taints = %v, want the three it registered with", node.Spec.Taints)
	}

	// Registered without them: placing them from a stale copy is refused,
	// and the reconcile that meets it retries without an error.
	err := r.syncNode(ctx, claim, staleCopy("n2"))
	if !apierrors.IsConflict(err) {
		t.Fatalf("sync of a stale copy that adds taints: err = %v, want a conflict", err)
	}
	if got := e.node(t, "n2"); len(got.Spec.Taints) != 0 || got.Labels[v1.LabelRegistered] != "" {
		t.Errorf("a refused sync changed the node: taints %v, labels %v", got.Spec.Taints, got.Labels)
	}
	if err := r.syncNode(ctx, claim, e.node(t, "n2")); err != nil {
		t.Fatalf("sync of an up-to-date copy: %v", err)
	}
	if got := e.node(t, "n2").Spec.Taints; len(got) != 2 {
		t.Errorf("taints = %v, want the claim's two", got)
	}
}

// A sync that met a newer Node is retried without an error: it is the normal
// case on a fresh Node, and an error logged a stack trace for each.
func TestRegistrationRetriesAConflictQuietly(t *testing.T) {
	ctx := context.Background()
	e, providerID := launchedEnv(t, nil)
	if err := e.client.Create(ctx, kwokNode("n1", providerID, false)); err != nil {
		t.Fatal(err)
	}
	conflicting := interceptor.NewClient(e.client.(client.WithWatch), interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*corev1.Node); ok {
				return apierrors.NewConflict(schema.GroupResource{Resource: "nodes"}, obj.GetName(), nil)
			}
			return c.Patch(ctx, obj, p, opts...)
		},
	})
	r := &registration{client: conflicting, clock: e.clock}
	res, done, err := r.reconcile(ctx, e.claim(t, "c1"))
	if err != nil || done || res.RequeueAfter <= 0 {
		t.Errorf("reconcile after a conflict = (%+v, %v, %v), want a retry without an error", res, done, err)
	}
}

// Startup taints are applied once: their owner removes them, and a later
// reconcile must not put them back.
func TestRegistrationTaintsOnce(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	if err := e.client.Create(context.Background(), kwokNode("n1", providerID, false)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatal(err)
	}
	node := e.node(t, "n1")
	node.Spec.Taints = []corev1.Taint{gpuTaint}
	if err := e.client.Update(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	// Force the registration step to run again, as after a crash before the status patch.
	claim := e.claim(t, "c1")
	conditions.Set(&claim.Status.Conditions, e.clock, 0, v1.ConditionRegistered, metav1.ConditionUnknown, "AwaitingNode", "")
	if err := e.client.Status().Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]corev1.Taint{gpuTaint}, e.node(t, "n1").Spec.Taints); diff != "" {
		t.Errorf("taints after re-registration (-want +got):\n%s", diff)
	}
}

func TestRegistrationTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout *metav1.Duration
		want    time.Duration
	}{
		{name: "default", want: DefaultRegistrationTimeout},
		{name: "from spec", timeout: &metav1.Duration{Duration: 30 * time.Minute}, want: 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			abandoned := abandonedTotal.WithLabelValues("gpu", abandonRegistrationTimeout)
			before := counterValue(t, abandoned)
			e, _ := launchedEnv(t, func(c *v1.NodeClaim) { c.Spec.RegistrationTimeout = tt.timeout })
			e.clock.Step(time.Minute)
			res, err := e.reconcile(t, "c1")
			if err != nil {
				t.Fatal(err)
			}
			if res.RequeueAfter != tt.want-time.Minute {
				t.Errorf("RequeueAfter = %v, want the rest of the timeout %v", res.RequeueAfter, tt.want-time.Minute)
			}
			if !e.claim(t, "c1").DeletionTimestamp.IsZero() {
				t.Fatal("claim deleted before its registration timeout")
			}
			e.clock.Step(tt.want - time.Minute)
			if _, err := e.reconcile(t, "c1"); err != nil {
				t.Fatal(err)
			}
			if e.claim(t, "c1").DeletionTimestamp.IsZero() {
				t.Fatal("claim not deleted after its registration timeout")
			}
			assertEvent(t, e.events, reasonRegistrationTimeout)
			if got := counterValue(t, abandoned) - before; got != 1 {
				t.Errorf("registration_timeout counter rose by %v, want 1", got)
			}
		})
	}
}

func TestInitialization(t *testing.T) {
	gpuAlloc := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), v1.ResourceNvidiaGPU: resource.MustParse("1")}
	tests := []struct {
		name        string
		ready       bool
		taints      []corev1.Taint
		allocatable corev1.ResourceList
		claim       func(*v1.NodeClaim)
		want        string
	}{
		{name: "node not ready", taints: nil, allocatable: gpuAlloc, want: "Unknown/" + initializedReasonNotReady},
		{name: "startup taint left", ready: true, taints: []corev1.Taint{startupTaint}, allocatable: gpuAlloc,
			want: "Unknown/" + initializedReasonStartupTaints},
		{name: "gpu not advertised", ready: true, allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			want: "Unknown/" + initializedReasonResources},
		{name: "initialized", ready: true, allocatable: gpuAlloc, want: "True/" + initializedReasonOK},
		// One of two GPUs advertised (a failed device): the pods bought
		// for it would never fit.
		{name: "fewer gpus than requested", ready: true, allocatable: gpuAlloc, claim: func(c *v1.NodeClaim) {
			c.Spec.Resources.Requests[v1.ResourceNvidiaGPU] = resource.MustParse("2")
		}, want: "Unknown/" + initializedReasonResources},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, providerID := launchedEnv(t, tt.claim)
			if err := e.client.Create(context.Background(), kwokNode("n1", providerID, false)); err != nil {
				t.Fatal(err)
			}
			if _, err := e.reconcile(t, "c1"); err != nil { // registers, adding the startup taint
				t.Fatal(err)
			}
			node := e.node(t, "n1")
			node.Spec.Taints = append([]corev1.Taint{gpuTaint}, tt.taints...)
			if err := e.client.Update(context.Background(), node); err != nil {
				t.Fatal(err)
			}
			node.Status.Allocatable = tt.allocatable
			node.Status.Conditions[0].Status = map[bool]corev1.ConditionStatus{true: corev1.ConditionTrue, false: corev1.ConditionFalse}[tt.ready]
			if err := e.client.Status().Update(context.Background(), node); err != nil {
				t.Fatal(err)
			}
			if _, err := e.reconcile(t, "c1"); err != nil {
				t.Fatal(err)
			}
			claim := e.claim(t, "c1")
			if got := conditionStatuses(claim)[v1.ConditionInitialized]; got != tt.want {
				t.Fatalf("Initialized = %s, want %s", got, tt.want)
			}
			initialized := tt.want == "True/"+initializedReasonOK
			if got := conditions.IsTrue(claim.Status.Conditions, v1.ConditionReady); got != initialized {
				t.Errorf("Ready = %v, want %v", got, initialized)
			}
			if got := e.node(t, "n1").Labels[v1.LabelInitialized] == "true"; got != initialized {
				t.Errorf("initialized label = %v, want %v", got, initialized)
			}
		})
	}
}

// A node the release has not reached yet takes no pods, so its claim is not
// Initialized: the release's taint test can fail on a stale copy and is
// retried a second later, and Ready meant "takes pods" to users before that.
func TestInitializationWaitsForRelease(t *testing.T) {
	ctx := context.Background()
	e, providerID := launchedEnv(t, func(c *v1.NodeClaim) { c.Spec.StartupTaints = nil })
	if err := e.client.Create(ctx, kwokNode("n1", providerID, true, unregistered)); err != nil {
		t.Fatal(err)
	}
	node := e.node(t, "n1")
	node.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), v1.ResourceNvidiaGPU: resource.MustParse("1")}
	if err := e.client.Status().Update(ctx, node); err != nil {
		t.Fatal(err)
	}
	stale := interceptor.NewClient(e.client.(client.WithWatch), interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*corev1.Node); ok && p.Type() == types.JSONPatchType {
				return errTaintTestFailed()
			}
			return c.Patch(ctx, obj, p, opts...)
		},
	})
	ctrl := NewController(Deps{Client: stale, CloudProvider: e.cloud, Clock: e.clock, Recorder: e.events})
	if _, err := ctrl.Reconcile(ctx, e.claim(t, "c1")); err != nil {
		t.Fatal(err)
	}
	claim := e.claim(t, "c1")
	if got, want := conditionStatuses(claim)[v1.ConditionInitialized], "Unknown/"+initializedReasonNotReleased; got != want {
		t.Errorf("Initialized with the unregistered taint left = %s, want %s", got, want)
	}
	if conditions.IsTrue(claim.Status.Conditions, v1.ConditionReady) {
		t.Error("claim is Ready while its node still has the unregistered taint")
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatal(err)
	}
	if got, want := conditionStatuses(e.claim(t, "c1"))[v1.ConditionInitialized], "True/"+initializedReasonOK; got != want {
		t.Errorf("Initialized after the release = %s, want %s", got, want)
	}
}

func TestClaimForNode(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	other := kwokNode("other", "cloudtest://elsewhere", true)
	mine := kwokNode("n1", providerID, true)
	for _, n := range []*corev1.Node{other, mine} {
		if err := e.client.Create(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.ctrl.claimForNode(context.Background(), other); len(got) != 0 {
		t.Errorf("unrelated node mapped to %v", got)
	}
	got := e.ctrl.claimForNode(context.Background(), mine)
	if len(got) != 1 || got[0].NamespacedName != (client.ObjectKey{Name: "c1"}) {
		t.Errorf("node mapped to %v, want c1", got)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	m := &dto.Metric{}
	if err := c.Write(m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

type nominationsStub map[string][]*corev1.Pod

func (n nominationsStub) NominatedPods(node string) []*corev1.Pod { return n[node] }

// The node is released to the scheduler (the unregistered taint removed)
// only once it is Ready and its readiness taints are gone, and only after
// the pods planned onto it have been pointed at it.
func TestReleaseSteersPlannedPodsFirst(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	planned := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "infer"}}
	if err := e.client.Create(context.Background(), planned); err != nil {
		t.Fatal(err)
	}
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: e.clock, Recorder: e.events,
		Nominations: nominationsStub{"n1": {planned}}})
	notReadyTaint := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
	if err := e.client.Create(context.Background(), kwokNode("n1", providerID, true, unregistered, notReadyTaint)); err != nil {
		t.Fatal(err)
	}
	steered := func() string {
		p := &corev1.Pod{}
		if err := e.client.Get(context.Background(), client.ObjectKeyFromObject(planned), p); err != nil {
			t.Fatal(err)
		}
		return p.Status.NominatedNodeName
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatal(err)
	}
	if !hasTaintKey(e.node(t, "n1").Spec.Taints, v1.UnregisteredTaintKey) || steered() != "" {
		t.Fatal("released (or steered to) a node that still carries the not-ready taint")
	}
	// The node lifecycle controller lifts the not-ready taint.
	node := e.node(t, "n1")
	node.Spec.Taints = []corev1.Taint{unregistered, gpuTaint, startupTaint}
	if err := e.client.Update(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatal(err)
	}
	if hasTaintKey(e.node(t, "n1").Spec.Taints, v1.UnregisteredTaintKey) {
		t.Error("a Ready node without readiness taints was not released")
	}
	if got := steered(); got != "n1" {
		t.Errorf("planned pod's nominatedNodeName = %q, want n1", got)
	}
}

// The kubelet updates the Node's status all the time; the release must not
// fail on a copy older than the stored Node (each retry gave the scheduler
// time to clear the nominations just set), and must not drop a taint that
// moved in the meantime.
func TestReleaseWithAStaleNodeCopy(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := &registration{client: e.client, clock: e.clock}
	if err := e.client.Create(ctx, kwokNode("n1", "fake://n1", true, gpuTaint, unregistered)); err != nil {
		t.Fatal(err)
	}
	stale := e.node(t, "n1")
	heartbeat := stale.DeepCopy()
	heartbeat.Status.Conditions[0].Message = "kubelet is posting ready status"
	if err := e.client.Status().Update(ctx, heartbeat); err != nil {
		t.Fatal(err)
	}
	if _, err := r.release(ctx, stale.DeepCopy()); err != nil {
		t.Fatalf("release with a copy older than a status update: %v", err)
	}
	if got := e.node(t, "n1").Spec.Taints; len(got) != 1 || got[0].Key != gpuTaint.Key {
		t.Errorf("taints after release = %v, want only %s", got, gpuTaint.Key)
	}

	// Someone else reordered the taints since the copy was taken: the patch
	// must refuse rather than remove whatever sits at the old index.
	if err := e.client.Create(ctx, kwokNode("n2", "fake://n2", true, gpuTaint, unregistered)); err != nil {
		t.Fatal(err)
	}
	stale = e.node(t, "n2")
	moved := stale.DeepCopy()
	moved.Spec.Taints = []corev1.Taint{unregistered, gpuTaint}
	if err := e.client.Update(ctx, moved); err != nil {
		t.Fatal(err)
	}
	// A stale copy is retried. The API server answers a failed test with 422
	// Invalid, which release turns into a quiet retry; the fake client's
	// plain error comes back as an error. Either way it is not done.
	if poll, err := r.release(ctx, stale.DeepCopy()); err == nil && poll <= 0 {
		t.Error("release with a stale taint order reported success")
	}
	if got := e.node(t, "n2").Spec.Taints; len(got) != 2 {
		t.Errorf("taints after a refused release = %v, want both kept", got)
	}
}

// In an untainted pool the scheduler put the first pending pods it met (CPU
// pods) on a fresh GPU machine, and the GPU pods planned there needed a
// second one. A released node is reserved for its planned pods until they
// are bound: they tolerate the reservation, nobody else does.
func TestReleaseReservesTheNodeForItsPlannedPods(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	planned := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "train", UID: "pod-uid"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}}},
			Tolerations: []corev1.Toleration{gpuToleration}},
	}
	if err := e.client.Create(ctx, planned); err != nil {
		t.Fatal(err)
	}
	nominated := nominationsStub{"n1": {planned}}
	r := &registration{client: e.client, clock: e.clock, nominations: nominated}
	node := kwokNode("n1", "fake://n1", true, gpuTaint, unregistered)
	node.UID = "node-uid"
	if err := e.client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	poll, err := r.release(ctx, e.node(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	taints := e.node(t, "n1").Spec.Taints
	if len(taints) != 2 || taints[0] != gpuTaint || taints[1].Key != v1.ReservedTaintKey || taints[1].Value != "node-uid" ||
		taints[1].Effect != corev1.TaintEffectNoSchedule {
		t.Fatalf("taints after release = %v, want %s and the reservation (value node-uid, NoSchedule)", taints, gpuTaint.Key)
	}
	if poll <= 0 {
		t.Error("a reserved node is not polled for its pods binding")
	}
	pod := &corev1.Pod{}
	if err := e.client.Get(ctx, client.ObjectKeyFromObject(planned), pod); err != nil {
		t.Fatal(err)
	}
	want := []corev1.Toleration{gpuToleration, {Key: v1.ReservedTaintKey, Operator: corev1.TolerationOpEqual,
		Value: "node-uid", Effect: corev1.TaintEffectNoSchedule}}
	if diff := cmp.Diff(want, pod.Spec.Tolerations); diff != "" {
		t.Errorf("planned pod's tolerations (-want +got):\n%s", diff)
	}
	if pod.Status.NominatedNodeName != "n1" {
		t.Errorf("planned pod's nominatedNodeName = %q, want n1", pod.Status.NominatedNodeName)
	}

	// Still pending: the reservation holds.
	if _, err := r.release(ctx, e.node(t, "n1")); err != nil {
		t.Fatal(err)
	}
	if !hasTaintKey(e.node(t, "n1").Spec.Taints, v1.ReservedTaintKey) {
		t.Fatal("the reservation went while its pod was still pending")
	}
	// Bound: nothing is nominated any more, and the node is everyone's.
	delete(nominated, "n1")
	poll, err = r.release(ctx, e.node(t, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if taints := e.node(t, "n1").Spec.Taints; len(taints) != 1 || taints[0] != gpuTaint || poll != 0 {
		t.Errorf("after the planned pods bound: taints %v and poll %v, want only %s and no poll", taints, poll, gpuTaint.Key)
	}
}

// A reservation is lifted after maxReservation even if a planned pod never
// binds (the plan was wrong about it), so the node is not kept idle.
func TestReservationEndsAfterMaxReservation(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	planned := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p", UID: "pod-uid"}}
	if err := e.client.Create(ctx, planned); err != nil {
		t.Fatal(err)
	}
	r := &registration{client: e.client, clock: e.clock, nominations: nominationsStub{"n1": {planned}}}
	node := kwokNode("n1", "fake://n1", true, unregistered)
	node.UID = "node-uid"
	if err := e.client.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	if _, err := r.release(ctx, e.node(t, "n1")); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(maxReservation - time.Second)
	if _, err := r.release(ctx, e.node(t, "n1")); err != nil || !hasTaintKey(e.node(t, "n1").Spec.Taints, v1.ReservedTaintKey) {
		t.Fatalf("reservation lifted before maxReservation (err %v)", err)
	}
	e.clock.Step(time.Second)
	if _, err := r.release(ctx, e.node(t, "n1")); err != nil {
		t.Fatal(err)
	}
	if taints := e.node(t, "n1").Spec.Taints; len(taints) != 0 {
		t.Errorf("taints after maxReservation = %v, want none", taints)
	}
}

// A node whose device plugin has not registered the GPUs its planned pods
// need, or whose planned pods claim DRA devices, is released without a
// reservation: the plugin's or driver's DaemonSet would not tolerate it, and
// the pods could not bind until it ended.
func TestNoReservationBeforeTheNodeOffersWhatPodsNeed(t *testing.T) {
	for name, spec := range map[string]corev1.PodSpec{
		"gpu not advertised": {Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("1")}}}}},
		"dra claim": {Containers: []corev1.Container{{Name: "c"}},
			ResourceClaims: []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To("gpu-claim")}}},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			e := newEnv(t)
			planned := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "train", UID: "pod-uid"}, Spec: spec}
			if err := e.client.Create(ctx, planned); err != nil {
				t.Fatal(err)
			}
			r := &registration{client: e.client, clock: e.clock, nominations: nominationsStub{"n1": {planned}}}
			if err := e.client.Create(ctx, kwokNode("n1", "fake://n1", true, unregistered)); err != nil {
				t.Fatal(err)
			}
			if _, err := r.release(ctx, e.node(t, "n1")); err != nil {
				t.Fatal(err)
			}
			if taints := e.node(t, "n1").Spec.Taints; len(taints) != 0 {
				t.Errorf("taints = %v, want none", taints)
			}
		})
	}
}

// errTaintTestFailed is the API server's answer to a JSON patch whose test
// of a taint failed: the copy the patch was made from is behind.
func errTaintTestFailed() error {
	return apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", schema.GroupResource{}, "",
		"testing value /spec/taints/0 failed", 0, false)
}

// The API server answers a JSON patch whose test failed with 422 Invalid:
// that is the cache being behind, retried quietly rather than logged as a
// reconcile error (it happened several times per e2e run).
func TestReleaseRetriesAFailedTestQuietly(t *testing.T) {
	ctx := context.Background()
	node := kwokNode("n1", "fake://n1", true, unregistered)
	c := cloudtest.NewClientBuilder().WithObjects(node).WithInterceptorFuncs(interceptor.Funcs{
		Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
			return errTaintTestFailed()
		},
	}).Build()
	r := &registration{client: c, clock: clocktesting.NewFakeClock(start)}
	poll, err := r.release(ctx, node)
	if err != nil || poll <= 0 {
		t.Errorf("release after a failed test = (%v, %v), want a retry without an error", poll, err)
	}
}

// A node that registers but never turns Ready is given up at the
// registration timeout counted from registering: the claim is deleted, so
// the machine stops billing and its pods are planned again.
func TestNeverInitializedClaimIsGivenUp(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	if err := e.client.Create(context.Background(), kwokNode("n1", providerID, false, unregistered)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if !conditions.IsTrue(e.claim(t, "c1").Status.Conditions, v1.ConditionRegistered) {
		t.Fatal("c1 should be registered")
	}
	e.clock.Step(DefaultRegistrationTimeout - time.Minute)
	res, err := e.reconcile(t, "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !e.claim(t, "c1").DeletionTimestamp.IsZero() || res.RequeueAfter <= 0 || res.RequeueAfter > time.Minute {
		t.Fatalf("before the timeout: deleted %v, requeue after %s; want kept and a requeue within a minute",
			!e.claim(t, "c1").DeletionTimestamp.IsZero(), res.RequeueAfter)
	}
	e.clock.Step(time.Minute)
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatal(err)
	}
	if e.claim(t, "c1").DeletionTimestamp.IsZero() {
		t.Error("a claim whose node never became Ready is kept past the timeout")
	}
}

// Two Nodes carrying the claim's providerID cannot both be its machine;
// the claim is not registered, and the registration timeout gives it up.
func TestTwoNodesForOneMachineTimeOut(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	for _, n := range []string{"n1", "n2"} {
		if err := e.client.Create(context.Background(), kwokNode(n, providerID, false, unregistered)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if conditions.IsTrue(e.claim(t, "c1").Status.Conditions, v1.ConditionRegistered) || !e.claim(t, "c1").DeletionTimestamp.IsZero() {
		t.Fatal("before the timeout the claim must be neither registered nor deleted")
	}
	e.clock.Step(DefaultRegistrationTimeout)
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if e.claim(t, "c1").DeletionTimestamp.IsZero() {
		t.Error("the claim was not given up at the registration timeout")
	}
}

// A registered claim's Node that goes without Stowage's finalizer running
// (someone stripped it to unstick a delete) takes its claim with it, as a
// kubectl delete node does: otherwise the machine bills on with no Node, and
// provisioning counts the claim as a node still on its way.
func TestClaimWhoseNodeIsGoneIsDeleted(t *testing.T) {
	for _, initialized := range []bool{false, true} {
		t.Run(map[bool]string{false: "registered", true: "initialized"}[initialized], func(t *testing.T) {
			ctx := context.Background()
			e, providerID := launchedEnv(t, func(c *v1.NodeClaim) {
				c.Spec.StartupTaints = nil
				c.Spec.Resources.Requests = nil
			})
			if err := e.client.Create(ctx, kwokNode("n1", providerID, initialized, unregistered)); err != nil {
				t.Fatal(err)
			}
			if _, err := e.reconcile(t, "c1"); err != nil {
				t.Fatal(err)
			}
			claim := e.claim(t, "c1")
			if !conditions.IsTrue(claim.Status.Conditions, v1.ConditionRegistered) ||
				conditions.IsTrue(claim.Status.Conditions, v1.ConditionInitialized) != initialized {
				t.Fatalf("conditions = %v, want registered, initialized %v", conditionStatuses(claim), initialized)
			}
			node := e.node(t, "n1")
			node.Finalizers = nil
			if err := e.client.Update(ctx, node); err != nil {
				t.Fatal(err)
			}
			if err := e.client.Delete(ctx, node); err != nil {
				t.Fatal(err)
			}
			if _, err := e.reconcile(t, "c1"); err != nil {
				t.Fatal(err)
			}
			if e.claim(t, "c1").DeletionTimestamp.IsZero() {
				t.Fatal("a claim whose node is gone must be deleted so termination deletes its machine")
			}
			assertEvent(t, e.events, reasonNodeDeleted)
		})
	}
}
