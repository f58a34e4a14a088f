package state

import (
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
)

// ResourceNodes counts nodes in NodePool usage, so a pool limit can cap
// the number of machines as well as their resources.
const ResourceNodes corev1.ResourceName = "nodes"

// InstanceTypeLookup resolves an instance type a pool may buy by name. The
// provisioner builds it from CloudProvider.InstanceTypes; it lets an in-flight
// claim that has not launched yet count with its planned capacity.
type InstanceTypeLookup func(nodePool, instanceType string) (*cloudprovider.InstanceType, bool)

// transientTaints are taints a node carries only while it boots; pods that
// were planned onto a launching claim do not tolerate them and need not.
var transientTaints = map[string]bool{
	corev1.TaintNodeNotReady:                         true,
	"node.cloudprovider.kubernetes.io/uninitialized": true,
	v1.UnregisteredTaintKey:                          true,
	// A reserved node takes the pods planned onto it: the lifecycle
	// controller gives each such pod a toleration.
	v1.ReservedTaintKey: true,
}

// nodeOfClaimLocked returns the registered Node of a claim, or nil: the node
// the claim names, else the one with its providerID, else the one carrying
// its name as a label (registered, but the claim's status is not stored yet).
// A node found by name or label must be the claim's machine, as in package
// claims: node names are reused (EKS names nodes after their private IP), and
// a duplicate machine's kubelet carries the claim's label.
func (c *Cluster) nodeOfClaimLocked(claim *v1.NodeClaim) *corev1.Node {
	pid := claim.Status.ProviderID
	if n := c.nodes[claim.Status.NodeName]; n != nil && (pid == "" || n.Spec.ProviderID == pid) {
		return n
	}
	if name, ok := c.nodeByProviderID[pid]; ok && pid != "" {
		return c.nodes[name]
	}
	if n := c.nodes[c.nodeByClaimLabel[claim.Name]]; n != nil && (pid == "" || n.Spec.ProviderID == "" || n.Spec.ProviderID == pid) {
		return n
	}
	return nil
}

// claimOfNodeLocked returns the claim whose registered node is node, or nil.
func (c *Cluster) claimOfNodeLocked(node *corev1.Node) *v1.NodeClaim {
	for _, name := range []string{
		c.claimByNodeName[node.Name],
		c.claimByProviderID[node.Spec.ProviderID],
		node.Labels[v1.LabelNodeClaim],
	} {
		if name == "" {
			continue
		}
		if claim := c.claims[name]; claim != nil && c.nodeOfClaimLocked(claim) == node {
			return claim
		}
	}
	return nil
}

