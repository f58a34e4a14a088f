package garbagecollection

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func claim(name, providerID string, launchedAt time.Time) *v1.NodeClaim {
	c := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodePool: "gpu"}},
		Spec:       v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{{InstanceType: "g5.xlarge", Zone: "a", CapacityType: "spot"}}},
		Status:     v1.NodeClaimStatus{ProviderID: providerID},
	}
	if !launchedAt.IsZero() {
		c.Status.Conditions = []metav1.Condition{{Type: v1.ConditionLaunched, Status: metav1.ConditionTrue,
			Reason: "Launched", LastTransitionTime: metav1.NewTime(launchedAt)}}
	}
	return c
}

func TestDeletesUnownedMachines(t *testing.T) {
	clk := clocktesting.NewFakeClock(start)
	cloud := cloudtest.New(clk)
	old := metav1.NewTime(start.Add(-3 * time.Minute))
	young := metav1.NewTime(start.Add(-time.Minute))

	ownedByID := cloud.AddInstance("recorded", old)
	orphanOld := cloud.AddInstance("gone", old)
	orphanYoung := cloud.AddInstance("gone-too", young)
	inFlight := cloud.AddInstance("launching", old)
	duplicate := cloud.AddInstance("recorded", old)
	noTimestamp := cloud.AddInstance("unknown-age", metav1.Time{})

	c := cloudtest.NewClientBuilder().WithObjects(
		claim("recorded", ownedByID, start.Add(-3*time.Minute)),
		claim("launching", "", time.Time{}),
	).Build()
	gc := NewController(Deps{Client: c, CloudProvider: cloud, Clock: clk, Recorder: events.NewFakeRecorder(10)})

	if err := gc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{orphanOld, duplicate}
	sort.Strings(want)
	got := cloud.Deleted()
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("first pass deleted (-want +got):\n%s", diff)
	}

	// A machine without a creation time gets its grace from when it was first seen.
	clk.Step(DefaultInstanceGrace)
	if err := gc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	got = cloud.Deleted()[2:]
	sort.Strings(got)
	want = []string{orphanYoung, noTimestamp}
	sort.Strings(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("second pass deleted (-want +got):\n%s", diff)
	}
	for _, id := range []string{ownedByID, inFlight} {
		if _, err := cloud.Get(context.Background(), id); err != nil {
			t.Errorf("owned machine %s must survive: %v", id, err)
		}
	}
}

func TestDeletesClaimsWhoseMachineIsGone(t *testing.T) {
	clk := clocktesting.NewFakeClock(start)
	cloud := cloudtest.New(clk)
	alive := cloud.AddInstance("alive", metav1.NewTime(start.Add(-time.Hour)))
	deleting := claim("deleting", "cloudtest://deleted-2", start.Add(-time.Hour))
	deleting.Finalizers = []string{v1.TerminationFinalizer}
	now := metav1.NewTime(start)
	deleting.DeletionTimestamp = &now

	c := cloudtest.NewClientBuilder().WithObjects(
		claim("alive", alive, start.Add(-time.Hour)),
		claim("vanished", "cloudtest://deleted-1", start.Add(-time.Hour)),
		claim("just-launched", "cloudtest://not-listed-yet", start.Add(-5*time.Second)),
		claim("not-launched", "", time.Time{}),
		deleting,
	).Build()
	gc := NewController(Deps{Client: c, CloudProvider: cloud, Clock: clk})
	if err := gc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, wantGone := range map[string]bool{"alive": false, "vanished": true, "just-launched": false, "not-launched": false} {
		err := c.Get(context.Background(), client.ObjectKey{Name: name}, &v1.NodeClaim{})
		if gone := apierrors.IsNotFound(err); gone != wantGone {
			t.Errorf("nodeclaim %s deleted = %v, want %v (err %v)", name, gone, wantGone, err)
		}
	}
}

func TestCloudErrorsKeepClaims(t *testing.T) {
	clk := clocktesting.NewFakeClock(start)
	cloud := cloudtest.New(clk)
	c := cloudtest.NewClientBuilder().WithObjects(claim("c1", "cloudtest://i-9", start.Add(-time.Hour))).Build()
	gc := NewController(Deps{Client: c, CloudProvider: cloud, Clock: clk})

	cloud.SetError("Get", errors.New("throttled"))
	if err := gc.Reconcile(context.Background()); err == nil {
		t.Fatal("a Get error must be reported")
	}
	cloud.SetError("Get", nil)
	cloud.SetError("List", errors.New("throttled"))
	if err := gc.Reconcile(context.Background()); err == nil {
		t.Fatal("a List error must be reported")
	}
	if err := c.Get(context.Background(), client.ObjectKey{Name: "c1"}, &v1.NodeClaim{}); err != nil {
		t.Fatalf("a claim may only be deleted when the cloud says its machine is gone: %v", err)
	}
}

// The loop runs a pass, then waits on the injected clock for the next.
func TestRunUsesClock(t *testing.T) {
	clk := clocktesting.NewFakeClock(start)
	cloud := cloudtest.New(clk)
	gc := NewController(Deps{Client: cloudtest.NewClientBuilder().Build(), CloudProvider: cloud, Clock: clk,
		Options: Options{Interval: time.Minute}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- gc.run(ctx) }()

	waitForWaiter(t, clk)
	if n := cloud.Calls("List"); n != 1 {
		t.Fatalf("List called %d times before the first tick, want 1", n)
	}
	clk.Step(time.Minute)
	waitForWaiter(t, clk)
	if n := cloud.Calls("List"); n != 2 {
		t.Fatalf("List called %d times after one tick, want 2", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// waitForWaiter blocks until the loop sleeps on the fake clock. It waits for
// an event, not for a duration; the test's own timeout bounds it.
func waitForWaiter(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
}

// A gang member whose machine vanished before the gang came up takes its
// siblings still coming up with it, as a failed launch does; a member
// already Initialized stays.
func TestVanishedGangMachineReleasesTheGangComingUp(t *testing.T) {
	clk := clocktesting.NewFakeClock(start)
	cloud := cloudtest.New(clk)
	born := metav1.NewTime(start.Add(-time.Minute))
	gang := func(c *v1.NodeClaim) *v1.NodeClaim {
		c.Labels[v1.LabelGang] = "train"
		c.Finalizers = []string{v1.TerminationFinalizer}
		return c
	}
	running := gang(claim("running", cloud.AddInstance("running", born), start.Add(-time.Minute)))
	conditions.Set(&running.Status.Conditions, clk, 1, v1.ConditionInitialized, metav1.ConditionTrue, "Initialized", "")
	c := cloudtest.NewClientBuilder().WithObjects(
		running,
		gang(claim("coming", cloud.AddInstance("coming", born), start.Add(-time.Minute))),
		gang(claim("vanished", "cloudtest://i-vanished", start.Add(-time.Minute))),
	).Build()
	gc := NewController(Deps{Client: c, CloudProvider: cloud, Clock: clk, Recorder: events.NewFakeRecorder(10)})
	if err := gc.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	for name, wantDeleted := range map[string]bool{"vanished": true, "coming": true, "running": false} {
		nc := &v1.NodeClaim{}
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, nc); err != nil {
			t.Fatal(err)
		}
		if deleted := !nc.DeletionTimestamp.IsZero(); deleted != wantDeleted {
			t.Errorf("nodeclaim %s deleted = %v, want %v", name, deleted, wantDeleted)
		}
	}
}
