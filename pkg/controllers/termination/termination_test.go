package termination

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type env struct {
	client client.Client
	clock  *clocktesting.FakeClock
	cloud  *cloudtest.Provider
	ctrl   *Controller
	// pdbBlocks makes every eviction answer 429 while set.
	pdbBlocks atomic.Bool
	// evictFails makes every eviction answer 500 while set (a webhook).
	evictFails atomic.Bool
	// throttled makes every eviction answer 429 as API Priority and
	// Fairness does while set: no Status body, a Retry-After, no PDB.
	throttled atomic.Bool
}

// newEnv builds a cluster holding a launched claim c1 (deleted at start, with
// the given terminationGracePeriod) on node n1, plus objs.
func newEnv(t *testing.T, grace *time.Duration, objs ...client.Object) *env {
	t.Helper()
	clk := clocktesting.NewFakeClock(start)
	e := &env{clock: clk, cloud: cloudtest.New(clk)}
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "c1", UID: "uid-c1", Labels: map[string]string{v1.LabelNodePool: "gpu"},
			Finalizers: []string{v1.TerminationFinalizer}},
		Spec: v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{{InstanceType: "g5.xlarge", Zone: "zone-a", CapacityType: "spot"}}},
	}
	if grace != nil {
		claim.Spec.TerminationGracePeriod = &metav1.Duration{Duration: *grace}
	}
	launched, err := e.cloud.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	claim.Status = launched.Status
	claim.Status.NodeName = "n1"
	deleted := metav1.NewTime(start)
	claim.DeletionTimestamp = &deleted
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Finalizers: []string{v1.TerminationFinalizer},
			Labels: map[string]string{v1.LabelNodeClaim: "c1"}},
		Spec: corev1.NodeSpec{ProviderID: claim.Status.ProviderID},
	}
	e.client = cloudtest.NewClientBuilder().
		WithObjects(append([]client.Object{claim, node}, objs...)...).
		WithInterceptorFuncs(interceptor.Funcs{SubResourceCreate: func(ctx context.Context, c client.Client, sub string,
			obj, subObj client.Object, opts ...client.SubResourceCreateOption) error {
			if sub == "eviction" && e.pdbBlocks.Load() {
				return pdbRefusal()
			}
			if sub == "eviction" && e.throttled.Load() {
				// What client-go makes of APF's plain-text 429 once its own retries are spent.
				return apierrors.NewGenericServerResponse(http.StatusTooManyRequests, http.MethodPost,
					schema.GroupResource{Resource: "pods"}, obj.GetName(), "Too many requests, please try again later.\n", 1, true)
			}
			if sub == "eviction" && e.evictFails.Load() {
				return apierrors.NewInternalError(errors.New("admission webhook refused the eviction"))
			}
			return c.SubResource(sub).Create(ctx, obj, subObj, opts...)
		}}).
		Build()
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: clk, Recorder: events.NewFakeRecorder(1000)})
	return e
}

// pdbRefusal is the eviction API's answer when a PodDisruptionBudget
// allows no disruption (pkg/registry/core/pod/storage/eviction.go).
func pdbRefusal() error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{
		Type: policyv1.DisruptionBudgetCause, Message: "The disruption budget web needs 1 healthy pods and has 1 currently"})
	return err
}

func (e *env) reconcileClaim(t *testing.T) (reconcile.Result, error) {
	t.Helper()
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatalf("getting nodeclaim: %v", err)
	}
	return e.ctrl.ReconcileNodeClaim(context.Background(), claim)
}

// loseMachine deletes claim c1's machine behind the controller's back and
// returns the claim.
func (e *env) loseMachine(t *testing.T) *v1.NodeClaim {
	t.Helper()
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatal(err)
	}
	if err := e.cloud.Delete(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	return claim
}

// reconcileUntilGone reconciles claim c1 up to passes times, stepping the
// clock by step after each, until the claim is gone.
func (e *env) reconcileUntilGone(t *testing.T, passes int, step time.Duration) {
	t.Helper()
	for i := 0; i < passes && e.exists(t, &v1.NodeClaim{}, "c1"); i++ {
		if _, err := e.reconcileClaim(t); err != nil {
			t.Fatal(err)
		}
		e.clock.Step(step)
	}
}

// podsLeft names the pods still stored.
func (e *env) podsLeft(t *testing.T) []string {
	t.Helper()
	pods := &corev1.PodList{}
	if err := e.client.List(context.Background(), pods); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out
}

