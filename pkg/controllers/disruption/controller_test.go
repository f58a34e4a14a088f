package disruption

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

type env struct {
	client   client.Client
	clock    *clocktesting.FakeClock
	cloud    *fakeCloud
	ctrl     *Controller
	recorder *events.FakeRecorder
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	e := &env{clock: clocktesting.NewFakeClock(start.Add(time.Hour)), cloud: &fakeCloud{types: catalog()},
		recorder: events.NewFakeRecorder(1000)}
	e.client = cloudtest.NewClientBuilder().WithObjects(objs...).Build()
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Solver: SolverFunc(firstFit), Clock: e.clock,
		Recorder: e.recorder})
	return e
}

func (e *env) pass(t *testing.T) {
	t.Helper()
	if err := e.ctrl.Pass(context.Background()); err != nil {
		t.Fatalf("pass: %v", err)
	}
}

// claims names the NodeClaims stored, sorted.
func (e *env) claims(t *testing.T) []string {
	t.Helper()
	list := &v1.NodeClaimList{}
	mustT(t, e.client.List(context.Background(), list))
	var out []string
	for _, c := range list.Items {
		out = append(out, c.Name)
	}
	return out
}

func (e *env) tainted(t *testing.T, node string) bool {
	t.Helper()
	n := &corev1.Node{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: node}, n))
	return hasDisruptedTaint(n)
}

func (e *env) setReady(t *testing.T, name string) {
	t.Helper()
	claim := &v1.NodeClaim{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: name}, claim))
	claim.Status.Conditions = []metav1.Condition{
		{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.NewTime(e.clock.Now())}}
	mustT(t, e.client.Status().Update(context.Background(), claim))
}

// objects returns a pool and each machine's claim and node.
func objects(p *v1.NodePool, machines ...[2]client.Object) []client.Object {
	out := []client.Object{p}
	for _, m := range machines {
		out = append(out, m[0], m[1])
	}
	return out
}

func mach(name string, itIndex int, capacityType string) [2]client.Object {
	c, n := machine(name, "p", catalog()[itIndex], capacityType, start)
	return [2]client.Object{c, n}
}

// validate steps past the validation delay and runs the pass that carries
// out what the previous pass decided.
func (e *env) validate(t *testing.T) {
	t.Helper()
	e.clock.Step(DefaultValidationDelay)
	e.pass(t)
}

// replacement returns the one claim not in names.
func (e *env) replacement(t *testing.T, candidates ...string) string {
	t.Helper()
	var out []string
	for _, n := range e.claims(t) {
		if !slices.Contains(candidates, n) {
			out = append(out, n)
		}
	}
	if len(out) != 1 {
		t.Fatalf("claims besides %v = %v, want one replacement", candidates, out)
	}
	return out[0]
}

func blockedPod(name, node string) *corev1.Pod {
	return pod(name, node, "1", annotated(v1.AnnotationDoNotDisrupt, "true"))
}

func TestPassEmptinessWaitsForConsolidateAfter(t *testing.T) {
	m := mach("a", 1, v1.CapacityTypeOnDemand)
	// A pod left node a just now.
	m[0].(*v1.NodeClaim).Status.LastPodEventTime = metav1.NewTime(start.Add(time.Hour))
	e := newEnv(t, objects(pool("p"), m, mach("b", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), blockedPod("web", "b")))
	e.pass(t)
	e.clock.Step(29 * time.Second)
	e.pass(t)
	e.validate(t)
	if diff := cmp.Diff([]string{"a", "b"}, e.claims(t)); diff != "" {
		t.Fatalf("decided before consolidateAfter (-want +got):\n%s", diff)
	}
	// 44 s after the pod left: decided at 30 s, carried out after the delay.
	if e.tainted(t, "a") {
		t.Fatal("node a tainted before the validation delay")
	}
	e.validate(t)
	if diff := cmp.Diff([]string{"b"}, e.claims(t)); diff != "" {
		t.Fatalf("after consolidateAfter and the validation delay (-want +got):\n%s", diff)
	}
	if !e.tainted(t, "a") {
		t.Error("node a was not tainted before its claim was deleted")
	}
	if got := drain(e.recorder); !strings.Contains(got, ReasonDisruptionDeleting) || !strings.Contains(got, "saving $0.8000/h") {
		t.Errorf("events = %q, want a %s event with the saving", got, ReasonDisruptionDeleting)
	}
}

// A node that gets a pod between the decision and its validation stays.
func TestPassValidationDropsANodeThatGotPods(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand))...)
	e.pass(t) // decides: a is empty
	mustT(t, e.client.Create(context.Background(), pod("late", "a", "1")))
	e.validate(t)
	if diff := cmp.Diff([]string{"a"}, e.claims(t)); diff != "" {
		t.Fatalf("claims (-want +got):\n%s", diff)
	}
	if e.tainted(t, "a") {
		t.Error("node a was tainted although a pod arrived before the validation")
	}
}

