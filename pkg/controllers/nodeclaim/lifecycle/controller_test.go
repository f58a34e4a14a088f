package lifecycle

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type env struct {
	client client.Client
	clock  *clocktesting.FakeClock
	cloud  *cloudtest.Provider
	events *events.FakeRecorder
	ctrl   *Controller
}

// testPools are the NodePools the test claims belong to.
func testPools() []client.Object {
	var out []client.Object
	for _, name := range []string{"gpu", "effects-test"} {
		out = append(out, &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)}})
	}
	return out
}

func newEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	clk := clocktesting.NewFakeClock(start)
	e := &env{
		client: cloudtest.NewClientBuilder().WithObjects(append(testPools(), objs...)...).Build(),
		clock:  clk,
		cloud:  cloudtest.New(clk),
		events: events.NewFakeRecorder(100),
	}
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: clk, Recorder: e.events})
	return e
}

// reconcile runs one pass on the stored claim.
func (e *env) reconcile(t *testing.T, name string) (reconcile.Result, error) {
	t.Helper()
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: name}, claim); err != nil {
		t.Fatalf("getting nodeclaim %s: %v", name, err)
	}
	return e.ctrl.Reconcile(context.Background(), claim)
}

func (e *env) claim(t *testing.T, name string) *v1.NodeClaim {
	t.Helper()
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: name}, claim); err != nil {
		t.Fatalf("getting nodeclaim %s: %v", name, err)
	}
	return claim
}

func (e *env) node(t *testing.T, name string) *corev1.Node {
	t.Helper()
	node := &corev1.Node{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: name}, node); err != nil {
		t.Fatalf("getting node %s: %v", name, err)
	}
	return node
}

func offering(it, zone, ct string) v1.OfferingChoice {
	return v1.OfferingChoice{InstanceType: it, Zone: zone, CapacityType: ct, PricePerHour: "1.5"}
}

func newClaim(name string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: "uid-" + types.UID(name),
			Labels: map[string]string{v1.LabelNodePool: "gpu", "team": "ml"}},
		Spec: v1.NodeClaimSpec{Offerings: offerings},
	}
}

func conditionStatuses(claim *v1.NodeClaim) map[string]string {
	out := map[string]string{}
	for _, c := range claim.Status.Conditions {
		out[c.Type] = string(c.Status) + "/" + c.Reason
	}
	return out
}

func TestLaunch(t *testing.T) {
	a := offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)
	b := offering("g5.xlarge", "zone-b", v1.CapacityTypeSpot)
	c := offering("g5.2xlarge", "zone-a", v1.CapacityTypeOnDemand)
	tests := []struct {
		name        string
		noCapacity  []v1.OfferingChoice
		firstOnly   bool
		wantStatus  v1.NodeClaimStatus
		wantConds   map[string]string
		wantCreates int
	}{
		{
			name: "first offering",
			wantStatus: v1.NodeClaimStatus{ProviderID: "cloudtest://i-0001", InstanceType: "g5.xlarge", Zone: "zone-a",
				CapacityType: "spot", PricePerHour: "1.5", ImageID: "image-1"},
			wantConds: map[string]string{"Launched": "True/Launched", "Registered": "Unknown/AwaitingNode",
				"Ready": "False/NotRegistered"},
			wantCreates: 1,
		},
		{
			name:       "falls back past offerings without capacity",
			noCapacity: []v1.OfferingChoice{a, b},
			wantStatus: v1.NodeClaimStatus{ProviderID: "cloudtest://i-0001", InstanceType: "g5.2xlarge", Zone: "zone-a",
				CapacityType: "on-demand", PricePerHour: "1.5", ImageID: "image-1",
				UnavailableOfferings: []string{"g5.xlarge/zone-a/spot", "g5.xlarge/zone-b/spot"}},
			wantConds: map[string]string{"Launched": "True/Launched", "Registered": "Unknown/AwaitingNode",
				"Ready": "False/NotRegistered"},
			wantCreates: 1,
		},
		{
			name:       "provider that tries one offering per call",
			noCapacity: []v1.OfferingChoice{a, b},
			firstOnly:  true,
			wantStatus: v1.NodeClaimStatus{ProviderID: "cloudtest://i-0001", InstanceType: "g5.2xlarge", Zone: "zone-a",
				CapacityType: "on-demand", PricePerHour: "1.5", ImageID: "image-1",
				UnavailableOfferings: []string{"g5.xlarge/zone-a/spot", "g5.xlarge/zone-b/spot"}},
			wantConds: map[string]string{"Launched": "True/Launched", "Registered": "Unknown/AwaitingNode",
				"Ready": "False/NotRegistered"},
			wantCreates: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, newClaim("c1", a, b, c))
			if tt.firstOnly {
				e.cloud.TryFirstOfferingOnly()
			}
			for _, o := range tt.noCapacity {
				e.cloud.SetNoCapacity(cloudprovider.ChoiceID(o))
			}
			if _, err := e.reconcile(t, "c1"); err != nil {
				t.Fatalf("reconcile: %v", err)
			}
			got := e.claim(t, "c1")
			if len(got.Finalizers) != 1 || got.Finalizers[0] != v1.TerminationFinalizer {
				t.Errorf("finalizers = %v, want the termination finalizer", got.Finalizers)
			}
			status := got.Status.DeepCopy()
			status.Conditions, status.Capacity, status.Allocatable = nil, nil, nil
			if diff := cmp.Diff(tt.wantStatus, *status); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantConds, conditionStatuses(got)); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if got.Status.Allocatable.Cpu().IsZero() {
				t.Error("allocatable must be copied from the launched machine")
			}
			if n := e.cloud.Calls("Create"); n != tt.wantCreates {
				t.Errorf("Create called %d times, want %d", n, tt.wantCreates)
			}
		})
	}
}