func (e *env) exists(t *testing.T, obj client.Object, name string) bool {
	t.Helper()
	err := e.client.Get(context.Background(), client.ObjectKey{Name: name}, obj)
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func pod(name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: "n1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func daemonSetOwned(p *corev1.Pod) {
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "DaemonSet", Name: "ds", UID: "ds", Controller: ptr.To(true)}}
}
func mirror(p *corev1.Pod) { p.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "x"} }
func toleratesAll(p *corev1.Pod) {
	p.Spec.Tolerations = []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
}
func succeeded(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }
func critical(p *corev1.Pod)  { p.Spec.PriorityClassName = "system-cluster-critical" }
func doNotDisrupt(p *corev1.Pod) {
	p.Annotations = map[string]string{v1.AnnotationDoNotDisrupt: "true"}
}
func otherNode(p *corev1.Pod) { p.Spec.NodeName = "n2" }

func TestDrainOrderAndSkips(t *testing.T) {
	e := newEnv(t, nil,
		pod("web"), pod("dns", critical), pod("logs", daemonSetOwned), pod("cni", daemonSetOwned, critical),
		pod("static", mirror), pod("tolerant", toleratesAll, daemonSetOwned), pod("done", succeeded), pod("elsewhere", otherNode))
	stay := []string{"done", "elsewhere", "static", "tolerant"}
	with := func(names ...string) []string {
		out := append(names, stay...)
		sort.Strings(out)
		return out
	}

	steps := []struct {
		wantPods     []string
		wantDone     bool
		wantDeletes  int
		wantRequeues bool
	}{
		{wantPods: with("cni", "dns", "logs"), wantRequeues: true}, // applications first
		{wantPods: with("cni", "dns"), wantRequeues: true},         // then their DaemonSets
		{wantPods: with("cni"), wantRequeues: true},                // then critical pods
		{wantPods: with(), wantRequeues: true},                     // then critical DaemonSets
		{wantPods: with(), wantDone: true, wantDeletes: 1},         // drained: machine deleted
	}
	for i, step := range steps {
		res, err := e.reconcileClaim(t)
		if err != nil {
			t.Fatalf("pass %d: %v", i, err)
		}
		if diff := cmp.Diff(step.wantPods, e.podsLeft(t)); diff != "" {
			t.Errorf("pass %d: pods left (-want +got):\n%s", i, diff)
		}
		if got := res.RequeueAfter > 0; got != step.wantRequeues {
			t.Errorf("pass %d: requeue = %v, want %v", i, got, step.wantRequeues)
		}
		if n := len(e.cloud.Deleted()); n != step.wantDeletes {
			t.Errorf("pass %d: %d machines deleted, want %d", i, n, step.wantDeletes)
		}
		if i == 0 {
			node := &corev1.Node{}
			if !e.exists(t, node, "n1") || len(node.Spec.Taints) != 1 || !node.Spec.Taints[0].MatchTaint(&disruptedTaint) {
				t.Fatalf("node must be cordoned with the disrupted taint, taints = %v", node.Spec.Taints)
			}
		}
	}
	if e.exists(t, &corev1.Node{}, "n1") {
		t.Error("node must be deleted once the machine is gone")
	}
	if e.exists(t, &v1.NodeClaim{}, "c1") {
		t.Error("nodeclaim finalizer must be released")
	}
}

func TestDrainWaitsForPDB(t *testing.T) {
	e := newEnv(t, nil, pod("web"))
	e.pdbBlocks.Store(true)
	for i := range 3 {
		res, err := e.reconcileClaim(t)
		if err != nil {
			t.Fatalf("a refused eviction is not an error: %v", err)
		}
		if res.RequeueAfter == 0 {
			t.Fatalf("pass %d: must requeue while a PDB blocks", i)
		}
	}
	if diff := cmp.Diff([]string{"web"}, e.podsLeft(t)); diff != "" {
		t.Fatalf("pods (-want +got):\n%s", diff)
	}
	if n := len(e.cloud.Deleted()); n != 0 {
		t.Fatal("machine deleted while a PDB still protects a pod")
	}
	e.pdbBlocks.Store(false)
	for range 2 {
		if _, err := e.reconcileClaim(t); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.podsLeft(t)) != 0 || len(e.cloud.Deleted()) != 1 {
		t.Fatalf("after the PDB is relaxed: pods %v, deleted %v", e.podsLeft(t), e.cloud.Deleted())
	}
}