// nominate gives the controller cluster state in which the pending pod is
// nominated to the claim (as the provisioner does when it plans the pod
// onto the claim's node), and returns that state.
func (e *env) nominate(t *testing.T, p *corev1.Pod, claimName string) *state.Cluster {
	t.Helper()
	cluster := state.NewCluster(e.clock)
	e.ctrl = NewController(Deps{Client: e.client, Cluster: cluster, CloudProvider: e.cloud, Solver: SolverFunc(firstFit),
		Clock: e.clock, Recorder: e.recorder})
	cluster.UpdatePod(p)
	claim := &v1.NodeClaim{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: claimName}, claim))
	cluster.UpdateNodeClaim(claim)
	cluster.Nominate(p, claimName)
	return cluster
}

// A node that pods are nominated to is never disrupted, empty or not.
func TestPassSparesNodesWithNominatedPods(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand))...)
	cluster := e.nominate(t, pod("incoming", "", "1"), "a")
	e.pass(t)
	e.validate(t)
	if diff := cmp.Diff([]string{"a"}, e.claims(t)); diff != "" {
		t.Fatalf("claims (-want +got):\n%s", diff)
	}
	// Once the pod is gone, the node is empty and goes.
	cluster.DeletePod(types.NamespacedName{Namespace: "default", Name: "incoming"})
	e.pass(t)
	e.validate(t)
	if got := e.claims(t); len(got) != 0 {
		t.Errorf("claims = %v, want the empty node gone", got)
	}
}

func TestPassReplacementReadyBeforeDrain(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
	e.pass(t) // decides
	if diff := cmp.Diff([]string{"a"}, e.claims(t)); diff != "" {
		t.Fatalf("after the decision (-want +got):\n%s", diff)
	}
	e.validate(t) // launches
	repl := e.replacement(t, "a")
	claim := &v1.NodeClaim{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: repl}, claim))
	if diff := cmp.Diff("small", claim.Spec.Offerings[0].InstanceType); diff != "" {
		t.Errorf("replacement instance type (-want +got):\n%s", diff)
	}
	if claim.Annotations[AnnotationLineage] != "a" || claim.Annotations[AnnotationReplacedAt] == "" || claim.Annotations[AnnotationReplacementFor] == "" {
		t.Errorf("replacement annotations = %v, want lineage a, replaced-at and replacement-for", claim.Annotations)
	}
	if !e.tainted(t, "a") {
		t.Error("candidate not tainted while its replacement launches")
	}
	for i := 0; i < 3; i++ {
		e.clock.Step(10 * time.Second)
		e.pass(t)
	}
	if diff := cmp.Diff([]string{"a", repl}, e.claims(t), sortStrings); diff != "" {
		t.Fatalf("candidate deleted before its replacement was Ready (-want +got):\n%s", diff)
	}
	e.setReady(t, repl)
	e.pass(t)
	if diff := cmp.Diff([]string{repl}, e.claims(t)); diff != "" {
		t.Fatalf("after the replacement is Ready (-want +got):\n%s", diff)
	}
}

// replacingA is a cluster whose one machine a is being replaced (a
// cheaper one holds its pod): the command is decided and validated, and
// its replacement is returned.
func replacingA(t *testing.T) (*env, string) {
	t.Helper()
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
	e.pass(t)
	e.validate(t)
	return e, e.replacement(t, "a")
}

func TestPassAbandonsWhenReplacementFails(t *testing.T) {
	cases := []struct {
		name string
		// seen: a pass saw the replacement before it was deleted.
		seen bool
		// wait before the last pass.
		wait time.Duration
	}{
		{name: "replacement seen, then gone", seen: true},
		{name: "replacement never seen, within the cache's lag", wait: time.Minute},
		// Deleted at once (a launch refused outright): not held for the
		// whole replacement timeout.
		{name: "replacement never seen, past the cache's lag", wait: unseenReplacement},
		{name: "replacement never seen, past timeout", wait: DefaultReplacementTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, repl := replacingA(t)
			if tc.seen {
				e.pass(t)
			}
			mustT(t, e.client.Delete(context.Background(), &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: repl}}))
			e.clock.Step(tc.wait)
			e.pass(t)
			abandoned := tc.seen || tc.wait >= unseenReplacement
			if got := e.tainted(t, "a"); got == abandoned {
				t.Errorf("candidate tainted = %v, want %v", got, !abandoned)
			}
			if diff := cmp.Diff([]string{"a"}, e.claims(t)); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if got := drain(e.recorder); strings.Contains(got, ReasonDisruptionAbandoned) != abandoned {
				t.Errorf("events = %q, want %s: %v", got, ReasonDisruptionAbandoned, abandoned)
			}
			claim := &v1.NodeClaim{}
			mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: "a"}, claim))
			if _, recorded := claim.Annotations[AnnotationCommand]; recorded == abandoned {
				t.Errorf("command recorded on the candidate = %v, want %v", recorded, !abandoned)
			}
			want := map[bool]string{false: string(v1.DisruptionReasonUnderutilized), true: ""}[abandoned]
			if got := claim.Annotations[v1.AnnotationDisruptionReason]; got != want {
				t.Errorf("disruption reason on the candidate = %q, want %q", got, want)
			}
		})
	}
}

