package disruption

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
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

func TestPassEmptinessWaitsForConsolidateAfter(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("web", "b", "1")))
	e.pass(t)
	e.clock.Step(29 * time.Second)
	e.pass(t)
	if diff := cmp.Diff([]string{"a", "b"}, e.claims(t)); diff != "" {
		t.Fatalf("before consolidateAfter (-want +got):\n%s", diff)
	}
	e.clock.Step(time.Second)
	e.pass(t)
	if diff := cmp.Diff([]string{"b"}, e.claims(t)); diff != "" {
		t.Fatalf("after consolidateAfter (-want +got):\n%s", diff)
	}
	if !e.tainted(t, "a") {
		t.Error("node a was not tainted before its claim was deleted")
	}
	if got := drain(e.recorder); !strings.Contains(got, ReasonDisruptionDeleting) || !strings.Contains(got, "saving $0.8000/h") {
		t.Errorf("events = %q, want a %s event with the saving", got, ReasonDisruptionDeleting)
	}
}

func TestPassReplacementReadyBeforeDrain(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
	e.pass(t)
	e.clock.Step(time.Minute)
	e.pass(t) // proposes
	if diff := cmp.Diff([]string{"a"}, e.claims(t)); diff != "" {
		t.Fatalf("after the first proposal (-want +got):\n%s", diff)
	}
	e.pass(t) // confirms: launches
	names := e.claims(t)
	if len(names) != 2 {
		t.Fatalf("claims = %v, want a and one replacement", names)
	}
	repl := names[0]
	if repl == "a" {
		repl = names[1]
	}
	claim := &v1.NodeClaim{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: repl}, claim))
	if diff := cmp.Diff("small", claim.Spec.Offerings[0].InstanceType); diff != "" {
		t.Errorf("replacement instance type (-want +got):\n%s", diff)
	}
	if claim.Annotations[AnnotationLineage] != "a" || claim.Annotations[AnnotationReplacedAt] == "" {
		t.Errorf("replacement annotations = %v, want lineage a and replaced-at", claim.Annotations)
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

func TestPassAbandonsWhenReplacementFails(t *testing.T) {
	cases := []struct {
		name string
		// seen: a pass saw the replacement before it was deleted.
		seen bool
		// wait before the last pass.
		wait time.Duration
	}{
		{name: "replacement seen, then gone", seen: true},
		{name: "replacement never seen, within timeout", wait: time.Minute},
		{name: "replacement never seen, past timeout", wait: DefaultReplacementTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand))...)
			mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
			e.pass(t)
			e.clock.Step(time.Minute)
			e.pass(t)
			e.pass(t)
			names := e.claims(t)
			if len(names) != 2 {
				t.Fatalf("claims = %v, want a and one replacement", names)
			}
			if tc.seen {
				e.pass(t)
			}
			for _, n := range names {
				if n != "a" {
					mustT(t, e.client.Delete(context.Background(), &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: n}}))
				}
			}
			e.clock.Step(tc.wait)
			e.pass(t)
			abandoned := tc.seen || tc.wait >= DefaultReplacementTimeout
			if got := e.tainted(t, "a"); got == abandoned {
				t.Errorf("candidate tainted = %v, want %v", got, !abandoned)
			}
			if diff := cmp.Diff([]string{"a"}, e.claims(t)); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
			if got := drain(e.recorder); strings.Contains(got, ReasonDisruptionAbandoned) != abandoned {
				t.Errorf("events = %q, want %s: %v", got, ReasonDisruptionAbandoned, abandoned)
			}
		})
	}
}

// TestPassFlappingPriceDoesNotChurn alternates the spot price between passes:
// the replacement is proposed every other pass but never confirmed.
func TestPassFlappingPriceDoesNotChurn(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 2, v1.CapacityTypeOnDemand))...)
	mustT(t, e.client.Create(context.Background(), pod("train", "a", "1", gpuRequest)))
	e.pass(t)
	e.clock.Step(time.Minute)
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
	// A price that stays down is acted on.
	e.cloud.setPrice("gpu1", v1.CapacityTypeSpot, 0.40)
	e.pass(t)
	e.pass(t)
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
			e.clock.Step(time.Minute)
			e.pass(t)
			e.pass(t)
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
	e.pass(t)
	if diff := cmp.Diff([]string{"a", "b"}, e.claims(t)); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
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
	e := newEnv(t, objects(p, m)...)
	mustT(t, e.client.Create(context.Background(), pod("web", "a", "2")))
	e.clock.SetTime(start.Add(65 * time.Minute))
	e.pass(t)
	if got := e.claims(t); len(got) != 1 {
		t.Fatalf("claims = %v: expiry ignored the zero budget before the grace period ended", got)
	}
	e.clock.SetTime(start.Add(70 * time.Minute))
	e.pass(t)
	if got := e.claims(t); len(got) != 2 {
		t.Fatalf("claims = %v, want a replacement after the grace period", got)
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