func TestDoNotDisruptBlocksUntilGracePeriod(t *testing.T) {
	tests := []struct {
		name  string
		grace *time.Duration
		pdb   bool
	}{
		{name: "do-not-disrupt pod", grace: ptr.To(10 * time.Minute)},
		{name: "pdb never relaxes", grace: ptr.To(10 * time.Minute), pdb: true},
		{name: "no grace period blocks forever"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pod("train", doNotDisrupt)
			if tt.pdb {
				p = pod("train")
			}
			e := newEnv(t, tt.grace, p)
			e.pdbBlocks.Store(tt.pdb)
			e.clock.Step(9 * time.Minute)
			if _, err := e.reconcileClaim(t); err != nil {
				t.Fatal(err)
			}
			if len(e.podsLeft(t)) != 1 || len(e.cloud.Deleted()) != 0 {
				t.Fatal("the pod must hold the machine within the grace period")
			}
			e.clock.Step(time.Minute)
			if _, err := e.reconcileClaim(t); err != nil {
				t.Fatal(err)
			}
			wantGone := tt.grace != nil
			if gone := len(e.podsLeft(t)) == 0; gone != wantGone {
				t.Fatalf("pod deleted = %v, want %v", gone, wantGone)
			}
			if deleted := len(e.cloud.Deleted()) == 1; deleted != wantGone {
				t.Fatalf("machine deleted = %v, want %v", deleted, wantGone)
			}
		})
	}
}

// A claim deleted after a crash between Create and the status patch has no
// providerID; its machine is found by the claim label and deleted.
func TestDeletesUnrecordedMachine(t *testing.T) {
	e := newEnv(t, nil)
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatal(err)
	}
	recorded := claim.Status.ProviderID
	claim.Status = v1.NodeClaimStatus{}
	if err := e.client.Status().Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	other := e.cloud.AddInstance("c2", metav1.NewTime(start))
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{recorded}, e.cloud.Deleted()); diff != "" {
		t.Fatalf("deleted machines (-want +got):\n%s", diff)
	}
	if _, err := e.cloud.Get(context.Background(), other); err != nil {
		t.Fatalf("another claim's machine must survive: %v", err)
	}
	if e.exists(t, &v1.NodeClaim{}, "c1") {
		t.Fatal("finalizer must be released")
	}
}