// TestAbandonKeepsTheCordonOfAnInterruptedCandidate: the cloud interrupts
// a candidate while its command waits; when the command is abandoned, the
// node stays cordoned for the interruption controller to drain.
func TestAbandonKeepsTheCordonOfAnInterruptedCandidate(t *testing.T) {
	e, repl := replacingA(t)
	e.pass(t)
	claim := &v1.NodeClaim{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: "a"}, claim))
	conditions.Set(&claim.Status.Conditions, e.clock, claim.Generation, v1.ConditionInterrupted, metav1.ConditionTrue, "SpotReclaim", "")
	mustT(t, e.client.Status().Update(context.Background(), claim))
	mustT(t, e.client.Delete(context.Background(), &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: repl}}))
	e.pass(t)
	if got := drain(e.recorder); !strings.Contains(got, ReasonDisruptionAbandoned) {
		t.Fatalf("events = %q, want the command abandoned", got)
	}
	if !e.tainted(t, "a") {
		t.Error("the interrupted candidate's cordon was lifted")
	}
}

// TestPassFlappingPriceDoesNotChurn alternates the spot price between passes:
// the replacement is decided on every other pass but never carried out.
func TestPassFlappingPriceDoesNotChurn(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 2, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("train", "a", "1", gpuRequest)))
	for i := 0; i < 10; i++ {
		price := 0.40
		if i%2 == 1 {
			price = 2.00
		}
		e.cloud.setPrice("gpu1", v1.CapacityTypeSpot, price)
		e.pass(t)
		e.clock.Step(10 * time.Second)
	}
	if diff := cmp.Diff([]string{"a"}, e.claims(t)); diff != "" {
		t.Fatalf("flapping price caused churn (-want +got):\n%s", diff)
	}
	// A price that stays down for the whole delay is acted on.
	e.cloud.setPrice("gpu1", v1.CapacityTypeSpot, 0.40)
	e.pass(t)
	e.clock.Step(10 * time.Second)
	e.pass(t)
	e.validate(t)
	if got := e.claims(t); len(got) != 2 {
		t.Fatalf("claims = %v, want a replacement once the price held", got)
	}
}

// TestPassBlockers puts one blocker on node a's pod: only b may go then (its
// pod moves to a). Without a blocker both are merged into one replacement,
// shown as "+", and wait for it.
func TestPassBlockers(t *testing.T) {
	zero := intstr.FromInt32(0)
	cases := []struct {
		name  string
		pod   func(*corev1.Pod)
		pool  func(*v1.NodePool)
		extra []client.Object
		want  []string
	}{
		{name: "no blocker", want: []string{"+", "a", "b"}},
		{name: "do-not-disrupt", pod: annotated(v1.AnnotationDoNotDisrupt, "true"), want: []string{"a"}},
		{name: "pdb maxUnavailable 0", extra: []client.Object{&policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pdb"},
			Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pa"}}},
			Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0},
		}}, want: []string{"a"}},
		{name: "running job", pod: ownedBy("Job"), want: []string{"a"}},
		{name: "running job, evictRunningJobs", pod: ownedBy("Job"),
			pool: func(p *v1.NodePool) { p.Spec.Disruption.EvictRunningJobs = true }, want: []string{"+", "a", "b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pool("p")
			if tc.pool != nil {
				tc.pool(p)
			}
			objs := append(objects(p, mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand)), tc.extra...)
			pa := pod("pa", "a", "1")
			if tc.pod != nil {
				tc.pod(pa)
			}
			objs = append(objs, pa, pod("pb", "b", "1"))
			e := newEnv(t, objs...)
			e.pass(t)
			e.validate(t)
			var got []string
			for _, n := range e.claims(t) {
				if strings.HasPrefix(n, "p-") {
					n = "+"
				}
				got = append(got, n)
			}
			if diff := cmp.Diff(tc.want, got, sortStrings); diff != "" {
				t.Errorf("claims left (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPassBudgetZeroBlocksConsolidation(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0"}} })
	e := newEnv(t, objects(p, mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand))...)
	e.pass(t)
	e.clock.Step(time.Hour)
	e.pass(t)
	e.validate(t)
	if diff := cmp.Diff([]string{"a", "b"}, e.claims(t)); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