func TestLaunchAllOfferingsOutOfCapacityDeletesClaim(t *testing.T) {
	a := offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)
	b := offering("g5.xlarge", "zone-b", v1.CapacityTypeSpot)
	e := newEnv(t, newClaim("c1", a, b))
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a), cloudprovider.ChoiceID(b))

	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	got := e.claim(t, "c1") // the finalizer keeps it until termination runs
	if got.DeletionTimestamp.IsZero() {
		t.Fatal("a claim no offering can hold must be deleted so provisioning re-plans")
	}
	if len(e.cloud.Deleted())+mustList(t, e.cloud) != 0 {
		t.Fatal("no machine may have been launched")
	}
	assertEvent(t, e.events, reasonInsufficientCapacity)
}

func TestLaunchMarksSharedUnavailableCache(t *testing.T) {
	a := offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)
	b := offering("g5.xlarge", "zone-b", v1.CapacityTypeSpot)
	e := newEnv(t, newClaim("c1", a, b))
	cache := cloudprovider.NewUnavailableOfferings(e.clock, time.Minute)
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: e.clock, Recorder: e.events, Unavailable: cache})
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a))
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if !cache.IsUnavailable(cloudprovider.ChoiceID(a)) || cache.IsUnavailable(cloudprovider.ChoiceID(b)) {
		t.Fatal("only the offering that failed may be marked unavailable")
	}
}

func TestLaunchErrorSetsConditionAndRetries(t *testing.T) {
	e := newEnv(t, newClaim("c1", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)))
	e.cloud.SetError("Create", errors.New("throttled"))
	if _, err := e.reconcile(t, "c1"); err == nil {
		t.Fatal("a launch error must be returned so the claim is retried with backoff")
	}
	got := e.claim(t, "c1")
	cond := conditions.Get(got.Status.Conditions, v1.ConditionLaunched)
	if cond == nil || cond.Status != metav1.ConditionFalse || cond.Reason != launchedReasonFailed || cond.Message != "throttled" {
		t.Fatalf("Launched = %+v, want False/LaunchFailed with the error", cond)
	}
	if !got.DeletionTimestamp.IsZero() {
		t.Fatal("an ordinary launch error must not delete the claim")
	}
	e.cloud.SetError("Create", nil)
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !conditions.IsTrue(e.claim(t, "c1").Status.Conditions, v1.ConditionLaunched) {
		t.Fatal("the retry must launch")
	}
}