// TestUnlaunchedClaimGoesToDelete: a claim with no providerID and no
// machine listed is handed to Delete itself, so the provider can remove
// what a launch cut short left behind by name (an Azure network interface).
func TestUnlaunchedClaimGoesToDelete(t *testing.T) {
	e := newEnv(t, nil)
	claim := e.loseMachine(t)
	claim.Status = v1.NodeClaimStatus{}
	if err := e.client.Status().Update(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	before := e.cloud.Calls("Delete")
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	if got := e.cloud.Calls("Delete") - before; got != 1 {
		t.Errorf("Delete called %d times for the unlaunched claim, want 1", got)
	}
	if e.exists(t, &v1.NodeClaim{}, "c1") {
		t.Fatal("finalizer must be released: nothing is left to delete")
	}
}

func TestMachineDeleteErrors(t *testing.T) {
	t.Run("already gone is success", func(t *testing.T) {
		e := newEnv(t, nil)
		e.loseMachine(t)
		if _, err := e.reconcileClaim(t); err != nil {
			t.Fatalf("NotFound must count as deleted: %v", err)
		}
		if e.exists(t, &v1.NodeClaim{}, "c1") {
			t.Fatal("finalizer must be released")
		}
	})
	t.Run("cloud error keeps the finalizer", func(t *testing.T) {
		e := newEnv(t, nil)
		e.cloud.SetError("Delete", errors.New("throttled"))
		if _, err := e.reconcileClaim(t); err == nil {
			t.Fatal("a delete error must be returned for a retry")
		}
		if !e.exists(t, &v1.NodeClaim{}, "c1") || !e.exists(t, &corev1.Node{}, "n1") {
			t.Fatal("claim and node must stay until the machine is deleted")
		}
	})
}

func TestNodeFinalizer(t *testing.T) {
	t.Run("deleting a node deletes its claim", func(t *testing.T) {
		e := newEnv(t, nil)
		claim := &v1.NodeClaim{}
		if err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, claim); err != nil {
			t.Fatal(err)
		}
		// Start from a live claim: drop the fixture's deletion by recreating it.
		live := claim.DeepCopy()
		live.DeletionTimestamp, live.ResourceVersion = nil, ""
		live.Name = "c-live"
		if err := e.client.Create(context.Background(), live); err != nil {
			t.Fatal(err)
		}
		live.Status = claim.Status
		live.Status.ProviderID = "cloudtest://live"
		if err := e.client.Status().Update(context.Background(), live); err != nil {
			t.Fatal(err)
		}
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n-live", Finalizers: []string{v1.TerminationFinalizer}},
			Spec: corev1.NodeSpec{ProviderID: "cloudtest://live"}}
		if err := e.client.Create(context.Background(), node); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Delete(context.Background(), node); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Get(context.Background(), client.ObjectKey{Name: "n-live"}, node); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ctrl.ReconcileNode(context.Background(), node); err != nil {
			t.Fatal(err)
		}
		got := &v1.NodeClaim{}
		if !e.exists(t, got, "c-live") || got.DeletionTimestamp.IsZero() {
			t.Fatal("the node's claim must be deleted")
		}
		if !e.exists(t, &corev1.Node{}, "n-live") {
			t.Fatal("the node finalizer stays until the claim's termination releases it")
		}
	})
	t.Run("node without claim is released", func(t *testing.T) {
		e := newEnv(t, nil)
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "orphan", Finalizers: []string{v1.TerminationFinalizer}},
			Spec: corev1.NodeSpec{ProviderID: "cloudtest://nobody"}}
		if err := e.client.Create(context.Background(), node); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Delete(context.Background(), node); err != nil {
			t.Fatal(err)
		}
		if err := e.client.Get(context.Background(), client.ObjectKey{Name: "orphan"}, node); err != nil {
			t.Fatal(err)
		}
		if _, err := e.ctrl.ReconcileNode(context.Background(), node); err != nil {
			t.Fatal(err)
		}
		if e.exists(t, &corev1.Node{}, "orphan") {
			t.Fatal("a node no claim owns must be released")
		}
	})
}

func TestTerminationReason(t *testing.T) {
	cond := func(types ...string) []metav1.Condition {
		var out []metav1.Condition
		for _, ty := range types {
			out = append(out, metav1.Condition{Type: ty, Status: metav1.ConditionTrue})
		}
		return out
	}
	registered := cond(v1.ConditionLaunched, v1.ConditionRegistered)
	for _, tc := range []struct {
		want       string
		conditions []metav1.Condition
		reason     v1.DisruptionReason // the disruption command's, if any
	}{
		{"not_launched", nil, ""},
		{"not_registered", cond(v1.ConditionLaunched), ""},
		{"deleted", registered, ""},
		{"expired", cond(v1.ConditionLaunched, v1.ConditionRegistered, v1.ConditionExpired), ""},
		{"interrupted", cond(v1.ConditionLaunched, v1.ConditionInterrupted, v1.ConditionDrifted), v1.DisruptionReasonDrifted},
		{"empty", registered, v1.DisruptionReasonEmpty},
		{"consolidated", cond(v1.ConditionLaunched, v1.ConditionRegistered, v1.ConditionDrifted), v1.DisruptionReasonUnderutilized},
		{"repaired", registered, v1.DisruptionReasonUnhealthy},
		{"deleted", registered, "Unknown"},
	} {
		claim := &v1.NodeClaim{Status: v1.NodeClaimStatus{Conditions: tc.conditions}}
		if tc.reason != "" {
			claim.Annotations = map[string]string{v1.AnnotationDisruptionReason: string(tc.reason)}
		}
		if got := terminationReason(claim); got != tc.want {
			t.Errorf("reason for %v, disrupted for %q = %s, want %s", tc.conditions, tc.reason, got, tc.want)
		}
	}
}

func terminating(at time.Time) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		ts := metav1.NewTime(at)
		p.DeletionTimestamp = &ts
		p.Finalizers = []string{"example.com/hold"}
	}
}

