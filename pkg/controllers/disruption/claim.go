package disruption

import (
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
)

// ReplacementClaim is the NodeClaim for one planned replacement machine of
// pool, carrying the lineage of the first candidate it replaces.
func ReplacementClaim(pool *v1.NodePool, n *solver.NewNode, replaces *v1.NodeClaim, now time.Time) (*v1.NodeClaim, error) {
	claim, err := claims.FromPlan(pool, n)
	if err != nil {
		return nil, err
	}
	if replaces != nil {
		lineage := replaces.Annotations[AnnotationLineage]
		if lineage == "" {
			lineage = replaces.Name
		}
		if claim.Annotations == nil {
			claim.Annotations = map[string]string{}
		}
		claim.Annotations[AnnotationLineage] = lineage
		claim.Annotations[AnnotationReplacedAt] = now.UTC().Format(time.RFC3339)
	}
	return claim, nil
}