// Nodes returns every node pods may be placed on: registered Nodes that are
// neither cordoned nor being deleted, and NodeClaims whose Node has not
// registered yet (InFlight), each with the pods bound or nominated to it.
// Sorted by name.
func (c *Cluster) Nodes(lookup InstanceTypeLookup) []*solver.Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	nominated := c.nominatedPodsLocked()
	for target, pods := range c.bookedPodsLocked() {
		nominated[target] = append(nominated[target], pods...)
	}

	var out []*solver.Node
	for _, node := range c.nodes {
		claim := c.claimOfNodeLocked(node)
		if !open(node, claim) {
			continue
		}
		out = append(out, c.existingNodeLocked(node, claim, lookup, nominated[node.Name]))
	}
	for _, claim := range c.claims {
		if claim.DeletionTimestamp != nil || c.nodeOfClaimLocked(claim) != nil {
			continue
		}
		_, alloc := claimResources(claim, lookup)
		var pods []*corev1.Pod
		if claim.Status.NodeName != "" {
			// Registered, but the Node informer is behind: the pods the
			// kube-scheduler already bound there take the claim's room.
			pods = c.boundPodsLocked(claim.Status.NodeName)
		}
		out = append(out, &solver.Node{
			Name:         claim.Name,
			Labels:       claimLabels(claim),
			Taints:       append([]corev1.Taint(nil), claim.Spec.Taints...),
			Allocatable:  alloc,
			Pods:         append(pods, nominated[claim.Name]...),
			PricePerHour: claimPrice(claim),
			InFlight:     true,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// open reports whether pods may be placed on node: it is not cordoned, nor
// being deleted or disrupted, and neither is its claim.
func open(node *corev1.Node, claim *v1.NodeClaim) bool {
	return node.DeletionTimestamp == nil && !node.Spec.Unschedulable && !hasTaint(node.Spec.Taints, v1.DisruptedTaintKey) &&
		(claim == nil || claim.DeletionTimestamp == nil)
}

// ClosedNodes are the registered Nodes that Nodes leaves out (cordoned,
// being deleted or disrupted) and still run pods, each with those pods: a
// gang's members running there count towards its size.
func (c *Cluster) ClosedNodes() []*solver.Node {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []*solver.Node
	for _, node := range c.nodes {
		if open(node, c.claimOfNodeLocked(node)) {
			continue
		}
		if pods := c.boundPodsLocked(node.Name); len(pods) > 0 {
			out = append(out, &solver.Node{Name: node.Name, Labels: node.Labels, Pods: pods})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (c *Cluster) existingNodeLocked(node *corev1.Node, claim *v1.NodeClaim, lookup InstanceTypeLookup, nominated []*corev1.Pod) *solver.Node {
	n := &solver.Node{
		Name:        node.Name,
		Labels:      node.Labels,
		Taints:      withoutStaleReadinessTaints(node),
		Allocatable: node.Status.Allocatable,
	}
	n.Pods = append(c.boundPodsLocked(node.Name), nominated...)
	if claim == nil {
		return n
	}
	n.PricePerHour = claimPrice(claim)
	if !isInitialized(claim) {
		// Until the node is initialized its allocatable may still lack
		// extended resources (GPUs appear when the device plugin starts) and
		// it carries startup taints; plan with what the claim will become.
		_, planned := claimResources(claim, lookup)
		n.Allocatable = mergeMissing(node.Status.Allocatable, planned)
		n.Taints = withoutTaints(node.Spec.Taints, claim.Spec.StartupTaints)
	}
	return n
}

// Usage is the capacity a pool's nodes and in-flight claims hold, plus their
// count under ResourceNodes. Nodes being deleted still count: they are paid
// for until they are gone.
func (c *Cluster) Usage(pool string, lookup InstanceTypeLookup) corev1.ResourceList {
	c.mu.RLock()
	defer c.mu.RUnlock()
	usage := corev1.ResourceList{}
	nodes := int64(0)
	for _, node := range c.nodes {
		if node.Labels[v1.LabelNodePool] != pool {
			continue
		}
		capacity := node.Status.Capacity
		if claim := c.claimOfNodeLocked(node); claim != nil && !isInitialized(claim) {
			planned, _ := claimResources(claim, lookup)
			capacity = mergeMissing(capacity, planned)
		}
		addTo(usage, capacity)
		nodes++
	}
	for _, claim := range c.claims {
		if claim.Labels[v1.LabelNodePool] != pool || c.nodeOfClaimLocked(claim) != nil {
			continue
		}
		capacity, _ := claimResources(claim, lookup)
		addTo(usage, capacity)
		nodes++
	}
	usage[ResourceNodes] = *resource.NewQuantity(nodes, resource.DecimalSI)
	return usage
}

// claimResources returns the capacity and allocatable a claim has or will
// have: what the cloud reported once launched, else its first choice's
// instance type, else at least what its pods request.
func claimResources(claim *v1.NodeClaim, lookup InstanceTypeLookup) (capacity, allocatable corev1.ResourceList) {
	if len(claim.Status.Allocatable) > 0 {
		capacity = claim.Status.Capacity
		if len(capacity) == 0 {
			capacity = claim.Status.Allocatable
		}
		return capacity, claim.Status.Allocatable
	}
	if lookup != nil && len(claim.Spec.Offerings) > 0 {
		if it, ok := lookup(claim.Labels[v1.LabelNodePool], claim.Spec.Offerings[0].InstanceType); ok {
			return it.Capacity, it.Allocatable()
		}
	}
	return claim.Spec.Resources.Requests, claim.Spec.Resources.Requests
}

// claimLabels are the labels a claim's node will surely have, its hostname
// standing in as the claim's name.
func claimLabels(claim *v1.NodeClaim) map[string]string {
	labels := claims.Labels(claim)
	labels[v1.LabelHostname] = claim.Name
	return labels
}

func claimPrice(claim *v1.NodeClaim) float64 {
	s := claim.Status.PricePerHour
	if s == "" && len(claim.Spec.Offerings) > 0 {
		s = claim.Spec.Offerings[0].PricePerHour
	}
	p, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return p
}

func isInitialized(claim *v1.NodeClaim) bool {
	return meta.IsStatusConditionTrue(claim.Status.Conditions, v1.ConditionInitialized)
}

func hasTaint(taints []corev1.Taint, key string) bool {
	for _, t := range taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

// readinessTaints are the taints the node lifecycle controller keeps in step
// with a node's Ready condition, some time after it changes.
var readinessTaints = map[string]bool{
	corev1.TaintNodeNotReady:    true,
	corev1.TaintNodeUnreachable: true,
}

// withoutStaleReadinessTaints returns node's taints, less the readiness taints
// if the node already reports Ready. On a busy control plane the not-ready
// taint outlives the condition by seconds; planning around it bought a second
// machine for pods whose first one was ready and empty.
func withoutStaleReadinessTaints(node *corev1.Node) []corev1.Taint {
	if !nodeReady(node) {
		return node.Spec.Taints
	}
	out := make([]corev1.Taint, 0, len(node.Spec.Taints))
	for _, t := range node.Spec.Taints {
		if !readinessTaints[t.Key] {
			out = append(out, t)
		}
	}
	return out
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func withoutTaints(taints, remove []corev1.Taint) []corev1.Taint {
	out := make([]corev1.Taint, 0, len(taints))
	for _, t := range taints {
		if transientTaints[t.Key] {
			continue
		}
		drop := false
		for _, r := range remove {
			if r.Key == t.Key && r.Effect == t.Effect {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, t)
		}
	}
	return out
}

// mergeMissing returns have plus every resource of planned that have lacks or
// reports as zero.
func mergeMissing(have, planned corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(have)+len(planned))
	for k, q := range have {
		out[k] = q
	}
	for k, q := range planned {
		if cur, ok := out[k]; !ok || cur.IsZero() {
			out[k] = q
		}
	}
	return out
}

func addTo(sum, l corev1.ResourceList) {
	for k, q := range l {
		cur := sum[k]
		cur.Add(q)
		sum[k] = cur
	}
}

func sortPods(pods []*corev1.Pod) {
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
}

func podKey(p *corev1.Pod) types.NamespacedName {
	return types.NamespacedName{Namespace: p.Namespace, Name: p.Name}
}