// A pod held by a finalizer past its grace period no longer holds up the
// node, its claim and its machine; one still within its grace period does.
func TestDrainIgnoresPodsStuckTerminating(t *testing.T) {
	e := newEnv(t, nil, pod("stuck", terminating(start.Add(-time.Second))), pod("stopping", terminating(start.Add(20*time.Second))))
	res, err := e.reconcileClaim(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter == 0 || len(e.cloud.Deleted()) != 0 {
		t.Fatalf("machine deleted while a pod is still within its grace period")
	}
	e.clock.Step(20 * time.Second)
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	if n := len(e.cloud.Deleted()); n != 1 {
		t.Fatalf("%d machines deleted, want 1: pods past their grace period must not block", n)
	}
	if e.exists(t, &v1.NodeClaim{}, "c1") {
		t.Error("nodeclaim finalizer not released")
	}
}

// With a terminationGracePeriod, a pod is deleted early enough to get its
// own grace period before the deadline, PDBs notwithstanding.
func TestDrainDeletesPodsInTimeForTheGracePeriod(t *testing.T) {
	grace := 10 * time.Minute
	e := newEnv(t, &grace, pod("slow", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](120) }))
	e.pdbBlocks.Store(true)
	e.clock.SetTime(start.Add(8*time.Minute - time.Second))
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"slow"}, e.podsLeft(t)); diff != "" {
		t.Fatalf("before deadline-grace: pods (-want +got):\n%s", diff)
	}
	e.clock.Step(time.Second)
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	if got := e.podsLeft(t); len(got) != 0 {
		t.Errorf("pods left %v at deadline minus the pod's grace, want it deleted", got)
	}
}

func volumeAttachment(name, pv string) *storagev1.VolumeAttachment {
	return &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "ebs.csi.aws.com", NodeName: "n1",
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(pv)}},
	}
}

// The machine is deleted only once its volumes are detached, except those
// of pods that stay on the node to the end.
func TestTerminationWaitsForVolumesToDetach(t *testing.T) {
	keeper := pod("agent", daemonSetOwned, toleratesAll, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "agent-data"}}}}
	})
	e := newEnv(t, nil, keeper,
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "agent-data"},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-agent"}},
		volumeAttachment("va-model", "pv-model"), volumeAttachment("va-agent", "pv-agent"))
	res, err := e.reconcileClaim(t)
	if err != nil {
		t.Fatal(err)
	}
	if res.RequeueAfter == 0 || len(e.cloud.Deleted()) != 0 {
		t.Fatal("machine deleted while a volume is still attached")
	}
	// The wait is seen on the claim, not only in the controller's log.
	rec := e.ctrl.claims.events.r.(*events.FakeRecorder)
	waiting := false
	for len(rec.Events) > 0 {
		if ev := <-rec.Events; strings.HasPrefix(ev, "Normal AwaitingVolumeDetach") && strings.Contains(ev, "1 volume(s)") {
			waiting = true
		}
	}
	if !waiting {
		t.Error("no AwaitingVolumeDetach event for the volume still attached")
	}
	if err := e.client.Delete(context.Background(), volumeAttachment("va-model", "pv-model")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	if n := len(e.cloud.Deleted()); n != 1 {
		t.Errorf("%d machines deleted, want 1 once only the staying pod's volume is attached", n)
	}
}

// A NotReady node whose machine is gone is not drained: no kubelet would
// carry the evictions out.
func TestTerminationSkipsTheDrainWhenTheMachineIsGone(t *testing.T) {
	e := newEnv(t, nil, pod("web"))
	e.pdbBlocks.Store(true)
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatal(err)
	}
	if err := e.cloud.Delete(context.Background(), claim); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcileClaim(t); err != nil {
		t.Fatal(err)
	}
	if e.exists(t, &v1.NodeClaim{}, "c1") || e.exists(t, &corev1.Node{}, "n1") {
		t.Error("the claim and node of a machine that is gone must go without a drain")
	}
	// A Ready node is drained as usual, without asking the cloud.
	e2 := newEnv(t, nil, pod("web"))
	e2.pdbBlocks.Store(true)
	node := &corev1.Node{}
	if err := e2.client.Get(context.Background(), client.ObjectKey{Name: "n1"}, node); err != nil {
		t.Fatal(err)
	}
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if err := e2.client.Status().Update(context.Background(), node); err != nil {
		t.Fatal(err)
	}
	getsBefore := e2.cloud.Calls("Get")
	if res, err := e2.reconcileClaim(t); err != nil || res.RequeueAfter == 0 {
		t.Fatalf("Ready node: %v, %v; want a drain waiting on the PDB", res, err)
	}
	if e2.cloud.Calls("Get") != getsBefore {
		t.Error("the cloud was asked about the machine of a Ready node")
	}
}

