package solver

import (
	"maps"
	"slices"
	"sync"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// TypeCache keeps, across solves, how each pool buys each instance type:
// its labels, the offerings the pool allows, its allocatable less the
// DaemonSet overhead. Disruption solves the same pools and catalog for
// every what-if of a pass, and rebuilding that view was 45% of the
// controller's allocations while 300 nodes drifted. Entries are keyed by
// the NodePool and InstanceType objects themselves, so a cache must not
// outlive the objects it was filled from (disruption keeps one per pass),
// and it serves only snapshots with the DaemonSet pods it was made for.
// It also keeps each pod's requests and shape key: the what-ifs of a pass
// see the same bound pods again and again, and computing the keys was the
// next largest share. It is safe for concurrent use.
type TypeCache struct {
	daemons []*corev1.Pod
	mu      sync.Mutex
	types   map[typeKey]*poolType // nil: the pool cannot buy the type
	pods    map[*corev1.Pod]podShape
}

// podShape is what buildShapes reads from a pod before its gang.
type podShape struct {
	req scheduling.Resources
	key string
}

type typeKey struct {
	pool *v1.NodePool
	it   *cloudprovider.InstanceType
}

// NewTypeCache returns a cache for snapshots with these DaemonSet pods.
func NewTypeCache(daemons []*corev1.Pod) *TypeCache {
	c := newTypesOnlyCache(daemons)
	c.pods = map[*corev1.Pod]podShape{}
	return c
}

// newTypesOnlyCache returns a cache that keeps no pods, for solves of pod
// copies made per solve, which would only fill it.
func newTypesOnlyCache(daemons []*corev1.Pod) *TypeCache {
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

// podShape returns the pod's requests and shape key, remembered when c is
// not nil. Pods are keyed by pointer: the cluster's copies are never
// modified, only replaced. The requests' extended map is shared: a caller
// that keeps the requests copies it.
func (c *TypeCache) podShape(pod *corev1.Pod) (scheduling.Resources, string) {
	if c == nil || c.pods == nil {
		req := scheduling.PodRequests(pod)
		return req, shapeKey(pod, &req)
	}
	c.mu.Lock()
	ps, ok := c.pods[pod]
	c.mu.Unlock()
	if !ok {
		ps.req = scheduling.PodRequests(pod)
		ps.key = shapeKey(pod, &ps.req)
		c.mu.Lock()
		c.pods[pod] = ps
		c.mu.Unlock()
	}
	return ps.req, ps.key
}
