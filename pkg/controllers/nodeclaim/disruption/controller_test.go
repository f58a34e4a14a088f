package disruption

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// driftingCloud is a provider with a DriftChecker whose answer tests set.
type driftingCloud struct {
	*cloudtest.Provider
	reason cloudprovider.DriftReason
	err    error
	calls  int
}

func (d *driftingCloud) IsDrifted(context.Context, *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	d.calls++
	return d.reason, d.err
}

type fixture struct {
	t      *testing.T
	clock  *clocktesting.FakeClock
	client client.Client
	ctrl   *Controller
}

func newFixture(t *testing.T, cloud cloudprovider.CloudProvider) *fixture {
	clk := clocktesting.NewFakeClock(start)
	pool := &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: v1.NodePoolSpec{
			Template: v1.NodeClaimTemplate{
				ObjectMeta: v1.ObjectMeta{Labels: map[string]string{"team": "ml"}},
				Spec: v1.NodeClaimTemplateSpec{Requirements: []v1.NodeSelectorRequirementWithMinValues{
					{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot"}},
				}},
			},
			Disruption: v1.Disruption{ConsolidateAfter: v1.DurationOf(30 * time.Second)},
		},
	}
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-a", Labels: map[string]string{v1.LabelNodePool: "gpu", "team": "ml"},
			CreationTimestamp: metav1.NewTime(start.Add(-time.Minute))},
		Spec: v1.NodeClaimSpec{ExpireAfter: v1.DurationOf(time.Hour)},
		Status: v1.NodeClaimStatus{NodeName: "n-a", ProviderID: "fake://n-a", Conditions: []metav1.Condition{
			{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, LastTransitionTime: metav1.NewTime(start)},
		}},
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n-a", Labels: map[string]string{v1.LabelCapacityType: "spot", "team": "ml", v1.LabelNodeClaim: "gpu-a"}},
		Spec:       corev1.NodeSpec{ProviderID: "fake://n-a"},
	}
	c := cloudtest.NewClientBuilder().WithObjects(pool, claim, node).Build()
	return &fixture{t: t, clock: clk, client: c,
		ctrl: NewController(Deps{Client: c, CloudProvider: cloud, Clock: clk, Options: Options{DriftCheckInterval: 5 * time.Minute}})}
}

// reconcile runs one pass and returns the claim's True conditions by type (reason) and the requeue.
func (f *fixture) reconcile() (map[string]string, time.Duration) {
	f.t.Helper()
	claim := &v1.NodeClaim{}
	if err := f.client.Get(context.Background(), client.ObjectKey{Name: "gpu-a"}, claim); err != nil {
		f.t.Fatal(err)
	}
	res, err := f.ctrl.Reconcile(context.Background(), claim)
	if err != nil {
		f.t.Fatalf("Reconcile: %v", err)
	}
	if err := f.client.Get(context.Background(), client.ObjectKey{Name: "gpu-a"}, claim); err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for _, t := range []string{v1.ConditionDrifted, v1.ConditionExpired, v1.ConditionConsolidatable} {
		if conditions.IsTrue(claim.Status.Conditions, t) {
			out[t] = conditions.Get(claim.Status.Conditions, t).Reason
		}
	}
	return out, res.RequeueAfter
}

func TestConsolidatableAndExpired(t *testing.T) {
	f := newFixture(t, cloudtest.New(clocktesting.NewFakeClock(start)))
	got, requeue := f.reconcile()
	if len(got) != 0 {
		t.Fatalf("conditions at initialization = %v, want none", got)
	}
	if requeue != 30*time.Second {
		t.Errorf("requeue = %s, want 30s (consolidateAfter from initialization)", requeue)
	}

	f.clock.Step(30 * time.Second)
	if got, _ = f.reconcile(); got[v1.ConditionConsolidatable] != ReasonConsolidatable {
		t.Fatalf("conditions 30s after initialization = %v, want Consolidatable", got)
	}

	// A pod arrives: the wait starts again from there.
	claim := &v1.NodeClaim{}
	_ = f.client.Get(context.Background(), client.ObjectKey{Name: "gpu-a"}, claim)
	stored := claim.DeepCopy()
	claim.Status.LastPodEventTime = metav1.NewTime(f.clock.Now())
	if err := f.client.Status().Patch(context.Background(), claim, client.MergeFrom(stored)); err != nil {
		t.Fatal(err)
	}
	f.clock.Step(10 * time.Second)
	if got, requeue = f.reconcile(); got[v1.ConditionConsolidatable] != "" || requeue != 20*time.Second {
		t.Errorf("10s after a pod event: conditions %v, requeue %s; want not Consolidatable, 20s", got, requeue)
	}

	f.clock.Step(time.Hour)
	if got, _ = f.reconcile(); got[v1.ConditionExpired] != ReasonExpired || got[v1.ConditionConsolidatable] == "" {
		t.Errorf("an hour later: %v, want Expired and Consolidatable", got)
	}
}

