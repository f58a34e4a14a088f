package provisioningrequest

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/provisioning"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var start = time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)

type counter struct{ n int }

func (c *counter) Trigger() { c.n++ }

type env struct {
	c       client.Client
	clock   *clocktesting.FakeClock
	cluster *state.Cluster
	trigger *counter
	ctrl    *Controller
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, provreqv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	clk := clocktesting.NewFakeClock(start)
	e := &env{
		c:       fake.NewClientBuilder().WithScheme(s).WithStatusSubresource(&provreqv1.ProvisioningRequest{}, &v1.NodeClaim{}).WithObjects(objs...).Build(),
		clock:   clk,
		cluster: state.NewCluster(clk),
		trigger: &counter{},
	}
	e.ctrl = NewController(Deps{Client: e.c, Cluster: e.cluster, Provisioner: e.trigger, Clock: clk})
	return e
}

func template(name string, gpus string) *corev1.PodTemplate {
	return &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: name},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "trainer"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "w", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse(gpus)}}}}},
		},
	}
}

func request(name, class string, sets ...provreqv1.PodSet) *provreqv1.ProvisioningRequest {
	return &provreqv1.ProvisioningRequest{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: name, UID: "uid-" + "name", CreationTimestamp: metav1.NewTime(start)},
		Spec:       provreqv1.ProvisioningRequestSpec{ProvisioningClassName: class, PodSets: sets},
	}
}

func podSet(tmpl string, n int32) provreqv1.PodSet {
	return provreqv1.PodSet{PodTemplateRef: provreqv1.Reference{Name: tmpl}, Count: n}
}

func (e *env) reconcile(t *testing.T, name string) reconcile.Result {
	t.Helper()
	res, err := requests{c: e.ctrl, client: e.c}.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKey{Namespace: "ml", Name: name}})
	if err != nil {
		t.Fatalf("reconcile %s: %v", name, err)
	}
	return res
}

func (e *env) get(t *testing.T, name string) *provreqv1.ProvisioningRequest {
	t.Helper()
	pr := &provreqv1.ProvisioningRequest{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Namespace: "ml", Name: name}, pr); err != nil {
		t.Fatal(err)
	}
	return pr
}

// conds summarises the conditions as type -> status/reason.
func conds(pr *provreqv1.ProvisioningRequest) map[string]string {
	out := map[string]string{}
	for _, c := range pr.Status.Conditions {
		out[c.Type] = string(c.Status) + "/" + c.Reason
	}
	return out
}

func claim(name, owner string, launched bool) *v1.NodeClaim {
	c := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{v1.AnnotationBookedBy: owner}},
		Spec: v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{{InstanceType: "p5.48xlarge", Zone: "z", CapacityType: "on-demand"}}}}
	if launched {
		c.Status.Conditions = []metav1.Condition{{Type: v1.ConditionLaunched, Status: metav1.ConditionTrue, Reason: "Launched", LastTransitionTime: metav1.NewTime(start)}}
	}
	return c
}

func TestUnservedClassIsLeftAlone(t *testing.T) {
	e := newEnv(t, request("other", "queued-provisioning.gke.io", podSet("t", 1)))
	e.reconcile(t, "other")
	if got := conds(e.get(t, "other")); len(got) != 0 || len(e.ctrl.Demands()) != 0 {
		t.Errorf("conditions %v, demands %d; another autoscaler's request must be left alone", got, len(e.ctrl.Demands()))
	}
}