// A node that is not Ready takes its share of the budget: with a budget of
// one node, consolidation waits while another node is down.
func TestPassNotReadyNodesCountAgainstBudgets(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1"}} })
	down := mach("down", 1, v1.CapacityTypeOnDemand)
	notReady(down[1].(*corev1.Node), start.Add(time.Hour-time.Minute))
	e := newEnv(t, objects(p, down, mach("a", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), blockedPod("stuck", "down")))
	e.pass(t)
	e.validate(t)
	if diff := cmp.Diff([]string{"a", "down"}, e.claims(t)); diff != "" {
		t.Fatalf("the empty node went while another was down (-want +got):\n%s", diff)
	}
	// Ready again: the budget is free.
	n := &corev1.Node{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: "down"}, n))
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	mustT(t, e.client.Status().Update(context.Background(), n))
	e.pass(t)
	e.validate(t)
	if diff := cmp.Diff([]string{"down"}, e.claims(t)); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
}

// A node NotReady for its pool's repairAfter is replaced, its pods' blockers
// notwithstanding.
func TestPassRepairsANodeThatStaysNotReady(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.Never })
	down := mach("down", 1, v1.CapacityTypeOnDemand)
	notReady(down[1].(*corev1.Node), start.Add(time.Hour-14*time.Minute))
	e := newEnv(t, objects(p, down)...)
	mustT(t, e.client.Create(context.Background(), blockedPod("web", "down")))
	e.pass(t)
	e.validate(t)
	if diff := cmp.Diff([]string{"down"}, e.claims(t)); diff != "" {
		t.Fatalf("replaced before repairAfter (-want +got):\n%s", diff)
	}
	e.clock.Step(time.Minute)
	e.pass(t)
	e.validate(t)
	repl := e.replacement(t, "down")
	e.setReady(t, repl)
	e.pass(t)
	if diff := cmp.Diff([]string{repl}, e.claims(t)); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if !strings.Contains(drain(e.recorder), "Unhealthy (repair)") {
		t.Error("no event names the repair")
	}
}

// TestPassForcefulExpiry: a zero budget holds an expired node until its
// terminationGracePeriod has also passed.
func TestPassForcefulExpiry(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) {
		p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0"}}
		p.Spec.Disruption.ConsolidateAfter = v1.Never
	})
	m := mach("a", 1, v1.CapacityTypeOnDemand)
	claim := m[0].(*v1.NodeClaim)
	claim.Spec.ExpireAfter = v1.DurationOf(time.Hour)
	claim.Spec.TerminationGracePeriod = &metav1.Duration{Duration: 10 * time.Minute}
	withCondition(claim, v1.ConditionExpired, "Expired", start.Add(time.Hour))
	e := newEnv(t, objects(p, m)...)
	mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
	e.clock.SetTime(start.Add(65 * time.Minute))
	e.pass(t)
	e.validate(t)
	if got := e.claims(t); len(got) != 1 {
		t.Fatalf("claims = %v: expiry ignored the zero budget before the grace period ended", got)
	}
	e.clock.SetTime(start.Add(70 * time.Minute))
	e.pass(t)
	e.validate(t)
	if got := e.claims(t); len(got) != 2 {
		t.Fatalf("claims = %v, want a replacement after the grace period", got)
	}
}

// Expiry rolls as many nodes at once as the budget allows, each its own
// command, and a slow replacement holds only its own command.
func TestPassRollsSeveralNodesAtOnce(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) {
		p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "2"}}
		p.Spec.Disruption.ConsolidateAfter = v1.Never
	})
	var objs []client.Object
	objs = append(objs, p)
	for _, name := range []string{"a", "b", "c"} {
		m := mach(name, 0, v1.CapacityTypeOnDemand)
		claim := m[0].(*v1.NodeClaim)
		claim.Spec.ExpireAfter = v1.DurationOf(30 * time.Minute)
		withCondition(claim, v1.ConditionExpired, "Expired", start.Add(30*time.Minute))
		objs = append(objs, m[0], m[1], pod("web-"+name, name, "3"))
	}
	e := newEnv(t, objs...)
	e.pass(t)
	e.validate(t)
	var repl []string
	for _, n := range e.claims(t) {
		if strings.HasPrefix(n, "p-") {
			repl = append(repl, n)
		}
	}
	if len(repl) != 2 {
		t.Fatalf("replacements = %v, want two: the budget allows two nodes at once", repl)
	}
	tainted := 0
	for _, n := range []string{"a", "b", "c"} {
		if e.tainted(t, n) {
			tainted++
		}
	}
	if tainted != 2 {
		t.Errorf("%d candidates tainted, want 2", tainted)
	}
	// One replacement is Ready, the other is slow: only its own command waits.
	e.setReady(t, repl[0])
	e.pass(t)
	left := e.claims(t)
	if len(left) != 4 {
		t.Errorf("claims = %v, want one candidate gone and the other waiting", left)
	}
	if n := len(e.ctrl.inflight); n != 1 {
		t.Errorf("%d commands in flight, want 1", n)
	}
}

