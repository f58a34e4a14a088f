package solver

import (
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TypeCache keeps, across solves, how each pool buys each instance type:
// its labels, the offerings the pool allows, its allocatable less the
// DaemonSet overhead. Disruption solves the same pools and catalog for
// every what-if of a pass, and rebuilding that view was 45% of the
// controller's allocations while 300 nodes drifted. Entries are keyed by
// the NodePool and InstanceType objects themselves, so a cache must not
// outlive the objects it was filled from (disruption keeps one per pass),
// and it serves only snapshots with the DaemonSet pods it was made for.
// It is safe for concurrent use.
type TypeCache struct {
	daemons []*corev1.Pod
	mu      sync.Mutex
	types   map[typeKey]*poolType // nil: the pool cannot buy the type
}

type typeKey struct {
	pool *v1.NodePool
	it   *cloudprovider.InstanceType
}

// NewTypeCache returns a cache for snapshots with these DaemonSet pods.
func NewTypeCache(daemons []*corev1.Pod) *TypeCache {
	return &TypeCache{daemons: daemons, types: map[typeKey]*poolType{}}
}

// serves reports whether the cache may answer for a snapshot with these
// DaemonSet pods.
func (c *TypeCache) serves(daemons []*corev1.Pod) bool {
	return c != nil && slices.Equal(c.daemons, daemons)
}

// poolType is newPoolType, remembered. It returns a copy of the entry, with
// the parts a model changes (the extended allocatable trimUnrequested
// trims; the zone bits numberZones sets) its own.
func (c *TypeCache) poolType(it *cloudprovider.InstanceType, p *pool) *poolType {
	k := typeKey{pool: p.np.NodePool, it: it}
	c.mu.Lock()
	pt, ok := c.types[k]
	if !ok {
		pt = newPoolType(it, p, c.daemons)
		c.types[k] = pt
	}
	c.mu.Unlock()
	if pt == nil {
		return nil
	}
	cp := *pt
	cp.alloc.Ext = maps.Clone(pt.alloc.Ext)
	return &cp
}
