// Package state is Stowage's in-memory view of the cluster: Nodes, Pods,
// NodeClaims and NodePools as the manager's informers last saw them, plus the
// pods the provisioner has planned onto machines that are still launching.
//
// Provisioning (and later disruption) read it to build a solver.Snapshot in
// which in-flight NodeClaims already count as nodes, so a pod whose machine is
// on its way is never bought twice and NodePool limits include capacity that
// has been decided but not yet delivered.
package state

import (
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// DefaultNominationTTL is how long a nomination lasts once its target node is
// initialized (or since it was made, for nodes that already were). While the
// target is still launching the nomination holds, so a GPU node that takes
// minutes to boot does not cause a second purchase.
const DefaultNominationTTL = 30 * time.Second

// Cluster is a thread-safe view of the cluster. Feed it with the Update and
// Delete methods (Register wires them to a manager's informers) and read it
// with Nodes, NodePools, Usage and IsNominated. Objects handed in are
// treated as read-only and never mutated.
type Cluster struct {
	clock         clock.Clock
	nominationTTL time.Duration

	mu sync.RWMutex
	// nodes by name.
	nodes map[string]*corev1.Node
	// pods by namespace/name, and the keys of those bound to each node.
	pods       map[types.NamespacedName]*corev1.Pod
	podsByNode map[string]map[types.NamespacedName]struct{}
	// claims and pools by name.
	claims map[string]*v1.NodeClaim
	pools  map[string]*v1.NodePool
	// invalidPools names the pools pkg/validation rejects.
	invalidPools map[string]bool
	// nominations by pod UID, and the UIDs nominated to each target.
	nominations map[types.UID]nomination
	byTarget    map[string]map[types.UID]struct{}
	// Indexes that join claims and nodes, kept up to date on every update so
	// that no lookup walks every node: a pass over thousands of pending pods
	// used to rebuild the claim-to-node map once per pod.
	nodeByProviderID  map[string]string // node spec.providerID -> node name
	nodeByClaimLabel  map[string]string // node's stowage.dev/nodeclaim label -> node name
	claimByProviderID map[string]string // claim status.providerID -> claim name
	claimByNodeName   map[string]string // claim status.nodeName -> claim name
	// takingPodsSince is when each node began to take pods (see takesPods).
	takingPodsSince map[string]time.Time
	// bookings by owner (a ProvisioningRequest's namespace/name).
	bookings map[string]*booking
	// deletedClaims remembers the UIDs of claims recently deleted, so a copy
	// recorded after its delete event (the provisioner's, right after its
	// create) does not bring the claim back.
	deletedClaims map[string]tombstone

	synced func() bool
}

type tombstone struct {
	uid types.UID
	at  time.Time
}

// tombstoneTTL bounds how long a deleted claim's UID is remembered: far
// longer than a create call's answer can lag its delete event.
const tombstoneTTL = 10 * time.Minute

type nomination struct {
	pod    types.NamespacedName
	target string // a NodeClaim name, or a Node name for existing nodes
	at     time.Time
}

// Option configures a Cluster.
type Option func(*Cluster)

// WithNominationTTL overrides DefaultNominationTTL.
func WithNominationTTL(d time.Duration) Option { return func(c *Cluster) { c.nominationTTL = d } }

// WithSynced makes Synced report f(), for views fed by something other than
// Register.
func WithSynced(f func() bool) Option { return func(c *Cluster) { c.synced = f } }

// NewCluster returns an empty view that reads time from clk.
func NewCluster(clk clock.Clock, opts ...Option) *Cluster {
	c := &Cluster{
		clock:         clk,
		nominationTTL: DefaultNominationTTL,
		nodes:         map[string]*corev1.Node{},
		pods:          map[types.NamespacedName]*corev1.Pod{},
		podsByNode:    map[string]map[types.NamespacedName]struct{}{},
		claims:        map[string]*v1.NodeClaim{},
		pools:         map[string]*v1.NodePool{},
		invalidPools:  map[string]bool{},
		nominations:   map[types.UID]nomination{},
		byTarget:      map[string]map[types.UID]struct{}{},

		nodeByProviderID:  map[string]string{},
		nodeByClaimLabel:  map[string]string{},
		claimByProviderID: map[string]string{},
		claimByNodeName:   map[string]string{},
		takingPodsSince:   map[string]time.Time{},
		bookings:          map[string]*booking{},
	}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Synced reports whether the informers feeding the view have delivered their
// initial lists. Deciding before that would miss existing capacity and buy it again.
func (c *Cluster) Synced() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.synced == nil || c.synced()
}

// UpdateNode records a Node's latest state.
func (c *Cluster) UpdateNode(node *corev1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.nodes[node.Name]; old != nil {
		c.unindexNodeLocked(old)
	}
	c.nodes[node.Name] = node
	setIndex(c.nodeByProviderID, node.Spec.ProviderID, node.Name)
	setIndex(c.nodeByClaimLabel, node.Labels[v1.LabelNodeClaim], node.Name)
	if !takesPods(node) {
		delete(c.takingPodsSince, node.Name)
	} else if _, ok := c.takingPodsSince[node.Name]; !ok {
		c.takingPodsSince[node.Name] = c.clock.Now()
	}
}

// takesPods reports whether the scheduler may place pods on a node now:
// Ready, schedulable, released by Stowage and without readiness taints.
func takesPods(node *corev1.Node) bool {
	if node.Spec.Unschedulable || !nodeReady(node) {
		return false
	}
	for _, t := range node.Spec.Taints {
		switch t.Key {
		case v1.UnregisteredTaintKey, corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable:
			return false
		}
	}
	return true
}

// DeleteNode forgets a Node.
func (c *Cluster) DeleteNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.nodes[name]; old != nil {
		c.unindexNodeLocked(old)
	}
	delete(c.nodes, name)
	delete(c.takingPodsSince, name)
}

