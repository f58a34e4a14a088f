package lifecycle

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// A launch whose status patch conflicts must not be counted: the next
// reconcile redoes the step (the provider's Create is idempotent) and counts
// it then, so one machine is counted exactly once.
func TestLaunchCountedOnlyOnceStatusIsStored(t *testing.T) {
	claim := newClaim("conflict", offering("g5.xlarge", "zone-a", v1.CapacityTypeSpot))
	claim.Labels[v1.LabelNodePool] = "effects-test"
	conflicts := 1
	e := newEnv(t)
	e.client = cloudtest.NewClientBuilder().WithObjects(append(testPools(), claim)...).WithInterceptorFuncs(interceptor.Funcs{
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, p client.Patch, opts ...client.SubResourcePatchOption) error {
			if sub == "status" && conflicts > 0 {
				conflicts--
				return apierrors.NewConflict(schema.GroupResource{Group: v1.Group, Resource: "nodeclaims"}, obj.GetName(), nil)
			}
			return c.SubResource(sub).Patch(ctx, obj, p, opts...)
		},
	}).Build()
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: e.clock, Recorder: e.events})
	launched := launchedTotal.WithLabelValues("effects-test", v1.CapacityTypeSpot)
	before := testutil.ToFloat64(launched)

	// A conflict is expected when controllers share a claim: requeued soon,
	// without an error (and its stack trace) in the log.
	if res, err := e.reconcile(t, "conflict"); err != nil || res.RequeueAfter <= 0 {
		t.Fatalf("the conflicting status patch must requeue the claim quietly, got %+v, %v", res, err)
	}
	if got := testutil.ToFloat64(launched) - before; got != 0 {
		t.Fatalf("launch counted %v times before its status was stored, want 0", got)
	}
	if _, err := e.reconcile(t, "conflict"); err != nil {
		t.Fatalf("second reconcile: %v", err)
	}
	if got := testutil.ToFloat64(launched) - before; got != 1 {
		t.Fatalf("launch counted %v times, want exactly 1", got)
	}
	if !conditions.IsTrue(e.claim(t, "conflict").Status.Conditions, v1.ConditionLaunched) {
		t.Fatal("claim must be Launched after the retried reconcile")
	}
}
