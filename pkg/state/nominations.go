package state

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// MaxNominationWait bounds how long a nomination holds for a node that is
// initialized but does not take pods yet (its readiness taints linger, or it
// is not released): past it, the pod is planned again.
const MaxNominationWait = 2 * time.Minute

// Nominate records that the provisioner planned pod onto target, a NodeClaim
// it created or an existing node, so the next decision does not plan it again.
//
// The plan was made from a snapshot: if the kube-scheduler has bound the pod
// since, wherever it went, the nomination is not recorded. It would reserve
// room on target for a pod that no longer needs it, and the next decision
// would buy again for the pod that room was meant for.
func (c *Cluster) Nominate(pod *corev1.Pod, target string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.pods[podKey(pod)]; cur != nil && cur.UID == pod.UID && cur.Spec.NodeName != "" {
		c.dropNominationLocked(pod.UID)
		return
	}
	c.dropNominationLocked(pod.UID)
	c.nominations[pod.UID] = nomination{pod: podKey(pod), target: target, at: c.clock.Now()}
	set := c.byTarget[target]
	if set == nil {
		set = map[types.UID]struct{}{}
		c.byTarget[target] = set
	}
	set[pod.UID] = struct{}{}
}

// dropNominationLocked forgets a pod's nomination, if any.
func (c *Cluster) dropNominationLocked(uid types.UID) {
	n, ok := c.nominations[uid]
	if !ok {
		return
	}
	delete(c.nominations, uid)
	if set := c.byTarget[n.target]; set != nil {
		delete(set, uid)
		if len(set) == 0 {
			delete(c.byTarget, n.target)
		}
	}
}

// Settled reports whether pod needs no plan now: the view's current copy of
// it is bound (or gone), or it holds a valid nomination. A pass lists the
// pending pods first and filters them after; a pod the kube-scheduler binds
// in between loses its nomination with the binding, and must not then look
// un-nominated and pending, or a machine is bought for a pod that runs.
func (c *Cluster) Settled(pod *corev1.Pod) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cur := c.pods[podKey(pod)]; cur == nil || cur.UID != pod.UID || cur.Spec.NodeName != "" {
		return true
	}
	n, ok := c.nominations[pod.UID]
	return ok && c.validLocked(n)
}

// IsNominated reports whether pod is planned onto a node that still exists
// and is either still launching or was nominated less than the nomination TTL ago.
func (c *Cluster) IsNominated(pod *corev1.Pod) bool {
	return c.NominatedTo(pod) != ""
}

// NominatedTo returns the node or claim pod is validly nominated to, or "".
func (c *Cluster) NominatedTo(pod *corev1.Pod) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nominations[pod.UID]
	if !ok {
		return ""
	}
	if !c.validLocked(n) {
		return ""
	}
	return n.target
}

// Pruned is a nomination PruneNominations dropped, and why.
type Pruned struct {
	Pod         types.NamespacedName
	Target, Why string
}

// PruneNominations drops nominations that are no longer valid, so the map
// does not grow with pods that were deleted while pending, and returns what
// it dropped.
func (c *Cluster) PruneNominations() []Pruned {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Pruned
	for uid, n := range c.nominations {
		why := c.whyLapsedLocked(n)
		if why == "" && c.pods[n.pod] == nil {
			why = "the pod is gone"
		}
		if why != "" {
			c.dropNominationLocked(uid)
			out = append(out, Pruned{Pod: n.pod, Target: n.target, Why: why})
		}
	}
	return out
}

// validLocked reports whether a nomination still holds.
func (c *Cluster) validLocked(n nomination) bool { return c.whyLapsedLocked(n) == "" }