// A new leader resumes a command its predecessor left waiting for its
// replacement, and gives up one whose replacement was never created.
func TestPassResumesCommandsAfterARestart(t *testing.T) {
	e, repl := replacingA(t)

	// The leader changes.
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Solver: SolverFunc(firstFit), Clock: e.clock, Recorder: e.recorder})
	e.pass(t)
	if !e.tainted(t, "a") {
		t.Fatal("the new leader released the candidate of a command that still runs")
	}
	if diff := cmp.Diff([]string{"a", repl}, e.claims(t), sortStrings); diff != "" {
		t.Fatalf("claims after the restart (-want +got):\n%s", diff)
	}
	e.setReady(t, repl)
	e.pass(t)
	if diff := cmp.Diff([]string{repl}, e.claims(t)); diff != "" {
		t.Fatalf("the resumed command did not finish (-want +got):\n%s", diff)
	}

	// A command recorded on a candidate whose replacement is missing.
	m := mach("b", 1, v1.CapacityTypeOnDemand)
	claim := m[0].(*v1.NodeClaim)
	claim.Annotations = map[string]string{AnnotationCommand: `{"id":"b-1","method":"drift","reason":"Drifted","replacements":1,"started":"2026-11-27T13:00:00Z"}`}
	m[1].(*corev1.Node).Spec.Taints = []corev1.Taint{disruptedTaint}
	mustT(t, e.client.Create(context.Background(), claim))
	mustT(t, e.client.Create(context.Background(), m[1]))
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Solver: SolverFunc(firstFit), Clock: e.clock, Recorder: e.recorder})
	e.pass(t)
	if e.tainted(t, "b") {
		t.Error("a command that lost its replacement was not given up")
	}
}

func TestPassReleasesOrphanedTaint(t *testing.T) {
	m := mach("a", 1, v1.CapacityTypeOnDemand)
	m[1].(*corev1.Node).Spec.Taints = []corev1.Taint{disruptedTaint, {Key: "other", Effect: corev1.TaintEffectNoSchedule}}
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.Never })
	e := newEnv(t, objects(p, m)...)
	e.pass(t)
	if !e.tainted(t, "a") {
		t.Fatal("taint released on the first pass; another controller's claim update may still be on its way")
	}
	e.pass(t)
	if e.tainted(t, "a") {
		t.Error("orphaned disrupted taint was kept")
	}
	n := &corev1.Node{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: "a"}, n))
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "other" {
		t.Errorf("taints = %v, want only the other taint kept", n.Spec.Taints)
	}
}

func TestUntaintMissingNode(t *testing.T) {
	e := newEnv(t)
	if err := Untaint(context.Background(), e.client, "gone"); err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("Untaint of a missing node: %v", err)
	}
}

var sortStrings = cmpSortStrings()

func cmpSortStrings() cmp.Option {
	return cmp.Transformer("sort", func(in []string) []string {
		out := append([]string(nil), in...)
		for i := range out {
			for j := i + 1; j < len(out); j++ {
				if out[j] < out[i] {
					out[i], out[j] = out[j], out[i]
				}
			}
		}
		return out
	})
}

// drain returns the events recorded so far, one per line.
func drain(r *events.FakeRecorder) string {
	var b strings.Builder
	for {
		select {
		case ev := <-r.Events:
			b.WriteString(ev + "\n")
		default:
			return b.String()
		}
	}
}

// eventsWith returns the events recorded so far whose reason is reason.
func eventsWith(r *events.FakeRecorder, reason string) []string {
	var out []string
	for _, ev := range strings.Split(drain(r), "\n") {
		if strings.Contains(ev, reason) {
			out = append(out, ev)
		}
	}
	return out
}

// passExpecting steps the clock to the next pass, runs it, and checks the
// events of reason it recorded.
func (e *env) passExpecting(t *testing.T, step, reason string, want []string) {
	t.Helper()
	e.clock.Step(10 * time.Second)
	e.pass(t)
	if diff := cmp.Diff(want, eventsWith(e.recorder, reason)); diff != "" {
		t.Errorf("%s: events (-want +got):\n%s", step, diff)
	}
}

