package disruption

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pkg/utils/devices"
)

// Solver plans pods onto existing and new nodes; solver.Solve is the implementation.
type Solver interface {
	Solve(ctx context.Context, snapshot *solver.Snapshot) (*solver.Plan, error)
}

// SolverFunc adapts a function to Solver.
type SolverFunc func(ctx context.Context, snapshot *solver.Snapshot) (*solver.Plan, error)

// Solve calls f.
func (f SolverFunc) Solve(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) {
	return f(ctx, s)
}

// InstanceTyper is the part of the cloud provider a what-if needs.
type InstanceTyper interface {
	InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error)
}

var _ InstanceTyper = (cloudprovider.CloudProvider)(nil)

// Simulator answers "what if these nodes were gone?" with the same solver
// provisioning uses, so a disruption never plans something provisioning
// would not.
type Simulator struct {
	Solver Solver
	Cloud  InstanceTyper
	// Reader, when set, reads the DRA objects pods' ResourceClaims are
	// planned against, so a what-if never moves a pod away from the devices
	// it claims.
	Reader client.Reader
	// Gangs recognises the gangs among the moved pods.
	Gangs   scheduling.Gangs
	devices *scheduling.DeviceMatcher
}

// Simulation is the answer to one what-if.
type Simulation struct {
	Plan *solver.Plan
	// Pods are the removed nodes' pods, as handed to the solver.
	Pods []*corev1.Pod
}

// Feasible reports whether every pod found a place.
func (s *Simulation) Feasible() bool { return len(s.Plan.Unschedulable) == 0 }

// noPlace is why an infeasible what-if holds a command. It names no pod or
// figure: events repeat only when the cause changes.
func noPlace(s *Simulation) string {
	for _, u := range s.Plan.Unschedulable {
		if !strings.HasPrefix(u.Reason, waitsForLaunch) {
			return "its pods would have no place"
		}
	}
	return "its pods would wait for a machine still launching"
}

// waitsForLaunch starts the reason of a pod whose only place is launching.
const waitsForLaunch = "would wait for "

// Overlay is what other commands of the same pass will do to the cluster:
// nodes they remove, pods they move onto nodes that stay, and machines they
// launch. A what-if on top of it never plans into room another command has
// taken, so several commands can be decided in one pass.
type Overlay struct {
	removed map[string]bool          // claim names
	bound   map[string][]*corev1.Pod // node (or planned node) name -> pods moved there
	added   []*solver.NewNode
}

// Add records a command's effect.
func (o *Overlay) Add(cmd Command) {
	if o.removed == nil {
		o.removed, o.bound = map[string]bool{}, map[string][]*corev1.Pod{}
	}
	for _, c := range cmd.Candidates {
		o.removed[c.Claim.Name] = true
	}
	for _, b := range cmd.Bindings {
		o.bound[b.NodeName] = append(o.bound[b.NodeName], b.Pod)
	}
	o.added = append(o.added, cmd.Replacements...)
}

// plannedName names the i-th machine of an overlay in what-ifs.
func plannedName(i int) string { return fmt.Sprintf("planned-%d", i) }

// Simulate removes the named nodes from the cluster (on top of overlay,
// which may be nil) and plans their pods onto what remains plus new
// machines. Nodes being disrupted, cordoned or deleted are not offered as
// places; a pod planned onto an in-flight claim finds no place (see
// withoutLaunching). Pods are confined to where their volumes are.
func (s *Simulator) Simulate(ctx context.Context, st *ClusterState, remove []*Candidate, overlay *Overlay) (*Simulation, error) {
	removed, leaving := map[string]bool{}, map[string]bool{}
	var pods, placeable []*corev1.Pod
	var confined []solver.Unschedulable
	for _, c := range remove {
		removed[c.Claim.Name] = true
		leaving[c.Node.Name] = true
		for _, p := range c.Pods {
			cp, err := s.movedCopy(st, p)
			if err != nil {
				// Planned without its volumes' topology, the pod could be
				// moved away from its data: if that cannot be read, it has
				// no place, and the command does not run.
				confined = append(confined, solver.Unschedulable{Pod: cp, Reason: err.Error()})
				pods = append(pods, cp)
				continue
			}
			placeable = append(placeable, cp)
			pods = append(pods, cp)
		}
	}
	held, err := s.held(ctx, st)
	if err != nil {
		return nil, err
	}
	snap, err := s.snapshot(ctx, st, removed, overlay, held, leaving)
	if err != nil {
		return nil, err
	}
	// Pods still to leave a going node whose room was on a node this
	// what-if removes need another place: without one the command would
	// leave them pending.
	for _, c := range remove {
		placeable = append(placeable, heldOn(held, c.Node.Name, leaving)...)
	}
	snap.Pods = placeable
	snap.Gangs = st.gangs(s.Gangs)
	// Moved pods' claims count against the attach limits where they land.
	snap.Volumes = st.Volumes
	if s.Reader != nil {
		if s.devices == nil {
			s.devices = scheduling.NewDeviceMatcher()
		}
		if snap.DRA, err = devices.Read(ctx, s.Reader, s.devices, placeable, snap.Nodes); err != nil {
			return nil, err
		}
	}
	plan, err := s.Solver.Solve(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("solving what-if without %d node(s): %w", len(remove), err)
	}
	withoutLaunching(plan, snap.Nodes)
	plan.Unschedulable = append(plan.Unschedulable, confined...)
	return &Simulation{Plan: plan, Pods: pods}, nil
}