func TestBestEffortAtomicBuysAllThenProvisioned(t *testing.T) {
	const class = provreqv1.ProvisioningClassBestEffortAtomicScaleUp
	e := newEnv(t, template("workers", "8"), template("driver", "1"), request("job", class, podSet("workers", 3), podSet("driver", 1)))
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.Accepted] != "True/Accepted" || got[provreqv1.Provisioned] != "" {
		t.Fatalf("after the first reconcile: %v", got)
	}
	ds := e.ctrl.Demands()
	if len(ds) != 1 || ds[0].Key != "ml/job" || ds[0].CheckOnly || len(ds[0].Pods) != 4 || e.trigger.n == 0 {
		t.Fatalf("demands %+v, triggers %d; want one demand of 4 pods and a provisioning pass", ds, e.trigger.n)
	}
	for _, p := range ds[0].Pods {
		name, size, err := scheduling.GangOf(p)
		if name != "provisioningrequest/job" || size != 4 || err != nil || p.Annotations[provreqv1.ConsumeAnnotation] != "job" {
			t.Errorf("pod %s: gang %q of %d (%v), consumes %q", p.Name, name, size, err, p.Annotations[provreqv1.ConsumeAnnotation])
		}
	}

	// The pass bought two machines: the request waits for them to launch.
	for _, n := range []string{"m1", "m2"} {
		// Provisioning writes the claims and records them in the cluster view.
		if err := e.c.Create(context.Background(), claim(n, "ml/job", false)); err != nil {
			t.Fatal(err)
		}
		e.cluster.UpdateNodeClaim(claim(n, "ml/job", false))
	}
	e.ctrl.Planned(context.Background(), "ml/job", provisioning.Outcome{Placed: true, Claims: []string{"m1", "m2"}}, nil)
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.Provisioned] != "False/Provisioning" {
		t.Fatalf("while buying: %v", got)
	}
	if len(e.ctrl.Demands()) != 0 {
		t.Error("a request whose machines are being bought must not be planned again")
	}
	e.cluster.UpdateNodeClaim(claim("m1", "ml/job", true))
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.Provisioned] != "False/Provisioning" {
		t.Fatalf("with one of two machines launched: %v", got)
	}
	e.cluster.UpdateNodeClaim(claim("m2", "ml/job", true))
	e.reconcile(t, "job")
	pr := e.get(t, "job")
	if got := conds(pr); got[provreqv1.Provisioned] != "True/CapacityIsProvisioned" {
		t.Fatalf("once launched: %v", got)
	}

	// The booking holds until it expires, and is then released.
	e.cluster.Book("ml/job", "m1", ds[0].Pods[:2]...)
	e.cluster.Book("ml/job", "m2", ds[0].Pods[2:]...)
	e.clock.Step(DefaultBookingTime - time.Minute)
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.BookingExpired] != "" || e.cluster.Booking("ml/job") == nil {
		t.Fatalf("before the booking time: %v", got)
	}
	e.clock.Step(time.Minute)
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.BookingExpired] != "True/CapacityReservationTimeExpired" {
		t.Fatalf("after the booking time: %v", got)
	}
	if e.cluster.Booking("ml/job") != nil {
		t.Error("the booking outlived BookingExpired")
	}
	m1 := &v1.NodeClaim{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Name: "m1"}, m1); err != nil || m1.Annotations[v1.AnnotationBookedBy] != "" {
		t.Errorf("m1 still marked as held: %v %v", m1.Annotations, err)
	}
}

func TestBestEffortAtomicReplansThenFails(t *testing.T) {
	const class = provreqv1.ProvisioningClassBestEffortAtomicScaleUp
	e := newEnv(t, template("workers", "8"), request("job", class, podSet("workers", 2)))
	e.reconcile(t, "job")
	for attempt := 1; attempt <= DefaultMaxAttempts; attempt++ {
		if len(e.ctrl.Demands()) != 1 {
			t.Fatalf("plan %d: the request is not planned", attempt)
		}
		// The pass bought claims, but the gang was released at launch
		// (capacity error): the claims are already gone.
		e.ctrl.Planned(context.Background(), "ml/job", provisioning.Outcome{Placed: true, Claims: []string{"gone-1", "gone-2"}}, nil)
		e.reconcile(t, "job") // applies the outcome and notices the claims are gone
		got := conds(e.get(t, "job"))
		if attempt < DefaultMaxAttempts && got[provreqv1.Provisioned] != "False/Replanning" {
			t.Fatalf("plan %d: %v, want Replanning", attempt, got)
		}
		if attempt == DefaultMaxAttempts && got[provreqv1.Failed] != "True/CapacityIsNotFound" {
			t.Fatalf("plan %d: %v, want Failed", attempt, got)
		}
	}
	if len(e.ctrl.Demands()) != 0 {
		t.Error("a Failed request is still planned")
	}
}

func TestBestEffortAtomicWithoutAPlanFails(t *testing.T) {
	e := newEnv(t, template("workers", "8"), request("job", provreqv1.ProvisioningClassBestEffortAtomicScaleUp, podSet("workers", 2)))
	e.reconcile(t, "job")
	e.ctrl.Planned(context.Background(), "ml/job", provisioning.Outcome{Reason: "nodepool gpu limits reached: nvidia.com/gpu"}, nil)
	e.reconcile(t, "job")
	pr := e.get(t, "job")
	c := conditions.Get(pr.Status.Conditions, provreqv1.Failed)
	if c == nil || c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "limits reached") {
		t.Errorf("Failed = %+v, want True with the solver's reason", c)
	}
}

