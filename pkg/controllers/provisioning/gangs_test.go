package provisioning

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

// A gang whose claims are not all written is withdrawn whole: the claims
// that were written are deleted and its pods stay unplanned, while other
// nodes of the same plan stand.
func TestScheduleWithdrawsAGangNotWrittenWhole(t *testing.T) {
	plan := func(snap *solver.Snapshot) *solver.Plan {
		p := onePerPod(snap)
		for i, n := range p.NewNodes {
			n.Requests = res("cpu", fmt.Sprint(i+1))
			if i < 3 {
				n.Gang = "default/train"
			}
		}
		return p
	}
	f := newFixture(t, plan)
	f.client = cloudtest.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if nc, ok := obj.(*v1.NodeClaim); ok && nc.Spec.Resources.Requests.Cpu().String() == "2" {
				return errors.New("injected failure")
			}
			return c.Create(ctx, obj, opts...)
		},
	}).Build()
	f.ctrl.client = f.client
	names := []string{"t0", "t1", "t2", "web"}
	for _, n := range names {
		f.cluster.UpdatePod(withPod(pendingPod(n), tolerateGPU))
	}
	r, err := f.ctrl.Schedule(context.Background(), Window{Opened: now, Closed: now})
	if err == nil {
		t.Fatal("Schedule() hid the failed create")
	}
	if len(r.Created) != 1 || r.Created[0].Spec.Resources.Requests.Cpu().String() != "4" {
		t.Fatalf("created %d claims, want only the ordinary node's", len(r.Created))
	}
	list := &v1.NodeClaimList{}
	if err := f.client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Errorf("API holds %d claims, want 1: the gang's written claims must be withdrawn", len(list.Items))
	}
	for _, n := range names[:3] {
		if to := f.cluster.NominatedTo(pendingPod(n)); to != "" {
			t.Errorf("gang pod %s still nominated to %s", n, to)
		}
	}
	if f.cluster.NominatedTo(pendingPod("web")) == "" {
		t.Error("the ordinary pod lost its claim")
	}
	// Only the pod whose claim stands is told it was nominated.
	nominated := 0
	for _, e := range f.drainEvents() {
		if strings.HasPrefix(e, "Normal Nominated") {
			nominated++
		}
	}
	if nominated != 1 {
		t.Errorf("%d Nominated events, want 1 (the gang's withdrawn claims must not be announced)", nominated)
	}
}

func TestWorkloadSizes(t *testing.T) {
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "train"},
		Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](8), Completions: ptr.To[int32](4)}}
	js := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
		"metadata": map[string]any{"namespace": "ml", "name": "big"},
		"spec": map[string]any{"replicatedJobs": []any{
			map[string]any{"name": "driver", "template": map[string]any{"spec": map[string]any{}}},
			map[string]any{"name": "workers", "replicas": int64(3), "template": map[string]any{"spec": map[string]any{"parallelism": int64(4), "completions": int64(4)}}},
		}},
	}}
	// The last pods of a Job whose completions exceed its parallelism, and
	// a JobSet whose worker has two pods done.
	tail := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "tail"},
		Spec:   batchv1.JobSpec{Parallelism: ptr.To[int32](4), Completions: ptr.To[int32](10)},
		Status: batchv1.JobStatus{Succeeded: 8}}
	child := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "big-workers-1", Labels: map[string]string{scheduling.LabelJobSetName: "big"}},
		Spec:   batchv1.JobSpec{Parallelism: ptr.To[int32](4), Completions: ptr.To[int32](4)},
		Status: batchv1.JobStatus{Succeeded: 2}}
	c := cloudtest.NewClientBuilder().WithObjects(job, js, tail).Build()
	w := &workloadSizes{ctx: context.Background(), c: c, memo: map[string]sized{}}
	if n, err := w.IndexedJobSize("ml", "train"); n != 4 || err != nil {
		t.Errorf("IndexedJobSize = %d, %v; want 4 (parallelism capped by completions)", n, err)
	}
	if n, err := w.IndexedJobSize("ml", "tail"); n != 2 || err != nil {
		t.Errorf("IndexedJobSize = %d, %v; want the 2 completions still needed", n, err)
	}
	if n, err := w.JobSetSize("ml", "big"); n != 13 || err != nil {
		t.Errorf("JobSetSize = %d, %v; want 1 driver + 3×4 workers", n, err)
	}
	if err := c.Create(context.Background(), child); err != nil {
		t.Fatal(err)
	}
	w.memo = map[string]sized{}
	if n, err := w.JobSetSize("ml", "big"); n != 11 || err != nil {
		t.Errorf("JobSetSize = %d, %v; want 13 less the 2 pods a worker job finished", n, err)
	}
	if _, err := w.IndexedJobSize("ml", "gone"); err == nil {
		t.Error("a missing job must be an error, not a size")
	}
}