// withoutLaunching turns the plan's bindings onto nodes still launching (a
// claim not registered yet, or another command's replacement) into pods
// without a place: a pod evicted now would wait for that machine, or for a
// new one if its launch fails. A command relying on one waits for a later
// pass, when the machine is up.
func withoutLaunching(plan *solver.Plan, nodes []*solver.Node) {
	launching := map[string]bool{}
	for _, n := range nodes {
		if n.InFlight {
			launching[n.Name] = true
		}
	}
	if len(launching) == 0 {
		return
	}
	kept := plan.Bindings[:0]
	for _, b := range plan.Bindings {
		if launching[b.NodeName] {
			plan.Unschedulable = append(plan.Unschedulable, solver.Unschedulable{Pod: b.Pod,
				Reason: fmt.Sprintf("%s%s, which is still launching", waitsForLaunch, b.NodeName)})
			continue
		}
		kept = append(kept, b)
	}
	plan.Bindings = kept
}

// movedCopy is p as a pod to place again: unbound, and confined to where
// its volumes are.
func (s *Simulator) movedCopy(st *ClusterState, p *corev1.Pod) (*corev1.Pod, error) {
	cp := p.DeepCopy()
	cp.Spec.NodeName = ""
	if st.Volumes == nil || !scheduling.UsesClaims(cp) {
		return cp, nil
	}
	q, err := st.Volumes.WithTopologyMoved(cp)
	if err != nil {
		return cp, err
	}
	return q, nil
}

// heldPod is a pod still running on a going node, and so still to move.
type heldPod struct {
	pod  *corev1.Pod
	from string // the going node
}

// held is where the pods still to leave going nodes (deleted, disrupted or
// interrupted by an earlier pass, not yet evicted) will land among the
// nodes that stay, by node name. A what-if leaves that room to them:
// planning another command's pods into it would send one of the two to
// Pending once both drains finish, though each command found its pods a
// place. It is planned once per state, without new machines; pods with no
// place hold nothing (the provisioner buys for them once they are evicted),
// terminating pods hold nothing (their replacements are pending pods,
// whose room the provisioner's nominations keep), nor do do-not-disrupt
// pods, which the drain leaves to finish where they are (a room held for
// them could be held for good).
func (s *Simulator) held(ctx context.Context, st *ClusterState) (map[string][]heldPod, error) {
	st.heldOnce.Do(func() {
		from := map[*corev1.Pod]string{}
		var pods []*corev1.Pod
		for name, node := range st.Nodes {
			if !going(st, node) {
				continue
			}
			for _, p := range st.PodsByNode[name] {
				if !reschedulable(p) || p.DeletionTimestamp != nil || v1.DoNotDisrupt(p.Annotations) {
					continue
				}
				cp, err := s.movedCopy(st, p)
				if err != nil {
					continue
				}
				from[cp] = name
				pods = append(pods, cp)
			}
		}
		if len(pods) == 0 {
			return
		}
		sort.Slice(pods, func(i, j int) bool { return podKey(pods[i]) < podKey(pods[j]) })
		snap, err := s.snapshot(ctx, st, nil, nil, nil, nil)
		if err != nil {
			st.heldErr = err
			return
		}
		snap.Pods, snap.NodePools, snap.Gangs = pods, nil, st.gangs(s.Gangs)
		// Their room is where their volumes can attach, as in a what-if.
		snap.Volumes = st.Volumes
		plan, err := s.Solver.Solve(ctx, snap)
		if err != nil {
			st.heldErr = fmt.Errorf("planning the pods of draining nodes: %w", err)
			return
		}
		st.held = map[string][]heldPod{}
		for _, b := range plan.Bindings {
			st.held[b.NodeName] = append(st.held[b.NodeName], heldPod{pod: b.Pod, from: from[b.Pod]})
		}
	})
	return st.held, st.heldErr
}

// going reports whether a node is on its way out: its claim or itself is
// being deleted, it is tainted by a disruption, or the cloud is taking it back.
func going(st *ClusterState, node *corev1.Node) bool {
	if node.DeletionTimestamp != nil || hasDisruptedTaint(node) {
		return true
	}
	claim := st.ClaimOfNode[node.Name]
	return claim != nil && (claim.DeletionTimestamp != nil || conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted))
}