// The kubelet and the node controllers keep updating a Node while it
// terminates, so the copy termination releases the finalizer from is often
// older than the stored Node. That must not fail, and must not drop a
// finalizer someone else added since.
func TestNodeFinalizerFromAStaleCopy(t *testing.T) {
	ctx := context.Background()
	newer := func(t *testing.T, e *env, mutate func(*corev1.Node)) *corev1.Node {
		t.Helper()
		node := &corev1.Node{}
		if err := e.client.Get(ctx, client.ObjectKey{Name: "n1"}, node); err != nil {
			t.Fatal(err)
		}
		stale := node.DeepCopy()
		mutate(node)
		if err := e.client.Update(ctx, node); err != nil {
			t.Fatal(err)
		}
		return stale
	}
	stored := func(t *testing.T, e *env) *corev1.Node {
		t.Helper()
		node := &corev1.Node{}
		if err := e.client.Get(ctx, client.ObjectKey{Name: "n1"}, node); err != nil {
			t.Fatal(err)
		}
		return node
	}
	t.Run("finalizer after a status update", func(t *testing.T) {
		e := newEnv(t, nil)
		stale := newer(t, e, func(n *corev1.Node) { n.Labels["heartbeat"] = "1" })
		if err := removeNodeFinalizer(ctx, e.client, stale); err != nil {
			t.Fatalf("removing the finalizer from a stale copy: %v", err)
		}
		if got := stored(t, e).Finalizers; len(got) != 0 {
			t.Errorf("finalizers = %v, want none", got)
		}
	})
	t.Run("finalizer after another was added before it", func(t *testing.T) {
		e := newEnv(t, nil)
		stale := newer(t, e, func(n *corev1.Node) { n.Finalizers = append([]string{"example.com/keep"}, n.Finalizers...) })
		if err := removeNodeFinalizer(ctx, e.client, stale); err == nil {
			t.Error("removing by a stale index succeeded; it must be refused and retried")
		}
		if got := stored(t, e).Finalizers; !cmp.Equal(got, []string{"example.com/keep", v1.TerminationFinalizer}) {
			t.Errorf("finalizers = %v, want both kept", got)
		}
		if err := removeNodeFinalizer(ctx, e.client, stored(t, e)); err != nil {
			t.Fatal(err)
		}
		if got := stored(t, e).Finalizers; !cmp.Equal(got, []string{"example.com/keep"}) {
			t.Errorf("finalizers = %v, want only example.com/keep", got)
		}
	})
}

// A claim given up because two Nodes reported its machine still has its
// machine deleted when it terminates.
func TestTerminateWithTwoNodesForOneMachine(t *testing.T) {
	e := newEnv(t, nil)
	ctx := context.Background()
	claim := &v1.NodeClaim{}
	if err := e.client.Get(ctx, client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatal(err)
	}
	claim.Status.NodeName = "" // never registered: given up at the registration timeout
	if err := e.client.Status().Update(ctx, claim); err != nil {
		t.Fatal(err)
	}
	twin := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}, Spec: corev1.NodeSpec{ProviderID: claim.Status.ProviderID}}
	if err := e.client.Create(ctx, twin); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for i := 0; i < 5; i++ {
		_, lastErr = e.reconcileClaim(t)
		e.clock.Step(time.Minute)
		if !e.exists(t, &v1.NodeClaim{}, "c1") {
			break
		}
	}
	if n := len(e.cloud.Deleted()); n != 1 {
		t.Fatalf("machine of the given-up claim deleted %d times, want 1 (last error: %v)", n, lastErr)
	}
}

// On a NotReady node whose machine still runs, a pod stuck terminating
// keeps its volume attached: the drain stops waiting for that volume too.
func TestStuckPodVolumeDoesNotHoldMachine(t *testing.T) {
	stuck := pod("db", terminating(start.Add(-time.Minute)), func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "d", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "db-data"}}}}
	})
	e := newEnv(t, nil, stuck,
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "db-data"},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-db"}},
		volumeAttachment("va-db", "pv-db"))
	// n1 has no Ready condition (NotReady) and its machine still exists.
	e.reconcileUntilGone(t, 10, time.Hour)
	if n := len(e.cloud.Deleted()); n != 1 {
		t.Fatalf("after 10h: %d machines deleted, want 1: a stuck-terminating pod's volume holds the machine forever", n)
	}
}