// whyLapsedLocked says why a nomination no longer holds, or "" when it does.
// While its target is launching or booting it holds: the pod waits for the
// machine bought for it. Once the node takes pods (Ready, released by
// Stowage, readiness taints gone) the kube-scheduler should bind the pod
// within moments; the nomination then lasts the TTL, counted from when the
// node began taking pods, and ends at once if the node no longer has room
// for the pod (other pods took it).
func (c *Cluster) whyLapsedLocked(n nomination) string {
	claim, node := c.claims[n.target], c.nodes[n.target]
	switch {
	case claim != nil:
		if claim.DeletionTimestamp != nil {
			return "its nodeclaim is being deleted"
		}
		node = c.nodeOfClaimLocked(claim)
	case node != nil:
		claim = c.claimOfNodeLocked(node)
	default:
		return "its node or nodeclaim is gone"
	}
	if node != nil && node.DeletionTimestamp != nil {
		return "its node is being deleted"
	}
	if claim != nil && claim.DeletionTimestamp != nil {
		// Nominated to the node by name: its claim going means the node goes.
		return "its nodeclaim is being deleted"
	}
	// The kube-scheduler nominated the pod to another node, to preempt pods
	// there for it (Stowage steers pods only to their planned node): it binds
	// there once the victims are gone. Steering it back would drop the room
	// the scheduler holds for it, and holding room here for it is waste.
	if pod := c.pods[n.pod]; pod != nil {
		if nnn := pod.Status.NominatedNodeName; nnn != "" && c.nodes[nnn] != nil && (node == nil || node.Name != nnn) {
			return fmt.Sprintf("the kube-scheduler is preempting pods on node %s for it", nnn)
		}
	}
	if claim != nil && !isInitialized(claim) {
		return ""
	}
	// Other pods took its room: whatever the node's state, the pod needs
	// another place.
	if pod := c.pods[n.pod]; pod != nil {
		switch {
		case node != nil:
			if !c.fitsLocked(node.Name, node.Status.Allocatable, pod) {
				return fmt.Sprintf("other pods took its room on node %s", node.Name)
			}
		case claim != nil && claim.Status.NodeName != "":
			// The Node informer has not delivered the node yet, but pods the
			// kube-scheduler bound to it already take its room.
			_, alloc := claimResources(claim, nil)
			if !c.fitsLocked(claim.Status.NodeName, alloc, pod) {
				return fmt.Sprintf("other pods took its room on node %s", claim.Status.NodeName)
			}
		}
	}
	since := n.at
	if claim != nil {
		if cond := meta.FindStatusCondition(claim.Status.Conditions, v1.ConditionInitialized); cond != nil && cond.LastTransitionTime.After(since) {
			since = cond.LastTransitionTime.Time
		}
	}
	if node != nil {
		taking, ok := c.takingPodsSince[node.Name]
		if !ok {
			// Initialized but not yet taking pods: not released, or its
			// readiness taints are not lifted yet. Wait, but not forever.
			if c.clock.Since(since) < MaxNominationWait {
				return ""
			}
			return fmt.Sprintf("node %s has not taken pods for %s since it was initialized", node.Name, MaxNominationWait)
		}
		if taking.After(since) {
			since = taking
		}
	}
	if c.clock.Since(since) >= c.nominationTTL {
		return fmt.Sprintf("the pod was not bound within %s of its node taking pods", c.nominationTTL)
	}
	return ""
}

// LapsedNomination returns the target of the pod's nomination and why it no
// longer holds, or "", "" when the pod has none or it holds. A pod planned
// again tells why in the provisioner's log.
func (c *Cluster) LapsedNomination(pod *corev1.Pod) (target, why string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nominations[pod.UID]
	if !ok {
		return "", ""
	}
	if why := c.whyLapsedLocked(n); why != "" {
		return n.target, why
	}
	return "", ""
}

// fitsLocked reports whether pod fits in alloc next to the pods bound to the
// named node.
func (c *Cluster) fitsLocked(nodeName string, allocatable corev1.ResourceList, pod *corev1.Pod) bool {
	var used scheduling.Resources
	for _, p := range c.boundPodsLocked(nodeName) {
		used = used.Add(scheduling.PodRequests(p))
	}
	want := scheduling.PodRequests(pod)
	alloc := scheduling.FromList(allocatable)
	return scheduling.FitsSum(&used, &want, &alloc)
}