// setBudget gives pool p a single budget of nodes.
func (e *env) setBudget(t *testing.T, p *v1.NodePool, nodes string) {
	t.Helper()
	mustT(t, e.client.Get(context.Background(), client.ObjectKeyFromObject(p), p))
	p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: nodes}}
	mustT(t, e.client.Update(context.Background(), p))
}

// setDrifted sets or clears the named claim's Drifted condition.
func (e *env) setDrifted(t *testing.T, name string, drifted bool) {
	t.Helper()
	claim := &v1.NodeClaim{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: name}, claim))
	if drifted {
		withCondition(claim, v1.ConditionDrifted, "RequirementsDrifted", e.clock.Now())
	} else {
		meta.RemoveStatusCondition(&claim.Status.Conditions, v1.ConditionDrifted)
	}
	mustT(t, e.client.Status().Update(context.Background(), claim))
}

// A consolidation decision that a better one overtakes before its delay is
// not carried out: deleting a, with b still blocked, gives way to merging
// both once b is free.
func TestPassBetterConsolidationOvertakes(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("pa", "a", "1")))
	held := pod("pb", "b", "1", annotated(v1.AnnotationDoNotDisrupt, "true"))
	mustT(t, e.client.Create(context.Background(), held))
	e.pass(t) // decides: delete a (its pod fits on b)
	e.clock.Step(10 * time.Second)
	// b's pod no longer blocks: merging a and b onto one small node saves more.
	mustT(t, e.client.Get(context.Background(), client.ObjectKeyFromObject(held), held))
	held.Annotations = nil
	mustT(t, e.client.Update(context.Background(), held))
	e.pass(t)
	e.validate(t)
	var got []string
	for _, n := range e.claims(t) {
		if strings.HasPrefix(n, "p-") {
			n = "+"
		}
		got = append(got, n)
	}
	if diff := cmp.Diff([]string{"+", "a", "b"}, got, sortStrings); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	if !e.tainted(t, "a") || !e.tainted(t, "b") {
		t.Error("the merge did not take both nodes")
	}
}