// heldOn is the pods whose room is held on node, less those leaving the
// nodes in leaving (a what-if's own, placed as its pods).
func heldOn(held map[string][]heldPod, node string, leaving map[string]bool) []*corev1.Pod {
	var out []*corev1.Pod
	for _, h := range held[node] {
		if !leaving[h.from] {
			out = append(out, h.pod)
		}
	}
	return out
}

func podKey(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// Snapshot is the cluster without the claims in removed (and those the
// overlay removes), with the overlay's moves and machines, and without pods
// to place.
func (s *Simulator) Snapshot(ctx context.Context, st *ClusterState, removed map[string]bool, overlay *Overlay) (*solver.Snapshot, error) {
	held, err := s.held(ctx, st)
	if err != nil {
		return nil, err
	}
	return s.snapshot(ctx, st, removed, overlay, held, nil)
}

// snapshot is Snapshot with the room held for pods still leaving going
// nodes, except those leaving the nodes in leaving (a what-if's own).
func (s *Simulator) snapshot(ctx context.Context, st *ClusterState, removed map[string]bool, overlay *Overlay, held map[string][]heldPod, leaving map[string]bool) (*solver.Snapshot, error) {
	if overlay == nil {
		overlay = &Overlay{}
	}
	gone := func(claim string) bool { return removed[claim] || overlay.removed[claim] }
	snap := &solver.Snapshot{DaemonSetPods: st.DaemonSetPods, Types: st.SolverTypes()}
	types := map[string]map[string]*cloudprovider.InstanceType{}
	poolNames := make([]string, 0, len(st.Pools))
	for name := range st.Pools {
		poolNames = append(poolNames, name)
	}
	sort.Strings(poolNames)
	usage := map[string]corev1.ResourceList{}
	one := corev1.ResourceList{state.ResourceNodes: *resource.NewQuantity(1, resource.DecimalSI)}
	for _, name := range poolNames {
		pool := st.Pools[name]
		if pool.DeletionTimestamp != nil {
			continue
		}
		its, err := st.InstanceTypes(ctx, s.Cloud, pool)
		if err != nil {
			return nil, err
		}
		types[name] = map[string]*cloudprovider.InstanceType{}
		for _, it := range its {
			types[name][it.Name] = it
		}
		usage[name] = corev1.ResourceList{}
		snap.NodePools = append(snap.NodePools, &solver.NodePool{NodePool: pool, InstanceTypes: its, Usage: usage[name]})
	}
	for _, claim := range st.Claims {
		if gone(claim.Name) {
			continue
		}
		pool := claim.Labels[v1.LabelNodePool]
		node := st.NodeOfClaim[claim.Name]
		capacity, alloc := claimResources(claim, types[pool])
		if node != nil && len(node.Status.Capacity) > 0 {
			capacity = node.Status.Capacity
		}
		if u, ok := usage[pool]; ok {
			addTo(u, capacity)
			addTo(u, one)
		}
		if claim.DeletionTimestamp != nil || node != nil {
			continue
		}
		// In flight: offer what is left once the pods it was bought for land.
		pods := slices.Clone(overlay.bound[claim.Name])
		pods = append(pods, heldOn(held, claim.Name, leaving)...)
		snap.Nodes = append(snap.Nodes, &solver.Node{
			Name:         claim.Name,
			Labels:       claimLabels(claim),
			Taints:       claim.Spec.Taints,
			Allocatable:  subtract(alloc, claim.Spec.Resources.Requests),
			Pods:         pods,
			PricePerHour: claimPrice(claim),
			InFlight:     true,
		})
	}
	nodeNames := make([]string, 0, len(st.Nodes))
	for name := range st.Nodes {
		nodeNames = append(nodeNames, name)
	}
	sort.Strings(nodeNames)
	replacing := replacingSomething(st)
	for _, name := range nodeNames {
		node := st.Nodes[name]
		claim := st.ClaimOfNode[name]
		if claim != nil && (gone(claim.Name) || claim.DeletionTimestamp != nil ||
			conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted)) {
			// Going: deleted, or taken back by the cloud (marked before its
			// node is tainted).
			continue
		}
		if node.DeletionTimestamp != nil || node.Spec.Unschedulable || hasDisruptedTaint(node) {
			continue
		}
		n := &solver.Node{
			Name:        node.Name,
			Labels:      node.Labels,
			Taints:      node.Spec.Taints,
			Allocatable: node.Status.Allocatable,
			Pods:        append(append([]*corev1.Pod(nil), st.PodsByNode[name]...), overlay.bound[name]...),
		}
		n.Pods = append(n.Pods, heldOn(held, name, leaving)...)
		if st.NominatedPods != nil {
			// Room the provisioner promised to pods not bound yet is not
			// free; a pod the cache already shows bound is counted once.
			for _, p := range st.NominatedPods(name) {
				if !slices.ContainsFunc(n.Pods, func(q *corev1.Pod) bool { return q.UID == p.UID }) {
					n.Pods = append(n.Pods, p)
				}
			}
		}
		if claim != nil {
			n.PricePerHour = claimPrice(claim)
			// A replacement whose predecessor still drains looks free, but
			// its room is promised to the pods still to come off it: a
			// command relying on it waits, as for a machine launching.
			n.InFlight = replacing[claim.Annotations[AnnotationReplacementFor]]
		}
		snap.Nodes = append(snap.Nodes, n)
	}
	for i, n := range overlay.added {
		pn := plannedNode(plannedName(i), n, st.Pools[n.NodePool])
		if pn == nil {
			continue
		}
		pn.Pods = append(pn.Pods, overlay.bound[pn.Name]...)
		snap.Nodes = append(snap.Nodes, pn)
		if u, ok := usage[n.NodePool]; ok {
			addTo(u, n.Choices[0].InstanceType.Capacity)
			addTo(u, one)
		}
	}
	return snap, nil
}