// A crash after Create but before the status patch must not buy a second
// machine: the retried Create returns the first one.
func TestLaunchAfterCrashReusesMachine(t *testing.T) {
	claim := newClaim("c1", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot))
	e := newEnv(t, claim)
	first, err := e.cloud.Create(context.Background(), claim)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if got := e.claim(t, "c1").Status.ProviderID; got != first.Status.ProviderID {
		t.Fatalf("providerID = %s, want the machine launched before the crash %s", got, first.Status.ProviderID)
	}
	if n := mustList(t, e.cloud); n != 1 {
		t.Fatalf("%d machines exist, want 1", n)
	}
}

func TestDeletingClaimIsNotLaunched(t *testing.T) {
	claim := newClaim("c1", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot))
	claim.Finalizers = []string{v1.TerminationFinalizer}
	now := metav1.NewTime(start)
	claim.DeletionTimestamp = &now
	e := newEnv(t, claim)
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatal(err)
	}
	if n := e.cloud.Calls("Create"); n != 0 {
		t.Fatalf("Create called %d times on a deleting claim", n)
	}
}

func mustList(t *testing.T, p *cloudtest.Provider) int {
	t.Helper()
	l, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

func assertEvent(t *testing.T, r *events.FakeRecorder, reason string) {
	t.Helper()
	for {
		select {
		case ev := <-r.Events:
			if strings.Contains(ev, reason) {
				return
			}
		default:
			t.Fatalf("no %s event recorded", reason)
		}
	}
}

// A provider that walks its list and marks the shared cache, without
// reporting what it skipped, still gets the skipped offerings recorded.
func TestLaunchRecordsOfferingsSkippedViaSharedCache(t *testing.T) {
	a := offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)
	b := offering("g5.xlarge", "zone-b", v1.CapacityTypeSpot)
	c := offering("g5.xlarge", "zone-c", v1.CapacityTypeSpot)
	e := newEnv(t, newClaim("c1", a, b, c))
	cache := cloudprovider.NewUnavailableOfferings(e.clock, time.Minute)
	cache.MarkUnavailable(cloudprovider.ChoiceID(a), cloudprovider.ChoiceID(c))
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a))
	e.cloud.SetCapacity("g5.xlarge", nil)
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: silentProvider{e.cloud}, Clock: e.clock, Unavailable: cache})
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	got := e.claim(t, "c1").Status
	if got.Zone != "zone-b" {
		t.Fatalf("launched in %s, want zone-b", got.Zone)
	}
	// c is in the cache but was never reached: it must not be recorded.
	if diff := cmp.Diff([]string{"g5.xlarge/zone-a/spot"}, got.UnavailableOfferings); diff != "" {
		t.Errorf("unavailableOfferings (-want +got):\n%s", diff)
	}
}

// silentProvider drops the skipped offerings a provider reports.
type silentProvider struct{ *cloudtest.Provider }

func (s silentProvider) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	out, err := s.Provider.Create(ctx, claim)
	if out != nil {
		out.Status.UnavailableOfferings = nil
	}
	return out, err
}

// cachingProvider exposes its unavailable-offerings cache, as the fake cloud does.
type cachingProvider struct {
	*cloudtest.Provider
	cache *cloudprovider.UnavailableOfferings
}

func (p cachingProvider) Unavailable() *cloudprovider.UnavailableOfferings { return p.cache }

func TestLaunchUsesProviderCacheWhenNoneGiven(t *testing.T) {
	a := offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)
	b := offering("g5.xlarge", "zone-b", v1.CapacityTypeSpot)
	e := newEnv(t, newClaim("c1", a, b))
	cache := cloudprovider.NewUnavailableOfferings(e.clock, time.Minute)
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: cachingProvider{e.cloud, cache}, Clock: e.clock})
	e.cloud.TryFirstOfferingOnly()
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a))
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if !cache.IsUnavailable(cloudprovider.ChoiceID(a)) {
		t.Fatal("the provider's cache must learn about the offering without capacity")
	}
}