// The withdrawal of a gang's written claim is retried when the delete
// fails for a passing reason (the API trouble that broke the gang's write),
// so no half gang is left to launch.
func TestGangWithdrawalIsRetried(t *testing.T) {
	plan := func(snap *solver.Snapshot) *solver.Plan {
		p := onePerPod(snap)
		for i, n := range p.NewNodes {
			n.Requests = res("cpu", fmt.Sprint(i+1))
			n.Gang = "default/train"
		}
		return p
	}
	f := newFixture(t, plan)
	var deletes atomic.Int32
	f.client = cloudtest.NewClientBuilder().WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if nc, ok := obj.(*v1.NodeClaim); ok && nc.Spec.Resources.Requests.Cpu().String() == "2" {
				return errors.New("injected: API server overloaded")
			}
			return c.Create(ctx, obj, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			if _, ok := obj.(*v1.NodeClaim); ok && deletes.Add(1) <= 2 {
				return errors.New("injected: API server overloaded")
			}
			return c.Delete(ctx, obj, opts...)
		},
	}).Build()
	f.ctrl.client = f.client
	for _, n := range []string{"t0", "t1"} {
		f.cluster.UpdatePod(withPod(pendingPod(n), tolerateGPU))
	}
	if _, err := f.ctrl.Schedule(context.Background(), Window{Opened: now, Closed: now}); err == nil {
		t.Fatal("Schedule() hid the failed create")
	}
	list := &v1.NodeClaimList{}
	if err := f.client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 || deletes.Load() != 3 {
		t.Errorf("API holds %d claims after %d delete attempts, want none after 3", len(list.Items), deletes.Load())
	}
}

// The last pods of an Indexed Job whose completions exceed its parallelism
// are a gang of what is left, not of the parallelism: they get a machine.
func TestIndexedJobTailIsProvisioned(t *testing.T) {
	f := newFixture(t, nil)
	job := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "train"},
		Spec:   batchv1.JobSpec{Parallelism: ptr.To[int32](4), Completions: ptr.To[int32](10), CompletionMode: ptr.To(batchv1.IndexedCompletion)},
		Status: batchv1.JobStatus{Succeeded: 8}}
	f.client = cloudtest.NewClientBuilder().WithObjects(job).Build()
	f.ctrl.client = f.client
	f.ctrl.opts.GangSources = map[scheduling.GangSource]bool{scheduling.GangSourceIndexedJob: true}
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	for _, idx := range []string{"8", "9"} { // indexes 0-7 succeeded; the last two wait for a machine
		f.cluster.UpdatePod(withPod(pendingPod("train-"+idx), tolerateGPU, func(p *corev1.Pod) {
			p.Labels = map[string]string{batchv1.JobNameLabel: "train"}
			p.Annotations = map[string]string{batchv1.JobCompletionIndexAnnotation: idx}
		}))
	}
	r := f.schedule(t)
	if len(r.Created) == 0 {
		for _, u := range r.Plan.Unschedulable {
			t.Logf("unschedulable %s: %s", u.Pod.Name, u.Reason)
		}
		t.Errorf("no machine bought for the last 2 pods of indexed job default/train; they wait forever")
	}
}

