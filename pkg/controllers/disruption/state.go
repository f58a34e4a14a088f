package disruption

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// ClusterState is one consistent read of everything a disruption decision
// depends on. Building it once per pass means every method of the pass sees
// the same cluster.
type ClusterState struct {
	Now   time.Time
	Pools map[string]*v1.NodePool
	// Claims sorted by name.
	Claims []*v1.NodeClaim
	// Nodes by name.
	Nodes       map[string]*corev1.Node
	NodeOfClaim map[string]*corev1.Node
	ClaimOfNode map[string]*v1.NodeClaim
	// PodsByNode holds the non-terminal pods bound to each node, sorted.
	PodsByNode    map[string][]*corev1.Pod
	PDBs          []*policyv1.PodDisruptionBudget
	DaemonSetPods []*corev1.Pod
	// Volumes confine the pods a what-if moves to where their storage is.
	Volumes *scheduling.Volumes
	// KueueSucceeded counts the succeeded members of Kueue pod groups (see
	// scheduling.Gangs): moved members of such a group are placed as a gang
	// of those still to run, not of the declared total.
	KueueSucceeded map[string]int
	// NominatedPods, when set, are the pending pods the provisioner
	// planned onto an existing node (by node name): a what-if keeps their
	// room as if they were bound.
	NominatedPods func(node string) []*corev1.Pod

	// typesMu guards types: each pool's instance types, asked of the cloud
	// once per pass rather than once per what-if.
	typesMu sync.Mutex
	types   map[string][]*cloudprovider.InstanceType
	// solverTypes is the solver's view of those types, shared by the
	// pass's what-ifs (see solver.TypeCache).
	solverTypesOnce sync.Once
	solverTypes     *solver.TypeCache
	// poolNodes counts each pool's nodes once per state (see PoolNodes).
	poolNodesOnce sync.Once
	poolNodes     map[string][3]int
	pdbsOnce      sync.Once
	pdbsByNS      map[string][]*policyv1.PodDisruptionBudget
	// replacing is replacingSomething's answer, once per state.
	replacingOnce sync.Once
	replacing     map[string]bool
	// held is where pods still to leave going nodes will land (see Simulator.held).
	heldOnce sync.Once
	held     map[string][]heldPod
	heldErr  error
}

// ReadState lists the objects a decision needs through r, which is the
// manager's cache in production.
func ReadState(ctx context.Context, r client.Reader, now time.Time) (*ClusterState, error) {
	st := &ClusterState{
		Now:         now,
		Pools:       map[string]*v1.NodePool{},
		Nodes:       map[string]*corev1.Node{},
		NodeOfClaim: map[string]*corev1.Node{},
		ClaimOfNode: map[string]*v1.NodeClaim{},
		PodsByNode:  map[string][]*corev1.Pod{},
	}
	pools := &v1.NodePoolList{}
	if err := r.List(ctx, pools); err != nil {
		return nil, fmt.Errorf("listing nodepools: %w", err)
	}
	for i := range pools.Items {
		// A pool that does not validate is skipped: its nodes are left alone
		// until it is fixed (the nodepool.validation controller reports it).
		if len(validation.NodePool(&pools.Items[i])) > 0 {
			continue
		}
		st.Pools[pools.Items[i].Name] = &pools.Items[i]
	}
	claims := &v1.NodeClaimList{}
	if err := r.List(ctx, claims); err != nil {
		return nil, fmt.Errorf("listing nodeclaims: %w", err)
	}
	for i := range claims.Items {
		st.Claims = append(st.Claims, &claims.Items[i])
	}
	sort.Slice(st.Claims, func(i, j int) bool { return st.Claims[i].Name < st.Claims[j].Name })
	nodes := &corev1.NodeList{}
	if err := r.List(ctx, nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	byProviderID := map[string]*corev1.Node{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		st.Nodes[n.Name] = n
		if n.Spec.ProviderID != "" {
			byProviderID[n.Spec.ProviderID] = n
		}
	}
	for _, claim := range st.Claims {
		node := byProviderID[claim.Status.ProviderID]
		if node == nil && claim.Status.NodeName != "" {
			node = st.Nodes[claim.Status.NodeName]
		}
		if node != nil {
			st.NodeOfClaim[claim.Name] = node
			st.ClaimOfNode[node.Name] = claim
		}
	}
	pods := &corev1.PodList{}
	if err := r.List(ctx, pods); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var succeeded []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Status.Phase == corev1.PodSucceeded {
			succeeded = append(succeeded, p)
		}
		if p.Spec.NodeName == "" || scheduling.Finished(p) {
			continue
		}
		st.PodsByNode[p.Spec.NodeName] = append(st.PodsByNode[p.Spec.NodeName], p)
	}
	st.KueueSucceeded = scheduling.CountKueueSucceeded(succeeded)
	for _, ps := range st.PodsByNode {
		sort.Slice(ps, func(i, j int) bool {
			if ps[i].Namespace != ps[j].Namespace {
				return ps[i].Namespace < ps[j].Namespace
			}
			return ps[i].Name < ps[j].Name
		})
	}
	pdbs := &policyv1.PodDisruptionBudgetList{}
	if err := r.List(ctx, pdbs); err != nil {
		return nil, fmt.Errorf("listing poddisruptionbudgets: %w", err)
	}
	for i := range pdbs.Items {
		st.PDBs = append(st.PDBs, &pdbs.Items[i])
	}
	dss := &appsv1.DaemonSetList{}
	if err := r.List(ctx, dss); err != nil {
		return nil, fmt.Errorf("listing daemonsets: %w", err)
	}
	for i := range dss.Items {
		ds := &dss.Items[i]
		st.DaemonSetPods = append(st.DaemonSetPods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ds.Namespace, Name: ds.Name, Labels: ds.Spec.Template.Labels},
			Spec:       *ds.Spec.Template.Spec.DeepCopy(),
		})
	}
	vols, err := state.ListVolumes(ctx, r)
	if err != nil {
		return nil, err
	}
	st.Volumes = vols
	return st, nil
}

