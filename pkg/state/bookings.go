package state

import (
	"sort"

	corev1 "k8s.io/api/core/v1"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// booking is room held for pods that do not exist yet: a ProvisioningRequest's
// pod sets, by the node or NodeClaim their capacity was found or bought on.
type booking struct {
	targets map[string][]*corev1.Pod
}

// Book holds room on target (a NodeClaim or Node name) for pods that do not
// exist yet, on behalf of owner, the namespace/name of a ProvisioningRequest.
// Until Unbook, Nodes counts them on the target, less the pods that consume
// the booking (the consume-provisioning-request annotation) once those are
// bound, and IsBookedFor reports the consuming pods still pending, so they
// are waited for rather than planned again.
func (c *Cluster) Book(owner, target string, pods ...*corev1.Pod) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bookings[owner]
	if b == nil {
		b = &booking{targets: map[string][]*corev1.Pod{}}
		c.bookings[owner] = b
	}
	b.targets[target] = append(b.targets[target], pods...)
}

// Unbook releases owner's booking.
func (c *Cluster) Unbook(owner string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.bookings, owner)
}

// Booking returns how many pods owner's booking holds on each target, or
// nil when it holds none.
func (c *Cluster) Booking(owner string) map[string]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	b := c.bookings[owner]
	if b == nil {
		return nil
	}
	out := make(map[string]int, len(b.targets))
	for t, pods := range b.targets {
		out[t] = len(pods)
	}
	return out
}

// IsBookedFor reports whether pod consumes a booking that is still held.
func (c *Cluster) IsBookedFor(pod *corev1.Pod) bool {
	owner := consumes(pod)
	if owner == "" {
		return false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.bookings[owner] != nil
}

// consumes is the namespace/name of the ProvisioningRequest a pod consumes.
func consumes(pod *corev1.Pod) string {
	name := pod.Annotations[provreqv1.ConsumeAnnotation]
	if name == "" {
		return ""
	}
	return pod.Namespace + "/" + name
}

// bookedPodsLocked returns, by node or in-flight claim name, the booked pods
// still waiting for their real pods: a consuming pod bound to a target takes
// one of that target's places, one bound elsewhere takes the last place left.
func (c *Cluster) bookedPodsLocked() map[string][]*corev1.Pod {
	if len(c.bookings) == 0 {
		return nil
	}
	boundOn := map[string]map[string]int{} // owner -> node -> bound consumers
	for _, p := range c.pods {
		owner := consumes(p)
		if owner == "" || c.bookings[owner] == nil || p.Spec.NodeName == "" || scheduling.Finished(p) {
			continue
		}
		if boundOn[owner] == nil {
			boundOn[owner] = map[string]int{}
		}
		boundOn[owner][p.Spec.NodeName]++
	}
	out := map[string][]*corev1.Pod{}
	for owner, b := range c.bookings {
		targets := make([]string, 0, len(b.targets))
		for t := range b.targets {
			targets = append(targets, t)
		}
		sort.Strings(targets)
		held := map[string][]*corev1.Pod{}
		elsewhere := 0
		for _, n := range boundOn[owner] {
			elsewhere += n
		}
		for _, t := range targets {
			node := t
			if n := c.nodeOfClaimNamedLocked(t); n != nil {
				node = n.Name
			}
			pods := b.targets[t]
			taken := min(boundOn[owner][node], len(pods))
			elsewhere -= taken
			held[node] = append(held[node], pods[taken:]...)
		}
		for i := len(targets) - 1; i >= 0 && elsewhere > 0; i-- {
			node := targets[i]
			if n := c.nodeOfClaimNamedLocked(node); n != nil {
				node = n.Name
			}
			drop := min(elsewhere, len(held[node]))
			held[node] = held[node][:len(held[node])-drop]
			elsewhere -= drop
		}
		for node, pods := range held {
			out[node] = append(out[node], pods...)
		}
	}
	return out
}

// Exists reports whether target, a NodeClaim or Node name, is known and not
// being deleted: a booking on a target that does not exist is revoked.
func (c *Cluster) Exists(target string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if cl := c.claims[target]; cl != nil {
		return cl.DeletionTimestamp == nil
	}
	if n := c.nodes[target]; n != nil {
		return n.DeletionTimestamp == nil
	}
	return false
}

// nodeOfClaimNamedLocked is the Node of the claim named name, if both exist.
func (c *Cluster) nodeOfClaimNamedLocked(name string) *corev1.Node {
	if claim := c.claims[name]; claim != nil {
		return c.nodeOfClaimLocked(claim)
	}
	return nil
}
