package lifecycle

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// readiness owns the Ready condition: the conjunction of the lifecycle's
// conditions, naming the first one that is not yet True.
type readiness struct{ clock clock.Clock }

func (r *readiness) reconcile(_ context.Context, claim *v1.NodeClaim) (reconcile.Result, bool, error) {
	for _, t := range []string{v1.ConditionLaunched, v1.ConditionRegistered, v1.ConditionInitialized} {
		if !conditions.IsTrue(claim.Status.Conditions, t) {
			conditions.Set(&claim.Status.Conditions, r.clock, claim.Generation, v1.ConditionReady,
				metav1.ConditionFalse, "Not"+t, t+" is not True")
			return reconcile.Result{}, false, nil
		}
	}
	conditions.Set(&claim.Status.Conditions, r.clock, claim.Generation, v1.ConditionReady, metav1.ConditionTrue, "Ready", "")
	return reconcile.Result{}, false, nil
}