// PoolNodes counts the pool's initialized claims with a registered node,
// how many of them are already being disrupted (deleting, or tainted by
// Stowage), and how many of the others are not Ready. A machine still
// launching or initializing (a replacement coming up) is none of them: a
// budget's percentage of it would let more active nodes go than the pool asked.
// Budgets ask this per candidate, so every pool is counted once, in one walk.
func (st *ClusterState) PoolNodes(pool string) (total, disrupting, notReady int) {
	st.poolNodesOnce.Do(func() {
		st.poolNodes = map[string][3]int{}
		for _, claim := range st.Claims {
			node := st.NodeOfClaim[claim.Name]
			if node == nil || !conditions.IsTrue(claim.Status.Conditions, v1.ConditionInitialized) {
				continue
			}
			name := claim.Labels[v1.LabelNodePool]
			n := st.poolNodes[name]
			n[0]++
			switch {
			case claim.DeletionTimestamp != nil || node.DeletionTimestamp != nil || hasDisruptedTaint(node):
				n[1]++
			case !nodeReady(node):
				n[2]++
			}
			st.poolNodes[name] = n
		}
	})
	n := st.poolNodes[pool]
	return n[0], n[1], n[2]
}

// pdbsIn returns the PodDisruptionBudgets of a namespace, indexing them on
// first use: a blocker check per pod must not walk every budget.
func (st *ClusterState) pdbsIn(namespace string) []*policyv1.PodDisruptionBudget {
	st.pdbsOnce.Do(func() {
		st.pdbsByNS = map[string][]*policyv1.PodDisruptionBudget{}
		for _, pdb := range st.PDBs {
			st.pdbsByNS[pdb.Namespace] = append(st.pdbsByNS[pdb.Namespace], pdb)
		}
	})
	return st.pdbsByNS[namespace]
}

// InstanceTypes returns what pool may buy, asking the cloud once per state.
func (st *ClusterState) InstanceTypes(ctx context.Context, cloud InstanceTyper, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	st.typesMu.Lock()
	defer st.typesMu.Unlock()
	if its, ok := st.types[pool.Name]; ok {
		return its, nil
	}
	its, err := cloud.InstanceTypes(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("instance types of nodepool %s: %w", pool.Name, err)
	}
	if st.types == nil {
		st.types = map[string][]*cloudprovider.InstanceType{}
	}
	st.types[pool.Name] = its
	return its, nil
}

// SpendCommitments takes what a decided command's new machines draw on
// commitments (by name) out of the pass's prices, so later what-ifs of the
// pass see the coverage left: two commands once each put a replacement on a
// Reserved Instance that covers one machine.
func (st *ClusterState) SpendCommitments(spent map[string]float64) {
	if len(spent) == 0 {
		return
	}
	st.typesMu.Lock()
	defer st.typesMu.Unlock()
	draws := func(o cloudprovider.Offering) bool { return o.Commitment != "" && spent[o.Commitment] > 0 }
	for pool, its := range st.types {
		out := slices.Clone(its)
		for i, it := range its {
			if !slices.ContainsFunc(it.Offerings, draws) {
				continue
			}
			cp := *it
			cp.Offerings = slices.Clone(it.Offerings)
			for j := range cp.Offerings {
				if o := &cp.Offerings[j]; draws(*o) {
					o.CommitmentLeft = max(o.CommitmentLeft-spent[o.Commitment], 0)
				}
			}
			out[i] = &cp
		}
		st.types[pool] = out
	}
}

// SolverTypes is the solver's type cache for this state's what-ifs: the
// pools, instance types and DaemonSet pods stay the same for a pass.
func (st *ClusterState) SolverTypes() *solver.TypeCache {
	st.solverTypesOnce.Do(func() { st.solverTypes = solver.NewTypeCache(st.DaemonSetPods) })
	return st.solverTypes
}

// nodeReady reports whether the node's Ready condition is True.
func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// notReadySince is when the node's Ready condition last turned False or
// Unknown, and whether it is not Ready now.
func notReadySince(node *corev1.Node) (time.Time, bool) {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return time.Time{}, false
			}
			return c.LastTransitionTime.Time, true
		}
	}
	// A node that never reported: the kubelet never started; registration
	// and initialization handle it, not repair.
	return time.Time{}, false
}

func hasDisruptedTaint(node *corev1.Node) bool {
	for _, t := range node.Spec.Taints {
		if t.Key == v1.DisruptedTaintKey {
			return true
		}
	}
	return false
}

// reschedulable reports whether a pod must find another node when its node
// goes: DaemonSet pods go with the node, mirror pods belong to the kubelet.
func reschedulable(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	if scheduling.DaemonSetPod(p) {
		return false
	}
	return !scheduling.Finished(p)
}

// gangs is g knowing the state's succeeded Kueue group members.
func (st *ClusterState) gangs(g scheduling.Gangs) scheduling.Gangs {
	g.KueueSucceeded = st.KueueSucceeded
	return g
}