func TestDrift(t *testing.T) {
	cloud := &driftingCloud{Provider: cloudtest.New(clocktesting.NewFakeClock(start))}
	f := newFixture(t, cloud)
	if got, _ := f.reconcile(); got[v1.ConditionDrifted] != "" {
		t.Fatalf("Drifted = %q before anything changed", got[v1.ConditionDrifted])
	}

	// The provider is asked at most once per DriftCheckInterval, however
	// often the claim is reconciled.
	cloud.reason = "ImageDrift"
	calls := cloud.calls
	if got, _ := f.reconcile(); got[v1.ConditionDrifted] != "" || cloud.calls != calls {
		t.Fatalf("Drifted = %q after %d more calls within the interval, want the last answer and no call", got[v1.ConditionDrifted], cloud.calls-calls)
	}
	f.clock.Step(5 * time.Minute)
	got, requeue := f.reconcile()
	if got[v1.ConditionDrifted] != "ImageDrift" {
		t.Errorf("Drifted = %q, want the provider's reason ImageDrift", got[v1.ConditionDrifted])
	}
	if requeue != 5*time.Minute {
		t.Errorf("requeue = %s, want the drift recheck in 5m", requeue)
	}

	// A provider that cannot read the node class neither clears nor invents drift.
	cloud.reason, cloud.err = "", errors.New("node class not found")
	f.clock.Step(5 * time.Minute)
	if got, _ := f.reconcile(); got[v1.ConditionDrifted] != "ImageDrift" {
		t.Errorf("after a drift check error Drifted = %q, want it kept", got[v1.ConditionDrifted])
	}

	// Pool drift wins over cloud drift and needs no provider call.
	pool := &v1.NodePool{}
	_ = f.client.Get(context.Background(), client.ObjectKey{Name: "gpu"}, pool)
	pool.Spec.Template.Spec.Requirements[0].Values = []string{"on-demand"}
	if err := f.client.Update(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	calls = cloud.calls
	if got, _ := f.reconcile(); got[v1.ConditionDrifted] != ReasonRequirementsDrifted {
		t.Errorf("Drifted = %q after the pool's requirements changed, want %s", got[v1.ConditionDrifted], ReasonRequirementsDrifted)
	}
	if cloud.calls != calls {
		t.Error("the provider was asked about drift the pool already explains")
	}

	// Back in line with the pool and the cloud: no longer drifted.
	pool.Spec.Template.Spec.Requirements[0].Values = []string{"spot"}
	if err := f.client.Update(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	cloud.err = nil
	f.clock.Step(5 * time.Minute)
	if got, _ := f.reconcile(); got[v1.ConditionDrifted] != "" {
		t.Errorf("Drifted = %q once nothing differs, want removed", got[v1.ConditionDrifted])
	}
}

// Without a DriftChecker there is no cloud drift, only pool drift.
func TestNoDriftCheckerNoCloudDrift(t *testing.T) {
	f := newFixture(t, cloudtest.New(clocktesting.NewFakeClock(start)))
	if f.ctrl.drift != nil {
		t.Fatal("a provider without IsDrifted got a drift checker")
	}
	if got, requeue := f.reconcile(); got[v1.ConditionDrifted] != "" || requeue != 30*time.Second {
		t.Errorf("got %v, requeue %s; want no drift and no drift polling", got, requeue)
	}
}