// A pod that stays to the end keeps its generic ephemeral volume attached,
// which is not waited for, as its other volumes are not.
func TestStayingPodEphemeralVolumeDoesNotHoldMachine(t *testing.T) {
	keeper := pod("agent", daemonSetOwned, toleratesAll, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{
			Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{}}}}}
	})
	e := newEnv(t, nil, keeper,
		&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "agent-scratch"},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-scratch"}},
		volumeAttachment("va-scratch", "pv-scratch"))
	e.reconcileUntilGone(t, 10, time.Hour)
	if n := len(e.cloud.Deleted()); n != 1 {
		t.Fatalf("after 10h: %d machines deleted, want 1: the staying DaemonSet pod's ephemeral volume holds the machine", n)
	}
}

// An eviction that fails (not a PDB's 429) is tried again at the drain's own
// pace: returned as an error, the controller's backoff would grow to minutes
// and could let the terminationGracePeriod deadline pass.
func TestFailedEvictionIsRetriedAtTheDrainsPace(t *testing.T) {
	e := newEnv(t, nil, pod("web"))
	e.evictFails.Store(true)
	for i := range 3 {
		res, err := e.reconcileClaim(t)
		if err != nil || res.RequeueAfter == 0 {
			t.Fatalf("pass %d: result %+v, error %v; want a requeue after the drain interval and no error", i, res, err)
		}
	}
	e.evictFails.Store(false)
	e.reconcileUntilGone(t, 5, 0)
	if left := e.podsLeft(t); len(left) != 0 || len(e.cloud.Deleted()) != 1 {
		t.Errorf("pods %v left, %d machines deleted once evictions succeed; want none left and the machine deleted", left, len(e.cloud.Deleted()))
	}
}

// A pod deleted for the terminationGracePeriod gets what is left of it when
// its own grace period is longer, so the machine does not cut its shutdown.
func TestGraceWithinTheClaimsDeadline(t *testing.T) {
	deleted := metav1.NewTime(start)
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &deleted},
		Spec: v1.NodeClaimSpec{TerminationGracePeriod: &metav1.Duration{Duration: 10 * time.Minute}}}
	slow := pod("slow", func(p *corev1.Pod) { p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](900) })
	quick := pod("quick")
	gracePeriod := func(opts []client.DeleteOption) string {
		if len(opts) == 0 {
			return "own"
		}
		o := &client.DeleteOptions{}
		o.ApplyOptions(opts)
		return fmt.Sprint(*o.GracePeriodSeconds)
	}
	for _, tc := range []struct {
		name string
		at   time.Time
		pod  *corev1.Pod
		want string
	}{
		{"longer than what is left", start, slow, "600"},
		{"shorter than what is left", start, quick, "own"},
		{"deadline passed", start.Add(11 * time.Minute), slow, "1"},
	} {
		if got := gracePeriod(graceWithin(tc.at, claim, tc.pod)); got != tc.want {
			t.Errorf("%s: grace %s, want %s", tc.name, got, tc.want)
		}
	}
	noDeadline := claim.DeepCopy()
	noDeadline.Spec.TerminationGracePeriod = nil
	if got := gracePeriod(graceWithin(start, noDeadline, slow)); got != "own" {
		t.Errorf("without a terminationGracePeriod: grace %s, want the pod's own", got)
	}
}

// An inline volume's attachment (CSI migration) names no PersistentVolume;
// a pod that stays to the end with one held the machine forever.
func TestStayingPodInlineVolumeDoesNotHoldMachine(t *testing.T) {
	inline := corev1.VolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-0abc", FSType: "ext4"}}
	keeper := pod("agent", toleratesAll, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: inline}}
	})
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: "csi-inline-agent"},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "ebs.csi.aws.com", NodeName: "n1",
			Source: storagev1.VolumeAttachmentSource{InlineVolumeSpec: &corev1.PersistentVolumeSpec{
				PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-0abc"}}}}},
		Status: storagev1.VolumeAttachmentStatus{Attached: true},
	}
	e := newEnv(t, nil, keeper, va)
	e.reconcileUntilGone(t, 10, time.Hour)
	if n := len(e.cloud.Deleted()); n != 1 {
		t.Fatalf("after 10h: %d machines deleted, want 1: the staying pod's inline volume holds the machine", n)
	}
}