func (c *Cluster) unindexNodeLocked(n *corev1.Node) {
	unsetIndex(c.nodeByProviderID, n.Spec.ProviderID, n.Name)
	unsetIndex(c.nodeByClaimLabel, n.Labels[v1.LabelNodeClaim], n.Name)
}

// setIndex maps key to value; an empty key is not indexed.
func setIndex(m map[string]string, key, value string) {
	if key != "" {
		m[key] = value
	}
}

// unsetIndex removes key if it still maps to value: another object may have
// taken the key since.
func unsetIndex(m map[string]string, key, value string) {
	if key != "" && m[key] == value {
		delete(m, key)
	}
}

// UpdatePod records a Pod's latest state and which node it is bound to.
func (c *Cluster) UpdatePod(pod *corev1.Pod) {
	key := types.NamespacedName{Namespace: pod.Namespace, Name: pod.Name}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.pods[key]; ok && old.Spec.NodeName != pod.Spec.NodeName {
		c.unindexPodLocked(key, old.Spec.NodeName)
	}
	c.pods[key] = pod
	if pod.Spec.NodeName != "" {
		set := c.podsByNode[pod.Spec.NodeName]
		if set == nil {
			set = map[types.NamespacedName]struct{}{}
			c.podsByNode[pod.Spec.NodeName] = set
		}
		set[key] = struct{}{}
		// A bound pod no longer needs its nomination.
		c.dropNominationLocked(pod.UID)
	}
}

// DeletePod forgets a Pod and its nomination.
func (c *Cluster) DeletePod(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.pods[key]
	if !ok {
		return
	}
	c.unindexPodLocked(key, old.Spec.NodeName)
	delete(c.pods, key)
	c.dropNominationLocked(old.UID)
}

func (c *Cluster) unindexPodLocked(key types.NamespacedName, nodeName string) {
	if nodeName == "" {
		return
	}
	if set := c.podsByNode[nodeName]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(c.podsByNode, nodeName)
		}
	}
}

