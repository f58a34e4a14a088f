package claims

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// DeleteWithGang deletes claim so provisioning re-plans its pods; termination
// then deletes whatever machine it has. A claim bought for a gang takes the
// gang's other claims that are still coming up with it: a gang missing a
// machine cannot run, so it is re-planned whole (another zone or type)
// rather than left half-built. The siblings go first, so a failure to
// delete one is retried with the claim still here to retry from. Siblings
// already Initialized are kept: they run pods (a gang of the same name
// from an earlier run, or the running members a lost pod's replacement
// joins).
func DeleteWithGang(ctx context.Context, c client.Client, claim *v1.NodeClaim) error {
	if gang := claim.Labels[v1.LabelGang]; gang != "" {
		siblings := &v1.NodeClaimList{}
		if err := c.List(ctx, siblings, client.MatchingLabels{v1.LabelGang: gang}); err != nil {
			return fmt.Errorf("listing the gang of nodeclaim %s: %w", claim.Name, err)
		}
		for i := range siblings.Items {
			s := &siblings.Items[i]
			if s.Name == claim.Name || !s.DeletionTimestamp.IsZero() || conditions.IsTrue(s.Status.Conditions, v1.ConditionInitialized) {
				continue
			}
			log.FromContext(ctx).Info("releasing the gang's other machine so the gang is re-planned whole",
				"gang", claim.Annotations[v1.AnnotationGang], "sibling", s.Name)
			if err := c.Delete(ctx, s); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("deleting nodeclaim %s of the gang of %s: %w", s.Name, claim.Name, err)
			}
		}
	}
	if err := c.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
	}
	return nil
}