// A node a method wants but may not touch says why, once per blocker: the
// drifted node with a do-not-disrupt pod gets one DisruptionBlocked event on
// its claim and its node, none on the next pass, and a new one when the
// blocker comes back after it was lifted. A blocked node no method wants
// gets none.
func TestPassReportsBlockedNodesOnce(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0"}} })
	a, b := mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand)
	withCondition(a[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	b[0].(*v1.NodeClaim).Status.Conditions = b[0].(*v1.NodeClaim).Status.Conditions[:2] // Initialized, Ready
	e := newEnv(t, objects(p, a, b)...)
	held := pod("pa", "a", "1", annotated(v1.AnnotationDoNotDisrupt, "true"))
	mustT(t, e.client.Create(context.Background(), held))
	mustT(t, e.client.Create(context.Background(), pod("pb", "b", "1", annotated(v1.AnnotationDoNotDisrupt, "true"))))
	blockedEvents := func() []string { return eventsWith(e.recorder, ReasonDisruptionBlocked) }
	want := "Normal DisruptionBlocked Drifted and Consolidatable, but pod default/pa has " + v1.AnnotationDoNotDisrupt
	e.pass(t)
	if diff := cmp.Diff([]string{want, want}, blockedEvents()); diff != "" {
		t.Errorf("first pass's events (-want +got):\n%s", diff)
	}
	e.clock.Step(10 * time.Second)
	e.pass(t)
	if got := blockedEvents(); len(got) != 0 {
		t.Errorf("second pass repeated the events: %v", got)
	}
	for _, ann := range []map[string]string{nil, {v1.AnnotationDoNotDisrupt: "true"}} {
		mustT(t, e.client.Get(context.Background(), client.ObjectKeyFromObject(held), held))
		held.Annotations = ann
		mustT(t, e.client.Update(context.Background(), held))
		e.clock.Step(10 * time.Second)
		e.pass(t)
	}
	if diff := cmp.Diff([]string{want, want}, blockedEvents()); diff != "" {
		t.Errorf("events after the blocker came back (-want +got):\n%s", diff)
	}
}

// A drifted node whose pods would have no place says so once: not again on
// the next pass, nor after a pass whose budget kept drift from looking at
// it. Once no longer drifted it is still consolidatable, and consolidation
// refuses it for the same cause; drifting anew is drift's refusal again.
func TestPassReportsRefusedDriftOnce(t *testing.T) {
	a := mach("a", 1, v1.CapacityTypeOnDemand)
	withCondition(a[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	p := pool("p")
	e := newEnv(t, objects(p, a)...)
	mustT(t, e.client.Create(context.Background(), pod("huge", "a", "100000")))
	drift := "Normal DisruptionBlocked Drifted, but its pods would have no place"
	consolidation := "Normal DisruptionBlocked Consolidatable, but its pods would have no place"
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"first pass", func() {}, []string{drift, drift}},
		{"second pass", func() {}, nil},
		{"budget of zero", func() { e.setBudget(t, p, "0") }, nil},
		{"budget back", func() { e.setBudget(t, p, "100%") }, nil},
		{"no longer drifted", func() { e.setDrifted(t, "a", false) }, []string{consolidation, consolidation}},
		{"the pass after", func() {}, nil},
		{"drifted again", func() { e.setDrifted(t, "a", true) }, []string{drift, drift}},
	}
	for _, s := range steps {
		s.do()
		e.passExpecting(t, s.name, ReasonDisruptionBlocked, s.want)
	}
	if got := e.claims(t); !slices.Equal(got, []string{"a"}) {
		t.Errorf("claims = %v, want only a: nothing can take its pod", got)
	}
}

// A consolidatable node that no replacement makes cheaper enough says why,
// once per cause: a saving that moves by a cent is not news, a different
// cause is, and a saving that clears the guard is acted on without one.
func TestPassReportsRefusedConsolidationOnce(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 2, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("train", "a", "1", gpuRequest)))
	note := func(why string) []string {
		n := "Normal DisruptionBlocked Consolidatable, but " + why
		return []string{n, n}
	}
	steps := []struct {
		name      string
		spotPrice float64
		want      []string
	}{
		{"spot dearer", 1.20, note("no cheaper machine holds its pods (the cheapest costs $1.0000/h, the node $1.0000/h)")},
		{"the next pass", 1.20, nil},
		{"spot 2 cents cheaper", 0.98, note("saving $0.0200/h of $1.0000/h is below the minimum ($0.05/h and 5%)")},
		{"spot 3 cents cheaper", 0.97, nil},
		{"spot far cheaper", 0.40, nil},
	}
	for _, s := range steps {
		e.cloud.setPrice("gpu1", v1.CapacityTypeSpot, s.spotPrice)
		e.passExpecting(t, s.name, ReasonDisruptionBlocked, s.want)
	}
	e.validate(t)
	if got := e.claims(t); len(got) != 2 {
		t.Errorf("claims = %v, want a and its spot replacement", got)
	}
}

// Drifted nodes held back by the pool's budget are reported on the pool
// once when the wait starts, not every pass, and again after it ended.
func TestPassReportsExhaustedBudgetOnce(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0"}} })
	a, b, c := mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand), mach("c", 1, v1.CapacityTypeOnDemand)
	for _, m := range [][2]client.Object{a, b} {
		withCondition(m[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	}
	e := newEnv(t, objects(p, a, b, c)...)
	for _, n := range []string{"a", "b", "c"} {
		mustT(t, e.client.Create(context.Background(), pod("p"+n, n, "1")))
	}
	steps := []struct {
		name string
		do   func()
		want []string
	}{
		{"budget of zero", func() {}, []string{"Normal DisruptionBudgetExhausted 2 node(s) due for Drifted wait: " +
			"the pool's disruption budget allows no more now (0 being disrupted, 0 not Ready)"}},
		{"the next pass", func() {}, nil},
		{"room for both", func() { e.setBudget(t, p, "100%") }, nil},
		{"c drifts under a budget of zero", func() {
			e.setBudget(t, p, "0")
			e.setDrifted(t, "c", true)
		}, []string{"Normal DisruptionBudgetExhausted 1 node(s) due for Drifted wait: " +
			"the pool's disruption budget allows no more now (2 being disrupted, 0 not Ready)"}},
	}
	for _, s := range steps {
		s.do()
		e.passExpecting(t, s.name, ReasonBudgetExhausted, s.want)
	}
}

// TestExpiryHonoursABlockerThatArrivesBeforeValidation: an expired node
// decided at one pass gets a blocker during the validation delay; the
// command is not carried out (the node is not yet forcefully expired).
func TestExpiryHonoursABlockerThatArrivesBeforeValidation(t *testing.T) {
	zero := intstr.FromInt32(0)
	cases := map[string]func(e *env){
		"do-not-disrupt pod": func(e *env) { mustT(t, e.client.Create(context.Background(), blockedPod("dnd", "a"))) },
		"Karpenter's do-not-disrupt pod": func(e *env) {
			p := pod("dnd", "a", "1")
			p.Annotations = map[string]string{v1.AnnotationKarpenterDoNotDisrupt: "true"}
			mustT(t, e.client.Create(context.Background(), p))
		},
		"do-not-disrupt DaemonSet pod": func(e *env) {
			p := pod("agent", "a", "100m", ownedBy("DaemonSet"))
			p.Annotations = map[string]string{v1.AnnotationDoNotDisrupt: "true"}
			mustT(t, e.client.Create(context.Background(), p))
		},
		"running Job pod": func(e *env) { mustT(t, e.client.Create(context.Background(), pod("job", "a", "1", ownedBy("Job")))) },
		"PDB allowing none": func(e *env) {
			mustT(t, e.client.Create(context.Background(), &policyv1.PodDisruptionBudget{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "pdb"},
				Spec: policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero,
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
			}))
		},
	}
	for name, block := range cases {
		t.Run(name, func(t *testing.T) {
			p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.Never })
			m := mach("a", 1, v1.CapacityTypeOnDemand)
			claim := m[0].(*v1.NodeClaim)
			claim.Spec.ExpireAfter = v1.DurationOf(time.Hour)
			withCondition(claim, v1.ConditionExpired, "Expired", start.Add(time.Hour))
			e := newEnv(t, objects(p, m)...)
			mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
			e.clock.SetTime(start.Add(65 * time.Minute))
			e.pass(t) // decides the expiry of a
			block(e)
			e.validate(t)
			if e.tainted(t, "a") || len(e.claims(t)) != 1 {
				t.Errorf("blocked expired node disrupted: tainted %v, claims %v", e.tainted(t, "a"), e.claims(t))
			}
		})
	}
}