// Two members of a Kueue pod group of 3 run on a node an admin cordoned; the
// third (a failed member's replacement) is pending. The cordoned node is no
// place for new pods, but its members run: the group is whole and the
// replacement gets a machine, instead of waiting for peers that exist.
func TestGangMembersOnACordonedNodeCount(t *testing.T) {
	f := newFixture(t, nil)
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	f.cluster.UpdateNode(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelZone: "us-east-1b"}},
		Spec:       corev1.NodeSpec{Unschedulable: true},
		Status: corev1.NodeStatus{Allocatable: res("cpu", "4", "nvidia.com/gpu", "2", "pods", "110"),
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
	member := func(p *corev1.Pod) {
		p.Labels = map[string]string{scheduling.LabelKueuePodGroup: "train"}
		p.Annotations = map[string]string{scheduling.AnnotationKueuePodGroupTotal: "3"}
	}
	for _, n := range []string{"w0", "w1"} {
		f.cluster.UpdatePod(withPod(pendingPod(n), tolerateGPU, member, func(p *corev1.Pod) {
			p.Spec.NodeName, p.Status = "n1", corev1.PodStatus{Phase: corev1.PodRunning}
		}))
	}
	f.cluster.UpdatePod(withPod(pendingPod("w2"), tolerateGPU, member))
	r := f.schedule(t)
	if len(r.Created) != 1 {
		for _, u := range r.Plan.Unschedulable {
			t.Logf("unschedulable %s: %s", u.Pod.Name, u.Reason)
		}
		t.Fatalf("%d machines bought for the last member of a pod group whose others run on a cordoned node; want 1", len(r.Created))
	}
	if zone := r.Created[0].Spec.Offerings[0].Zone; zone != "us-east-1b" {
		t.Errorf("the member's machine is in %s; its gang runs in us-east-1b", zone)
	}
}

// A JobSet that starts its replicated jobs in turn (startupPolicyOrder
// InOrder) creates its workers only once the driver runs: sized as a gang
// of all of them, the driver waited for peers that are never created.
func TestJobSetStartedInOrderIsNoGang(t *testing.T) {
	f := newFixture(t, nil)
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	js := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
		"metadata": map[string]any{"namespace": "default", "name": "llm"},
		"spec": map[string]any{
			"startupPolicy": map[string]any{"startupPolicyOrder": "InOrder"},
			"replicatedJobs": []any{
				map[string]any{"name": "driver", "replicas": int64(1), "template": map[string]any{"spec": map[string]any{"parallelism": int64(1), "completions": int64(1)}}},
				map[string]any{"name": "workers", "replicas": int64(2), "template": map[string]any{"spec": map[string]any{"parallelism": int64(4), "completions": int64(4)}}},
			}},
	}}
	f.client = cloudtest.NewClientBuilder().WithObjects(js).Build()
	f.ctrl.client = f.client
	f.ctrl.opts.GangSources = map[scheduling.GangSource]bool{scheduling.GangSourceJobSet: true}
	f.cluster.UpdatePod(withPod(pendingPod("llm-driver-0-0"), tolerateGPU, func(p *corev1.Pod) {
		p.Labels = map[string]string{scheduling.LabelJobSetName: "llm", batchv1.JobNameLabel: "llm-driver-0"}
	}))
	r := f.schedule(t)
	if len(r.Created) != 1 {
		for _, u := range r.Plan.Unschedulable {
			t.Logf("unschedulable %s: %s", u.Pod.Name, u.Reason)
		}
		t.Errorf("%d machines for the driver of an InOrder JobSet; want 1 (its workers come once it runs)", len(r.Created))
	}
}

