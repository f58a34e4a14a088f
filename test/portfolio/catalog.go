package portfolio

import (
	"context"
	"slices"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// PoolCatalog serves a price catalog's instance types, pre-filtered by each
// pool's single-key In requirements on instance-type labels (GPU name). The
// solver applies every requirement itself; this only keeps the replay fast.
type PoolCatalog struct{ Catalog *pricing.Catalog }

// InstanceTypes implements disruption.InstanceTyper.
func (c PoolCatalog) InstanceTypes(_ context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	var out []*cloudprovider.InstanceType
	for _, it := range c.Catalog.InstanceTypes {
		if it.GPU == nil {
			continue
		}
		ok := true
		for _, r := range pool.Spec.Template.Spec.Requirements {
			if val, has := it.Labels[r.Key]; has && r.Operator == "In" && !slices.Contains(r.Values, val) {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, it)
		}
	}
	return out, nil
}
