package state

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func names(pods []*corev1.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

// Nominations to a claim follow it to its node once the node registers, and
// both names answer for them.
func TestNominatedPodsFollowTheClaimToItsNode(t *testing.T) {
	clk := clocktesting.NewFakeClock(now)
	c := NewCluster(clk)
	a, b := gpuPod("a", ""), gpuPod("b", "")
	c.UpdatePod(a)
	c.UpdatePod(b)
	c.UpdateNodeClaim(oneGPUClaim("x"))
	c.Nominate(a, "x")

	if got := c.NominatedNode(a); got != "" {
		t.Errorf("NominatedNode(a) = %q before the node registered, want none", got)
	}
	if !c.HasNominatedPods("x", "") {
		t.Error("claim x has no nominated pods, want a")
	}

	c.UpdateNode(node("x-node", "gpu", res("cpu", "2", "nvidia.com/gpu", "1", "pods", "110"), func(n *corev1.Node) {
		n.Labels[v1.LabelNodeClaim] = "x"
	}))
	if got := c.NominatedNode(a); got != "x-node" {
		t.Errorf("NominatedNode(a) = %q, want x-node", got)
	}
	if diff := cmp.Diff([]string{"a"}, names(c.NominatedPods("x-node"))); diff != "" {
		t.Errorf("NominatedPods(x-node) (-want +got):\n%s", diff)
	}
	if !c.HasNominatedPods("", "x-node") || !c.HasNominatedPods("x", "") {
		t.Error("a nomination to x is not seen through both names")
	}
	// A pod nominated to the node itself counts too.
	c.Nominate(b, "x-node")
	if diff := cmp.Diff([]string{"a", "b"}, names(c.NominatedPods("x-node"))); diff != "" {
		t.Errorf("NominatedPods(x-node) (-want +got):\n%s", diff)
	}
	// Binding ends the nomination.
	c.UpdatePod(bound(a, "x-node"))
	if diff := cmp.Diff([]string{"b"}, names(c.NominatedPods("x-node"))); diff != "" {
		t.Errorf("NominatedPods(x-node) after a bound (-want +got):\n%s", diff)
	}
	// Deleting the claim ends nominations to it, not those to the node.
	c.DeleteNodeClaim("x")
	if c.HasNominatedPods("x", "") {
		t.Error("deleted claim x still has nominated pods")
	}
}

// The indexes follow updates: a node that changes its providerID or claim
// label, or a claim that records a different node, resolves to the new one.
func TestIndexesFollowUpdates(t *testing.T) {
	c := NewCluster(clocktesting.NewFakeClock(now))
	c.UpdateNodeClaim(oneGPUClaim("x", func(nc *v1.NodeClaim) { nc.Status.ProviderID = "fake://n1" }))
	c.UpdateNode(node("n1", "gpu", res("cpu", "2")))
	c.UpdateNode(node("n2", "gpu", res("cpu", "2")))
	owner := func(n string) string {
		c.mu.RLock()
		defer c.mu.RUnlock()
		if cl := c.claimOfNodeLocked(c.nodes[n]); cl != nil {
			return cl.Name
		}
		return ""
	}
	if owner("n1") != "x" || owner("n2") != "" {
		t.Fatalf("owners = %q, %q; want x, none", owner("n1"), owner("n2"))
	}
	c.UpdateNodeClaim(oneGPUClaim("x", func(nc *v1.NodeClaim) { nc.Status.ProviderID = "fake://n2" }))
	if owner("n1") != "" || owner("n2") != "x" {
		t.Errorf("after the claim moved: owners = %q, %q; want none, x", owner("n1"), owner("n2"))
	}
	c.DeleteNode("n2")
	c.mu.RLock()
	_, stale := c.nodeByProviderID["fake://n2"]
	c.mu.RUnlock()
	if stale {
		t.Error("deleted node n2 is still indexed by providerID")
	}
}

// BenchmarkNodes measures the snapshot a provisioning pass takes at two
// scales ten times apart; linear code takes about ten times longer for the
// larger one, a per-pod or per-node walk about a hundred times.
func BenchmarkNodes(b *testing.B) {
	for _, scale := range []struct{ nodes, pods int }{{100, 500}, {1000, 5000}} {
		b.Run(fmt.Sprintf("nodes=%d/pods=%d", scale.nodes, scale.pods), func(b *testing.B) {
			c := NewCluster(clocktesting.NewFakeClock(now))
			for i := range scale.nodes {
				name := fmt.Sprintf("c-%d", i)
				c.UpdateNodeClaim(oneGPUClaim(name, initialized, func(nc *v1.NodeClaim) { nc.Status.ProviderID = "fake://n-" + name }))
				c.UpdateNode(node("n-"+name, "gpu", res("cpu", "8", "nvidia.com/gpu", "1", "pods", "110")))
			}
			for i := range scale.pods {
				p := gpuPod(fmt.Sprintf("p-%d", i), "")
				if i%5 != 0 {
					p.Spec.NodeName = fmt.Sprintf("n-c-%d", i%scale.nodes)
				}
				c.UpdatePod(p)
				if i%5 == 0 {
					c.Nominate(p, fmt.Sprintf("c-%d", i%scale.nodes))
				}
			}
			pending := c.Pods(func(p *corev1.Pod) bool { return p.Spec.NodeName == "" })
			b.ResetTimer()
			for b.Loop() {
				c.PruneNominations()
				for _, p := range pending {
					_ = c.IsNominated(p)
				}
				_ = c.Nodes(nil)
				_ = c.Usage("gpu", nil)
			}
		})
	}
	_ = time.Second
}

// Node names are reused (EKS names a node after its private IP): a Node that
// carries the name an older claim recorded, but another machine's providerID,
// is not that claim's. Taking it for the old claim, which is being deleted,
// hid the new machine from provisioning, which bought another for its pods.
func TestReusedNodeNameBelongsToTheNewMachine(t *testing.T) {
	c := NewCluster(clocktesting.NewFakeClock(now))
	c.UpdateNodeClaim(oneGPUClaim("new", initialized, func(nc *v1.NodeClaim) {
		nc.Status.ProviderID, nc.Status.NodeName = "fake://i-new", "ip-10-0-0-1"
	}))
	c.UpdateNode(node("ip-10-0-0-1", "gpu", res("cpu", "2", "nvidia.com/gpu", "1", "pods", "110"), func(n *corev1.Node) {
		n.Spec.ProviderID = "fake://i-new"
		n.Labels[v1.LabelNodeClaim] = "new"
	}))
	// The old claim's last update (its deletion) arrives after the new claim's.
	c.UpdateNodeClaim(oneGPUClaim("old", initialized, func(nc *v1.NodeClaim) {
		nc.Status.ProviderID, nc.Status.NodeName = "fake://i-old", "ip-10-0-0-1"
		nc.DeletionTimestamp = &metav1.Time{Time: now}
	}))

	var got []string
	for _, n := range c.Nodes(nil) {
		got = append(got, fmt.Sprintf("%s inFlight=%v", n.Name, n.InFlight))
	}
	if diff := cmp.Diff([]string{"ip-10-0-0-1 inFlight=false"}, got); diff != "" {
		t.Errorf("Nodes (-want +got):\n%s", diff)
	}
	c.mu.RLock()
	owner := c.claimOfNodeLocked(c.nodes["ip-10-0-0-1"])
	c.mu.RUnlock()
	if owner == nil || owner.Name != "new" {
		t.Errorf("claim of node ip-10-0-0-1 = %v, want new", owner)
	}
}