// boundPodsLocked returns the non-terminal pods bound to the named node,
// sorted.
func (c *Cluster) boundPodsLocked(nodeName string) []*corev1.Pod {
	var out []*corev1.Pod
	for key := range c.podsByNode[nodeName] {
		if p := c.pods[key]; p != nil && !scheduling.Finished(p) {
			out = append(out, p)
		}
	}
	sortPods(out)
	return out
}

// nominatedPodsLocked groups pending nominated pods by target. Only pods
// still known and unbound are returned; a claim that registered as a Node
// carries its nominations over to the Node's name.
func (c *Cluster) nominatedPodsLocked() map[string][]*corev1.Pod {
	out := map[string][]*corev1.Pod{}
	for uid, n := range c.nominations {
		p := c.pods[n.pod]
		if p == nil || p.UID != uid || p.Spec.NodeName != "" || scheduling.Finished(p) || !c.validLocked(n) {
			continue
		}
		target := n.target
		if claim := c.claims[target]; claim != nil {
			if node := c.nodeOfClaimLocked(claim); node != nil {
				target = node.Name
			}
		}
		out[target] = append(out[target], p)
	}
	for _, pods := range out {
		sortPods(pods)
	}
	return out
}

// NominatedPods returns the pending pods validly nominated to the named node,
// whether they were nominated to the node itself or to the NodeClaim it
// registered for, sorted. The provisioner steers them there; disruption
// never removes a node that pods are on their way to.
func (c *Cluster) NominatedPods(nodeName string) []*corev1.Pod {
	c.mu.RLock()
	defer c.mu.RUnlock()
	targets := []string{nodeName}
	if node := c.nodes[nodeName]; node != nil {
		if claim := c.claimOfNodeLocked(node); claim != nil {
			targets = append(targets, claim.Name)
		}
	}
	var out []*corev1.Pod
	for _, target := range targets {
		out = append(out, c.nominatedToLocked(target)...)
	}
	sortPods(out)
	return out
}

// HasNominatedPods reports whether any pending pod is validly nominated to the
// claim or to its node (either name may be empty).
func (c *Cluster) HasNominatedPods(claimName, nodeName string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	targets := []string{claimName, nodeName}
	if claim := c.claims[claimName]; claim != nil {
		if node := c.nodeOfClaimLocked(claim); node != nil {
			targets = append(targets, node.Name)
		}
	}
	if node := c.nodes[nodeName]; node != nil {
		if claim := c.claimOfNodeLocked(node); claim != nil {
			targets = append(targets, claim.Name)
		}
	}
	for _, target := range targets {
		if target != "" && len(c.nominatedToLocked(target)) > 0 {
			return true
		}
	}
	return false
}

// nominatedToLocked returns the pending pods validly nominated to target.
func (c *Cluster) nominatedToLocked(target string) []*corev1.Pod {
	var out []*corev1.Pod
	for uid := range c.byTarget[target] {
		n := c.nominations[uid]
		p := c.pods[n.pod]
		if p == nil || p.UID != uid || p.Spec.NodeName != "" || scheduling.Finished(p) || !c.validLocked(n) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// NominatedNode returns the registered Node that pod is validly nominated
// to, directly or through the NodeClaim the Node registered for, or "" when
// there is none (yet).
func (c *Cluster) NominatedNode(pod *corev1.Pod) string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n, ok := c.nominations[pod.UID]
	if !ok || !c.validLocked(n) {
		return ""
	}
	if node := c.nodes[n.target]; node != nil {
		return node.Name
	}
	if claim := c.claims[n.target]; claim != nil {
		if node := c.nodeOfClaimLocked(claim); node != nil {
			return node.Name
		}
	}
	return ""
}

// Node returns the named Node as last seen, or nil. Callers must not mutate it.
func (c *Cluster) Node(name string) *corev1.Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.nodes[name]
}