func TestLaunchRejectsClaimWithoutOfferings(t *testing.T) {
	e := newEnv(t, newClaim("c1"))
	if _, err := e.reconcile(t, "c1"); !errors.Is(err, reconcile.TerminalError(nil)) {
		t.Fatalf("err = %v, want a terminal error", err)
	}
	got := e.claim(t, "c1")
	if !got.DeletionTimestamp.IsZero() || e.cloud.Calls("Create") != 0 {
		t.Fatal("an invalid claim must be neither deleted nor launched")
	}
	if c := conditions.Get(got.Status.Conditions, v1.ConditionLaunched); c == nil || c.Reason != launchedReasonInvalid ||
		!strings.Contains(c.Message, "spec.offerings") {
		t.Fatalf("Launched = %+v, want InvalidSpec naming spec.offerings", c)
	}
}

// A claim that cannot launch at all is given up after the registration
// timeout, counted from the first failure, so its pods are planned again.
func TestLaunchKeepsFailingDeletesClaim(t *testing.T) {
	e := newEnv(t, newClaim("c1", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)))
	e.cloud.SetError("Create", errors.New("image not found"))
	for _, step := range []time.Duration{0, DefaultRegistrationTimeout - time.Second} {
		e.clock.Step(step)
		if _, err := e.reconcile(t, "c1"); err == nil {
			t.Fatal("launch error must be returned")
		}
		if !e.claim(t, "c1").DeletionTimestamp.IsZero() {
			t.Fatalf("claim deleted %v after the first failure, before the timeout", step)
		}
	}
	e.clock.Step(time.Second)
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("giving up is not an error: %v", err)
	}
	if e.claim(t, "c1").DeletionTimestamp.IsZero() {
		t.Fatal("claim must be deleted once launches failed for the whole timeout")
	}
	assertEvent(t, e.events, reasonLaunchTimeout)
}

// A claim made before claims were owned by their pool gets the owner
// reference; one whose pool does not exist (made by hand) is left alone.
func TestAdoptByNodePool(t *testing.T) {
	owned := newClaim("old", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot))
	orphan := newClaim("orphan", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot))
	orphan.Labels[v1.LabelNodePool] = "deleted-pool"
	e := newEnv(t, owned, orphan)

	if _, err := e.reconcile(t, "old"); err != nil {
		t.Fatal(err)
	}
	want := []metav1.OwnerReference{{APIVersion: "stowage.dev/v1", Kind: "NodePool", Name: "gpu", UID: "uid-gpu"}}
	if diff := cmp.Diff(want, e.claim(t, "old").OwnerReferences); diff != "" {
		t.Errorf("owner references (-want +got):\n%s", diff)
	}

	if _, err := e.reconcile(t, "orphan"); err != nil {
		t.Fatal(err)
	}
	got := e.claim(t, "orphan")
	if got.DeletionTimestamp != nil || len(got.OwnerReferences) != 0 {
		t.Errorf("a claim without a pool was changed: owners %v, deleting %v", got.OwnerReferences, got.DeletionTimestamp)
	}
	if e.cloud.Calls("Create") != 2 {
		t.Errorf("Create called %d times, want 2", e.cloud.Calls("Create"))
	}
}

// hangingProvider's Create never answers until its context ends, as a cloud
// call stuck on a dead connection would.
type hangingProvider struct{ *cloudtest.Provider }

func (hangingProvider) Create(ctx context.Context, _ *v1.NodeClaim) (*v1.NodeClaim, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A Create that never returns is cut at the deadline, so the worker is free
// and the claim says why; the retry launches.
func TestLaunchCallHasADeadline(t *testing.T) {
	e := newEnv(t, newClaim("c1", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot)))
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: hangingProvider{e.cloud}, Clock: e.clock,
		Options: Options{CreateTimeout: 50 * time.Millisecond}})
	if _, err := e.reconcile(t, "c1"); err == nil {
		t.Fatal("a launch cut at its deadline must be returned so the claim is retried")
	}
	cond := conditions.Get(e.claim(t, "c1").Status.Conditions, v1.ConditionLaunched)
	if cond == nil || cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, "no answer from the cloud provider within 50ms") {
		t.Fatalf("Launched = %+v, want False saying the provider did not answer in time", cond)
	}
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: e.clock})
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	if !conditions.IsTrue(e.claim(t, "c1").Status.Conditions, v1.ConditionLaunched) {
		t.Fatal("the retry must launch")
	}
}