func TestCheckCapacity(t *testing.T) {
	const class = provreqv1.ProvisioningClassCheckCapacity
	e := newEnv(t, template("workers", "8"), request("fits", class, podSet("workers", 2)), request("later", class, podSet("workers", 2)),
		func() *provreqv1.ProvisioningRequest {
			pr := request("once", class, podSet("workers", 2))
			pr.Spec.Parameters = map[string]provreqv1.Parameter{provreqv1.ParameterNoRetry: "true"}
			return pr
		}())
	for _, n := range []string{"fits", "later", "once"} {
		e.reconcile(t, n)
	}
	for _, d := range e.ctrl.Demands() {
		if !d.CheckOnly {
			t.Errorf("demand %s buys; check-capacity must not", d.Key)
		}
	}
	e.ctrl.Planned(context.Background(), "ml/fits", provisioning.Outcome{Placed: true, NewNodes: 2, CostPerHour: 110.08}, nil)
	e.ctrl.Planned(context.Background(), "ml/later", provisioning.Outcome{Reason: "no instance type has 8 nvidia.com/gpu"}, nil)
	e.ctrl.Planned(context.Background(), "ml/once", provisioning.Outcome{Reason: "no instance type has 8 nvidia.com/gpu"}, nil)
	for _, n := range []string{"fits", "later", "once"} {
		e.reconcile(t, n)
	}
	want := map[string]string{"fits": "Provisioned:True/CapacityIsFound", "later": "Provisioned:False/CapacityIsNotFound", "once": "Failed:True/CapacityIsNotFound"}
	for n, w := range want {
		typ, st, _ := strings.Cut(w, ":")
		if got := conds(e.get(t, n))[typ]; got != st {
			t.Errorf("%s: %s = %q, want %q", n, typ, got, st)
		}
	}
	if msg := conditions.Get(e.get(t, "fits").Status.Conditions, provreqv1.Provisioned).Message; !strings.Contains(msg, "2 machines") {
		t.Errorf("message %q should say what would be bought", msg)
	}
	ds := e.ctrl.Demands()
	if len(ds) != 1 || ds[0].Key != "ml/later" {
		t.Errorf("demands %v, want only the request still waiting for capacity", ds)
	}
}

func TestCapacityRevoked(t *testing.T) {
	e := newEnv(t, template("workers", "8"), request("job", provreqv1.ProvisioningClassBestEffortAtomicScaleUp, podSet("workers", 1)))
	e.reconcile(t, "job")
	e.cluster.UpdateNodeClaim(claim("m1", "ml/job", true))
	e.cluster.Book("ml/job", "m1", e.ctrl.Demands()[0].Pods...)
	e.ctrl.Planned(context.Background(), "ml/job", provisioning.Outcome{Placed: true}, nil) // fits on m1 as it is
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.Provisioned] != "True/CapacityIsFound" {
		t.Fatalf("%v", got)
	}
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.CapacityRevoked] != "" {
		t.Fatalf("revoked while m1 exists: %v", got)
	}
	e.cluster.DeleteNodeClaim("m1")
	e.reconcile(t, "job")
	if got := conds(e.get(t, "job")); got[provreqv1.CapacityRevoked] != "True/CapacityRevoked" {
		t.Errorf("after m1 went: %v", got)
	}
	if e.cluster.Booking("ml/job") != nil {
		t.Error("a revoked booking is still held")
	}
}

func TestMissingTemplate(t *testing.T) {
	e := newEnv(t, request("job", provreqv1.ProvisioningClassBestEffortAtomicScaleUp, podSet("late", 1)))
	if res := e.reconcile(t, "job"); res.RequeueAfter == 0 {
		t.Error("a missing template within the grace period must be waited for")
	}
	if got := conds(e.get(t, "job")); got[provreqv1.Failed] != "" {
		t.Fatalf("failed within the grace period: %v", got)
	}
	e.clock.Step(templateGrace)
	e.reconcile(t, "job")
	c := conditions.Get(e.get(t, "job").Status.Conditions, provreqv1.Failed)
	if c == nil || c.Reason != ReasonInvalid || !strings.Contains(c.Message, "podtemplate ml/late not found") {
		t.Errorf("Failed = %+v", c)
	}
}

