package lifecycle

import (
	"context"
	"errors"
	"testing"

	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

func gangClaim(name, gang string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	c := newClaim(name, offerings...)
	c.Labels[v1.LabelGang] = gang
	c.Annotations = map[string]string{v1.AnnotationGang: "ml/" + gang}
	return c
}

// A gang member that no offering can hold releases the whole gang, launched
// members included, so provisioning re-plans it whole elsewhere; other gangs
// and ordinary claims are left alone.
func TestGangMemberOutOfCapacityReleasesTheGang(t *testing.T) {
	a := offering("p5.48xlarge", "zone-a", v1.CapacityTypeOnDemand)
	e := newEnv(t,
		gangClaim("m1", "train", a), gangClaim("m2", "train", a),
		gangClaim("other", "serve", a), newClaim("plain", a))
	for _, name := range []string{"m1", "other", "plain"} {
		if _, err := e.reconcile(t, name); err != nil {
			t.Fatalf("reconcile %s: %v", name, err)
		}
	}
	if !e.claim(t, "m1").DeletionTimestamp.IsZero() {
		t.Fatal("m1 launched; nothing should be released yet")
	}
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a))
	if _, err := e.reconcile(t, "m2"); err != nil {
		t.Fatalf("reconcile m2: %v", err)
	}
	for name, wantDeleted := range map[string]bool{"m1": true, "m2": true, "other": false, "plain": false} {
		if deleted := !e.claim(t, name).DeletionTimestamp.IsZero(); deleted != wantDeleted {
			t.Errorf("claim %s deleted = %v, want %v", name, deleted, wantDeleted)
		}
	}
}

// A failure to delete one sibling is retried: the claim that failed to
// launch is deleted last, so its next reconcile releases the rest.
func TestGangSiblingDeleteFailureIsRetried(t *testing.T) {
	a := offering("p5.48xlarge", "zone-a", v1.CapacityTypeOnDemand)
	var failed bool
	clk := clocktesting.NewFakeClock(start)
	c := cloudtest.NewClientBuilder().WithObjects(append(testPools(), gangClaim("m1", "train", a), gangClaim("m2", "train", a))...).
		WithInterceptorFuncs(interceptor.Funcs{
			Delete: func(ctx context.Context, cl client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
				if obj.GetName() == "m1" && !failed {
					failed = true
					return errors.New("injected: the API server timed out")
				}
				return cl.Delete(ctx, obj, opts...)
			},
		}).Build()
	e := &env{client: c, clock: clk, cloud: cloudtest.New(clk), events: events.NewFakeRecorder(100)}
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: clk, Recorder: e.events})
	if _, err := e.reconcile(t, "m1"); err != nil {
		t.Fatalf("launch m1: %v", err)
	}
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a))
	if _, err := e.reconcile(t, "m2"); err == nil {
		t.Fatal("the injected failure must be returned for a retry")
	}
	if _, err := e.reconcile(t, "m2"); err != nil {
		t.Fatalf("retry: %v", err)
	}
	for _, name := range []string{"m1", "m2"} {
		if e.claim(t, name).DeletionTimestamp.IsZero() {
			t.Errorf("%s not released after the retry", name)
		}
	}
}

// A gang claim that fails releases only its siblings still coming up: an
// Initialized claim of the same gang name (an earlier run, or the running
// members a lost pod's replacement joins) runs pods and stays.
func TestGangReleaseKeepsInitializedMembers(t *testing.T) {
	a := offering("p5.48xlarge", "zone-a", v1.CapacityTypeOnDemand)
	running := gangClaim("running", "train", a)
	running.Finalizers = []string{v1.TerminationFinalizer}
	running.Status.ProviderID = "cloudtest://running"
	for _, typ := range []string{v1.ConditionLaunched, v1.ConditionRegistered, v1.ConditionInitialized, v1.ConditionReady} {
		conditions.Set(&running.Status.Conditions, clocktesting.NewFakeClock(start), 1, typ, "True", typ, "")
	}
	coming := gangClaim("coming", "train", a)
	coming.Finalizers = []string{v1.TerminationFinalizer}
	e := newEnv(t, running, coming, gangClaim("new", "train", a))
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a))
	if _, err := e.reconcile(t, "new"); err != nil {
		t.Fatalf("reconcile new: %v", err)
	}
	for name, wantDeleted := range map[string]bool{"running": false, "coming": true, "new": true} {
		if deleted := !e.claim(t, name).DeletionTimestamp.IsZero(); deleted != wantDeleted {
			t.Errorf("claim %s deleted = %v, want %v", name, deleted, wantDeleted)
		}
	}
}
