package state

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// gpuPod asks for one CPU and one GPU: one fits a one-GPU machine.
func gpuPod(name, nodeName string) *corev1.Pod {
	return pod(name, nodeName, func(p *corev1.Pod) {
		p.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: res("cpu", "1", "nvidia.com/gpu", "1")}}}
	})
}

func bound(p *corev1.Pod, nodeName string) *corev1.Pod {
	out := p.DeepCopy()
	out.Spec.NodeName = nodeName
	return out
}

// oneGPUClaim is an in-flight claim for a one-GPU machine whose Node will be
// called nodeName once it registers.
func oneGPUClaim(name string, mutate ...func(*v1.NodeClaim)) *v1.NodeClaim {
	return claim(name, "gpu", append([]func(*v1.NodeClaim){func(nc *v1.NodeClaim) {
		nc.Spec.Taints = nil
		nc.Status.ProviderID = "fake://" + name + "-node"
		nc.Status.Allocatable = res("cpu", "2", "nvidia.com/gpu", "1", "pods", "110")
	}}, mutate...)...)
}

func registeredAt(at time.Time) func(*v1.NodeClaim) {
	return func(nc *v1.NodeClaim) {
		nc.Status.NodeName = nc.Name + "-node"
		nc.Status.Conditions = []metav1.Condition{{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(at)}}
	}
}

func podsOn(c *Cluster) map[string][]string {
	out := map[string][]string{}
	for _, s := range summarize(c, nil) {
		out[s.Name] = s.Pods
	}
	return out
}

// The order the 1,000-pod benchmark produces: A is planned onto claim X and
// B onto Y; X's machine comes up first and the kube-scheduler binds B there.
// A's room on X is gone, and B no longer needs Y: the next decision must see
// Y free for A rather than buy a third machine.
func TestNominationMovesWithTheScheduler(t *testing.T) {
	tests := []struct {
		name string
		// feed delivers what the informers report after both nominations.
		feed func(c *Cluster, a, b *corev1.Pod, at time.Time)
		want map[string][]string
	}{
		{
			name: "pod binding seen after the node",
			feed: func(c *Cluster, a, b *corev1.Pod, at time.Time) {
				c.UpdateNodeClaim(oneGPUClaim("x", registeredAt(at)))
				c.UpdateNode(node("x-node", "gpu", res("cpu", "2", "nvidia.com/gpu", "1", "pods", "110")))
				c.UpdatePod(bound(b, "x-node"))
			},
			want: map[string][]string{"x-node": {"b"}, "y": nil},
		},
		{
			// The pod informer runs ahead of the Node informer: B is bound
			// to a node the view does not know yet. B must count against X
			// (its claim already names the node): A's room there is gone,
			// and X must not look empty to the next decision.
			name: "pod binding seen before the node",
			feed: func(c *Cluster, a, b *corev1.Pod, at time.Time) {
				c.UpdateNodeClaim(oneGPUClaim("x", registeredAt(at)))
				c.UpdatePod(bound(b, "x-node"))
			},
			want: map[string][]string{"x": {"b"}, "y": nil},
		},
		{
			// The provisioner nominates the pods of a plan as it creates
			// their claims; the kube-scheduler may bind B onto X before Y's
			// create returns. That late nomination must not reserve Y.
			name: "nomination recorded after the binding",
			feed: func(c *Cluster, a, b *corev1.Pod, at time.Time) {
				c.UpdateNodeClaim(oneGPUClaim("x", registeredAt(at)))
				c.UpdateNode(node("x-node", "gpu", res("cpu", "2", "nvidia.com/gpu", "1", "pods", "110")))
				c.UpdatePod(bound(b, "x-node"))
				c.Nominate(b, "y")
			},
			want: map[string][]string{"x-node": {"b"}, "y": nil},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(now)
			c := NewCluster(clk)
			a, b := gpuPod("a", ""), gpuPod("b", "")
			c.UpdatePod(a)
			c.UpdatePod(b)
			c.UpdateNodeClaim(oneGPUClaim("x"))
			c.UpdateNodeClaim(oneGPUClaim("y"))
			c.Nominate(a, "x")
			c.Nominate(b, "y")
			clk.Step(2 * time.Second)

			tt.feed(c, a, b, clk.Now())

			if diff := cmp.Diff(tt.want, podsOn(c)); diff != "" {
				t.Errorf("pods per node mismatch (-want +got):\n%s", diff)
			}
			if got := c.NominatedTo(b); got != "" {
				t.Errorf("bound pod b still nominated to %q", got)
			}
			c.mu.RLock()
			_, left := c.nominations[b.UID]
			c.mu.RUnlock()
			if left {
				t.Error("bound pod b still holds a nomination entry")
			}
		})
	}
}