// A LeaderWorkerSet with startupPolicy LeaderReady creates its workers only
// once the leader runs: the leader is bought for alone, and its workers
// then start together.
func TestLeaderWorkerSetLeaderReadyLeaderGoesAlone(t *testing.T) {
	f := newFixture(t, nil)
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	lws := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
		"metadata": map[string]any{"namespace": "default", "name": "llm"},
		"spec":     map[string]any{"startupPolicy": "LeaderReady", "leaderWorkerTemplate": map[string]any{"size": int64(4)}},
	}}
	f.client = cloudtest.NewClientBuilder().WithObjects(lws).Build()
	f.ctrl.client = f.client
	f.ctrl.opts.GangSources = map[scheduling.GangSource]bool{scheduling.GangSourceLeaderWorkerSet: true}
	member := func(name, worker string) *corev1.Pod {
		return withPod(pendingPod(name), tolerateGPU, func(p *corev1.Pod) {
			p.Labels = map[string]string{scheduling.LabelLWSName: "llm", scheduling.LabelLWSGroupIndex: "0", scheduling.LabelLWSWorkerIndex: worker}
			p.Annotations = map[string]string{scheduling.AnnotationLWSSize: "4"}
		})
	}
	f.cluster.UpdatePod(member("llm-0", "0"))
	r := f.schedule(t)
	if len(r.Created) != 1 {
		for _, u := range r.Plan.Unschedulable {
			t.Logf("unschedulable %s: %s", u.Pod.Name, u.Reason)
		}
		t.Fatalf("%d machines for the leader of a LeaderReady set; want 1 (its workers come once it runs)", len(r.Created))
	}
	// Two of its three workers: they wait for the third.
	f.cluster.UpdatePod(member("llm-0-1", "1"))
	f.cluster.UpdatePod(member("llm-0-2", "2"))
	r = f.schedule(t)
	waiting := 0
	for _, u := range r.Plan.Unschedulable {
		if strings.HasPrefix(u.Pod.Name, "llm-0-") {
			waiting++
		}
	}
	if waiting != 2 || len(r.Created) != 0 {
		t.Errorf("2 of 3 workers: %d left waiting, %d machines bought; want both waiting for the gang, none bought", waiting, len(r.Created))
	}
	// The third: the workers go, with their leader (on its machine or new ones).
	f.cluster.UpdatePod(member("llm-0-3", "3"))
	r = f.schedule(t)
	for _, u := range r.Plan.Unschedulable {
		t.Errorf("worker %s unschedulable once the gang is whole: %s", u.Pod.Name, u.Reason)
	}
}

// A LeaderReady set's workers join their running leader's zone, as a gang's
// new members join its running ones: the leader is in their gang.
func TestLeaderWorkerSetWorkersJoinTheLeadersZone(t *testing.T) {
	f := newFixture(t, nil)
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	lws := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet",
		"metadata": map[string]any{"namespace": "default", "name": "llm"},
		"spec":     map[string]any{"startupPolicy": "LeaderReady"},
	}}
	f.client = cloudtest.NewClientBuilder().WithObjects(lws).Build()
	f.ctrl.client = f.client
	f.ctrl.opts.GangSources = map[scheduling.GangSource]bool{scheduling.GangSourceLeaderWorkerSet: true}
	// The leader's node is full and cordoned: the workers need new machines.
	f.cluster.UpdateNode(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{v1.LabelZone: "us-east-1b"}},
		Spec:       corev1.NodeSpec{Unschedulable: true},
		Status: corev1.NodeStatus{Allocatable: res("cpu", "4", "nvidia.com/gpu", "1", "pods", "110"),
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
	member := func(name, worker string) *corev1.Pod {
		return withPod(pendingPod(name), tolerateGPU, func(p *corev1.Pod) {
			p.Labels = map[string]string{scheduling.LabelLWSName: "llm", scheduling.LabelLWSGroupIndex: "0", scheduling.LabelLWSWorkerIndex: worker}
			p.Annotations = map[string]string{scheduling.AnnotationLWSSize: "3"}
		})
	}
	leader := member("llm-0", "0")
	leader.Spec.NodeName, leader.Status = "n1", corev1.PodStatus{Phase: corev1.PodRunning}
	f.cluster.UpdatePod(leader)
	f.cluster.UpdatePod(member("llm-0-1", "1"))
	f.cluster.UpdatePod(member("llm-0-2", "2"))
	r := f.schedule(t)
	if len(r.Created) == 0 {
		for _, u := range r.Plan.Unschedulable {
			t.Logf("unschedulable %s: %s", u.Pod.Name, u.Reason)
		}
		t.Fatal("no machine for the workers of a running leader")
	}
	for _, c := range r.Created {
		if zone := c.Spec.Offerings[0].Zone; zone != "us-east-1b" {
			t.Errorf("a worker's machine is in %s; its leader runs in us-east-1b", zone)
		}
	}
}