// UpdateNodeClaim records a NodeClaim's latest state. The provisioner calls
// it right after creating a claim, so the next decision sees the claim even
// before the informer delivers it.
func (c *Cluster) UpdateNodeClaim(claim *v1.NodeClaim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.deletedClaims[claim.Name]; ok && t.uid == claim.UID && claim.UID != "" {
		return // deleted already: the informer delivered the delete first
	}
	old, ok := c.claims[claim.Name]
	if ok && olderThan(claim.ResourceVersion, old.ResourceVersion) {
		// The informer may deliver the create after the provisioner recorded a
		// newer copy; never go back in time.
		return
	}
	if ok {
		c.unindexClaimLocked(old)
	}
	c.claims[claim.Name] = claim
	setIndex(c.claimByProviderID, claim.Status.ProviderID, claim.Name)
	setIndex(c.claimByNodeName, claim.Status.NodeName, claim.Name)
}

// DeleteNodeClaim forgets a NodeClaim; pods nominated to it become pending again.
func (c *Cluster) DeleteNodeClaim(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if old := c.claims[name]; old != nil {
		c.unindexClaimLocked(old)
		if old.UID != "" {
			if c.deletedClaims == nil {
				c.deletedClaims = map[string]tombstone{}
			}
			c.deletedClaims[name] = tombstone{uid: old.UID, at: now}
		}
	}
	delete(c.claims, name)
	for n, t := range c.deletedClaims {
		if now.Sub(t.at) > tombstoneTTL {
			delete(c.deletedClaims, n)
		}
	}
	for uid := range c.byTarget[name] {
		c.dropNominationLocked(uid)
	}
}

func (c *Cluster) unindexClaimLocked(claim *v1.NodeClaim) {
	unsetIndex(c.claimByProviderID, claim.Status.ProviderID, claim.Name)
	unsetIndex(c.claimByNodeName, claim.Status.NodeName, claim.Name)
}

// UpdateNodePool records a NodePool's latest state. A pool that does not
// validate is recorded as invalid: NodePools leaves it out, so it is never
// planned on (the nodepool.validation controller reports it).
func (c *Cluster) UpdateNodePool(pool *v1.NodePool) {
	invalid := len(validation.NodePool(pool)) > 0
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pools[pool.Name] = pool
	if invalid {
		c.invalidPools[pool.Name] = true
	} else {
		delete(c.invalidPools, pool.Name)
	}
}

// DeleteNodePool forgets a NodePool.
func (c *Cluster) DeleteNodePool(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pools, name)
	delete(c.invalidPools, name)
}

// NodePools returns the valid pools that are not being deleted, highest
// weight first, then by name, so decisions are deterministic.
func (c *Cluster) NodePools() []*v1.NodePool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*v1.NodePool, 0, len(c.pools))
	for _, p := range c.pools {
		if p.DeletionTimestamp == nil && !c.invalidPools[p.Name] {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		wi, wj := weight(out[i]), weight(out[j])
		if wi != wj {
			return wi > wj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// NodeClaim returns the named claim as last seen, or nil.
func (c *Cluster) NodeClaim(name string) *v1.NodeClaim {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.claims[name]
}

func weight(p *v1.NodePool) int32 {
	if p.Spec.Weight == nil {
		return 0
	}
	return *p.Spec.Weight
}

// olderThan reports whether resource version a is known to precede b. Resource
// versions are opaque, but the API server issues them as increasing integers;
// anything unparsable is treated as not older so updates are never lost.
func olderThan(a, b string) bool {
	ai, aok := parseRV(a)
	bi, bok := parseRV(b)
	return aok && bok && ai < bi
}

func parseRV(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	var n uint64
	for _, r := range s {
		if r < '0' || r > '9' {
			return 0, false
		}
		n = n*10 + uint64(r-'0')
	}
	return n, true
}

// Pods returns the known pods that keep returns true for, sorted by
// namespace and name.
func (c *Cluster) Pods(keep func(*corev1.Pod) bool) []*corev1.Pod {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*corev1.Pod
	for _, p := range c.pods {
		if keep(p) {
			out = append(out, p)
		}
	}
	sortPods(out)
	return out
}