// TestReplacementIsNoCandidateWhileItsPredecessorDrains: once a replaced
// node's replacement is Ready the candidate is deleted and drains; until
// the moved pods arrive the replacement is empty, and with consolidateAfter
// 0s emptiness would delete it, leaving the pods to buy another machine.
func TestReplacementIsNoCandidateWhileItsPredecessorDrains(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.DurationOf(0) })
	m := mach("a", 1, v1.CapacityTypeOnDemand)
	a := m[0].(*v1.NodeClaim)
	a.Finalizers = []string{v1.TerminationFinalizer}
	withCondition(a, v1.ConditionDrifted, "Drifted", start)
	e := newEnv(t, objects(p, m)...)
	ctx := context.Background()
	mustT(t, e.client.Create(ctx, pod("web-0", "a", "10", ownedBy("StatefulSet"))))
	e.pass(t)
	e.validate(t)
	repl := e.replacement(t, "a")
	c := &v1.NodeClaim{}
	mustT(t, e.client.Get(ctx, client.ObjectKey{Name: repl}, c))
	rc, rn := machine(repl, "p", catalog()[1], v1.CapacityTypeOnDemand, e.clock.Now())
	c.Status = rc.Status
	mustT(t, e.client.Status().Update(ctx, c))
	mustT(t, e.client.Create(ctx, rn))
	e.pass(t) // the replacement is Ready: a is deleted and drains
	mustT(t, e.client.Get(ctx, client.ObjectKey{Name: "a"}, a))
	if a.DeletionTimestamp == nil {
		t.Fatal("the candidate was not deleted once its replacement was Ready")
	}
	// web-0 is still terminating on a (a StatefulSet's successor comes
	// only after it is gone), so the replacement holds no pod yet.
	e.validate(t)
	got := &v1.NodeClaim{}
	err := e.client.Get(ctx, client.ObjectKey{Name: repl}, got)
	if err != nil || got.DeletionTimestamp != nil || e.tainted(t, repl) {
		t.Errorf("replacement %s disrupted while its predecessor drains: %v", repl, err)
	}
}

// TestConsolidationKeepsRoomPromisedToNominatedPods: the provisioner
// promised b's free room to a pending pod; consolidation must not move a's
// pod into it.
func TestConsolidationKeepsRoomPromisedToNominatedPods(t *testing.T) {
	// a and b hold 16 CPUs each; a runs 4, b runs 1, and the incoming pod wants 14 on b.
	objs := objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand))
	objs = append(objs, pod("pa", "a", "4"), pod("pb", "b", "1"))
	e := newEnv(t, objs...)
	e.nominate(t, pod("incoming", "", "14"), "b")
	e.pass(t)
	e.validate(t)
	// a may be replaced by a smaller machine, but not emptied into b.
	if claims := e.claims(t); e.tainted(t, "a") || !slices.Contains(claims, "a") {
		if len(claims) != 3 {
			t.Errorf("a was consolidated into b's room promised to a nominated pod: claims %v", claims)
		}
	}
}