// plannedNode is a machine another command of the pass will launch, as an
// in-flight node holding its planned pods. Its room is the instance type's
// allocatable less the DaemonSet pods the plan counted for it.
func plannedNode(name string, n *solver.NewNode, pool *v1.NodePool) *solver.Node {
	if len(n.Choices) == 0 {
		return nil
	}
	ch := n.Choices[0]
	labels := map[string]string{}
	for k, v := range ch.InstanceType.Labels {
		labels[k] = v
	}
	if pool != nil {
		for k, v := range pool.Spec.Template.ObjectMeta.Labels {
			labels[k] = v
		}
	}
	for _, r := range n.Requirements {
		if r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 1 {
			labels[r.Key] = r.Values[0]
		}
	}
	labels[v1.LabelNodePool] = n.NodePool
	labels[v1.LabelInstanceType] = ch.InstanceType.Name
	labels[v1.LabelZone] = ch.Offering.Zone
	labels[v1.LabelCapacityType] = ch.Offering.CapacityType
	labels[v1.LabelHostname] = name
	var taints []corev1.Taint
	if pool != nil {
		taints = pool.Spec.Template.Spec.Taints
	}
	var podSum scheduling.Resources
	for _, p := range n.Pods {
		podSum = podSum.Add(scheduling.PodRequests(p))
	}
	overhead := nonNegative(scheduling.FromList(n.Requests).Sub(podSum))
	alloc := scheduling.FromList(ch.InstanceType.Allocatable()).Sub(overhead)
	return &solver.Node{
		Name:         name,
		Labels:       labels,
		Taints:       taints,
		Allocatable:  nonNegative(alloc).ToList(),
		Pods:         append([]*corev1.Pod(nil), n.Pods...),
		PricePerHour: n.PricePerHour(),
		InFlight:     true,
	}
}

func nonNegative(r scheduling.Resources) scheduling.Resources {
	for i := range r.Fixed {
		r.Fixed[i] = max(r.Fixed[i], 0)
	}
	for k, v := range r.Ext {
		r.Ext[k] = max(v, 0)
	}
	return r
}

// claimResources is the capacity and allocatable a claim has or will have.
func claimResources(claim *v1.NodeClaim, types map[string]*cloudprovider.InstanceType) (capacity, alloc corev1.ResourceList) {
	if len(claim.Status.Allocatable) > 0 {
		capacity = claim.Status.Capacity
		if len(capacity) == 0 {
			capacity = claim.Status.Allocatable
		}
		return capacity, claim.Status.Allocatable
	}
	if len(claim.Spec.Offerings) > 0 {
		if it, ok := types[claim.Spec.Offerings[0].InstanceType]; ok {
			return it.Capacity, it.Allocatable()
		}
	}
	return claim.Spec.Resources.Requests, claim.Spec.Resources.Requests
}

// claimLabels are the labels an in-flight claim's node will surely have.
func claimLabels(claim *v1.NodeClaim) map[string]string {
	out := claims.Labels(claim)
	out[v1.LabelHostname] = claim.Name
	return out
}

func addTo(sum, l corev1.ResourceList) {
	for k, q := range l {
		cur := sum[k]
		cur.Add(q)
		sum[k] = cur
	}
}

// subtract returns a - b, floored at zero per resource.
func subtract(a, b corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(a))
	for k, q := range a {
		r := q.DeepCopy()
		if s, ok := b[k]; ok {
			r.Sub(s)
			if r.Sign() < 0 {
				r.Set(0)
			}
		}
		out[k] = r
	}
	return out
}