func TestDeletedRequestIsReleased(t *testing.T) {
	pr := request("job", provreqv1.ProvisioningClassBestEffortAtomicScaleUp, podSet("workers", 1))
	e := newEnv(t, template("workers", "8"), pr, claim("m1", "ml/job", true))
	e.reconcile(t, "job")
	e.cluster.Book("ml/job", "m1", e.ctrl.Demands()[0].Pods...)
	if err := e.c.Delete(context.Background(), pr); err != nil {
		t.Fatal(err)
	}
	e.reconcile(t, "job")
	if e.cluster.Booking("ml/job") != nil || len(e.ctrl.Demands()) != 0 {
		t.Error("a deleted request keeps its booking or demand")
	}
	m1 := &v1.NodeClaim{}
	if err := e.c.Get(context.Background(), client.ObjectKey{Name: "m1"}, m1); err != nil || m1.Annotations[v1.AnnotationBookedBy] != "" {
		t.Errorf("m1 still held: %v %v", m1.Annotations, err)
	}
}

// A request waiting for capacity is planned on provisioning's own passes; its
// reconciles do not start one each, which would loop.
func TestWaitingRequestDoesNotLoop(t *testing.T) {
	e := newEnv(t, template("workers", "8"), request("later", provreqv1.ProvisioningClassCheckCapacity, podSet("workers", 1)))
	e.reconcile(t, "later")
	first := e.trigger.n
	for range 3 {
		e.ctrl.Planned(context.Background(), "ml/later", provisioning.Outcome{Reason: "no room"}, nil)
		e.reconcile(t, "later")
	}
	if e.trigger.n != first {
		t.Errorf("%d more provisioning passes started by a request that keeps waiting", e.trigger.n-first)
	}
	if len(e.ctrl.Demands()) != 1 {
		t.Error("the waiting request must stay a demand")
	}
}

type noTypes struct{}

func (noTypes) InstanceTypes(context.Context, *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	return nil, nil
}

// A request deleted while a pass plans it keeps no booking: nodes would
// look fuller than they are, and a later request of the same name would
// inherit it.
func TestRequestDeletedDuringAPassKeepsNoBooking(t *testing.T) {
	const class = provreqv1.ProvisioningClassBestEffortAtomicScaleUp
	e := newEnv(t, template("workers", "1"), request("job", class, podSet("workers", 2)))
	e.reconcile(t, "job")
	if len(e.ctrl.Demands()) != 1 {
		t.Fatal("want the request's demand")
	}
	e.cluster.UpdateNodePool(&v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}, Spec: v1.NodePoolSpec{
		Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: "aws.stowage.dev", Kind: "EC2NodeClass", Name: "default"}}}}})
	e.cluster.UpdateNode(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{
		Allocatable: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("8")}}})

	solve := provisioning.SolverFunc(func(ctx context.Context, snap *solver.Snapshot) (*solver.Plan, error) {
		// Meanwhile the requester deletes the request; its reconcile releases it.
		pr := e.get(t, "job")
		if err := e.c.Delete(ctx, pr); err != nil {
			t.Fatal(err)
		}
		e.reconcile(t, "job")
		plan := &solver.Plan{}
		for _, p := range snap.Pods {
			plan.Bindings = append(plan.Bindings, solver.Binding{Pod: p, NodeName: "n1"})
		}
		return plan, nil
	})
	prov := provisioning.NewController(provisioning.Deps{Client: e.c, Cluster: e.cluster, CloudProvider: noTypes{},
		Solver: solve, Clock: e.clock, Demands: e.ctrl})
	if _, err := prov.Schedule(context.Background(), provisioning.Window{Opened: start, Closed: start}); err != nil {
		t.Fatal(err)
	}
	if b := e.cluster.Booking("ml/job"); b != nil {
		t.Errorf("booking %v is held for ml/job, which was deleted and released; nothing will release it", b)
	}
	consumer := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "w",
		Annotations: map[string]string{provreqv1.ConsumeAnnotation: "job"}}}
	if e.cluster.IsBookedFor(consumer) {
		t.Errorf("a later pod consuming a request named ml/job is never planned while the leaked booking stands")
	}
}
