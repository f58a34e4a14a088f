package lifecycle

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
)

// adopt makes a claim owned by its NodePool, so that deleting the pool
// deletes its claims (and termination drains their nodes). Claims are
// created with the owner reference; this covers those created before that.
// A claim whose pool does not exist is left alone: someone made it by hand,
// and what it runs is theirs to decide.
func (c *Controller) adopt(ctx context.Context, claim *v1.NodeClaim) error {
	poolName := claim.Labels[v1.LabelNodePool]
	if poolName == "" || ownedByPool(claim) {
		return nil
	}
	pool := &v1.NodePool{}
	if err := c.client.Get(ctx, client.ObjectKey{Name: poolName}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("getting nodepool %s of nodeclaim %s: %w", poolName, claim.Name, err)
	}
	stored := claim.DeepCopy()
	claim.OwnerReferences = append(claim.OwnerReferences, claims.PoolOwner(pool)...)
	if err := c.client.Patch(ctx, claim, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("making nodepool %s the owner of nodeclaim %s: %w", poolName, claim.Name, err))
	}
	log.FromContext(ctx).V(1).Info("nodepool adopted its nodeclaim", "nodepool", poolName)
	return nil
}

func ownedByPool(claim *v1.NodeClaim) bool {
	for _, ref := range claim.OwnerReferences {
		if ref.Kind == "NodePool" && ref.APIVersion == v1.SchemeGroupVersion.String() {
			return true
		}
	}
	return false
}