// A pod planned onto a claim keeps its nomination while the claim's node
// still has room for it: losing it would put the pod in the next decision,
// which may give the room to another pod and buy a new machine for this one.
func TestNominationHeldWhileRoomRemains(t *testing.T) {
	clk := clocktesting.NewFakeClock(now)
	c := NewCluster(clk, WithNominationTTL(30*time.Second))
	a := gpuPod("a", "")
	c.UpdatePod(a)
	c.UpdateNodeClaim(oneGPUClaim("x"))
	c.Nominate(a, "x")
	clk.Step(time.Second)
	c.UpdateNodeClaim(oneGPUClaim("x", registeredAt(clk.Now())))
	c.UpdateNode(node("x-node", "gpu", res("cpu", "2", "nvidia.com/gpu", "1", "pods", "110")))

	// A CPU pod takes part of the node: a still fits.
	c.UpdatePod(pod("cpu", "x-node", func(p *corev1.Pod) {
		p.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: res("cpu", "1")}}}
	}))
	if got := c.NominatedTo(a); got != "x" {
		t.Fatalf("NominatedTo = %q after a small pod landed, want x", got)
	}
	// A GPU pod takes the GPU: a no longer fits and is free to be re-planned.
	c.UpdatePod(gpuPod("other", "x-node"))
	if got := c.NominatedTo(a); got != "" {
		t.Errorf("NominatedTo = %q after the GPU was taken, want none", got)
	}
}

// Seen in the 1,000-pod benchmark: a machine bought for a pod is Ready and
// empty, but the node lifecycle controller has not yet removed its not-ready
// taint. The next decision must still count it as room, or it buys again.
func TestStaleNotReadyTaintIgnoredOnReadyNode(t *testing.T) {
	gpuTaint := corev1.Taint{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}
	notReady := corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
	tests := []struct {
		name  string
		ready corev1.ConditionStatus
		want  []string
	}{
		{"ready: the taint is stale", corev1.ConditionTrue, []string{"nvidia.com/gpu"}},
		{"not ready: the taint holds", corev1.ConditionFalse, []string{"nvidia.com/gpu", corev1.TaintNodeNotReady}},
		{"ready unknown: the taint holds", corev1.ConditionUnknown, []string{"nvidia.com/gpu", corev1.TaintNodeNotReady}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCluster(clocktesting.NewFakeClock(now))
			c.UpdateNodeClaim(oneGPUClaim("x", registeredAt(now)))
			c.UpdateNode(node("x-node", "gpu", res("cpu", "2", "nvidia.com/gpu", "1"), func(n *corev1.Node) {
				n.Spec.Taints = []corev1.Taint{gpuTaint, notReady}
				n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: tt.ready}}
			}))
			got := summarize(c, nil)
			if len(got) != 1 {
				t.Fatalf("got %d nodes, want 1", len(got))
			}
			if diff := cmp.Diff(tt.want, got[0].Taints); diff != "" {
				t.Errorf("taints mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// A pass lists pending pods, then filters out the nominated ones. A pod bound
// in between has lost its nomination with the binding: it must count as
// settled, not as a pending pod without a plan.
func TestSettledAfterBindingInAPass(t *testing.T) {
	c := NewCluster(clocktesting.NewFakeClock(now))
	a := gpuPod("a", "")
	c.UpdatePod(a)
	c.UpdateNodeClaim(oneGPUClaim("x"))
	c.Nominate(a, "x")
	listed := c.Pods(func(p *corev1.Pod) bool { return p.Spec.NodeName == "" })
	if len(listed) != 1 || !c.Settled(listed[0]) {
		t.Fatalf("listed %d pods; a nominated pod must be settled", len(listed))
	}
	c.UpdatePod(bound(a, "x-node"))
	if c.IsNominated(listed[0]) {
		t.Fatal("the binding should have ended the nomination")
	}
	if !c.Settled(listed[0]) {
		t.Error("a pod bound since it was listed is not settled: the pass would buy a machine for it")
	}
	c.DeletePod(podKey(a))
	if !c.Settled(listed[0]) {
		t.Error("a pod gone since it was listed is not settled")
	}
	b := gpuPod("b", "")
	c.UpdatePod(b)
	if c.Settled(b) {
		t.Error("a pending pod with no nomination is settled")
	}
}

// A nomination made to a node by name lapses as soon as the node's claim is
// being deleted, as one made to the claim does: the node is about to drain.
func TestNominationToANodeLapsesWithItsClaim(t *testing.T) {
	clk := clocktesting.NewFakeClock(now)
	c := NewCluster(clk, WithNominationTTL(30*time.Second))
	a := gpuPod("a", "")
	c.UpdatePod(a)
	c.UpdateNodeClaim(oneGPUClaim("x", registeredAt(clk.Now())))
	c.UpdateNode(node("x-node", "gpu", res("cpu", "2", "nvidia.com/gpu", "1", "pods", "110")))
	c.Nominate(a, "x-node")
	if got := c.NominatedTo(a); got != "x-node" {
		t.Fatalf("NominatedTo = %q, want x-node", got)
	}
	c.UpdateNodeClaim(oneGPUClaim("x", registeredAt(clk.Now()), func(nc *v1.NodeClaim) {
		ts := metav1.NewTime(clk.Now())
		nc.DeletionTimestamp = &ts
	}))
	if got := c.NominatedTo(a); got != "" {
		t.Errorf("NominatedTo = %q after the node's claim began deleting, want none", got)
	}
}
