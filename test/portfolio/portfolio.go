// Package portfolio replays a day of the seed article's AI portfolio through
// the solver and the disruption methods, without a cluster, and prices it
// against static provisioning. docs/disruption.md defines the workloads.
package portfolio

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/disruption"
	claimconditions "github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/disruption"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// DaysPerMonth turns a day's cost into a month's, as the seed article does.
const DaysPerMonth = 30

// LabelWorkload is the pool template label each workload's pods select.
const LabelWorkload = "portfolio.stowage.dev/workload"

// Window is a daily interval [From, To) since midnight.
type Window struct{ From, To time.Duration }

// Workload is a set of identical pods that run during its windows.
type Workload struct {
	Name string
	// Pool the pods run in; see Pools.
	Pool     string
	Replicas int
	CPU      string
	Memory   string
	GPUs     int
	// Gang pods are planned all-or-nothing.
	Gang bool
	// Windows when the pods run; nil means all day.
	Windows []Window
}

// Active reports whether the workload runs at offset since midnight.
func (w Workload) Active(offset time.Duration) bool {
	if w.Windows == nil {
		return true
	}
	for _, win := range w.Windows {
		if offset >= win.From && offset < win.To {
			return true
		}
	}
	return false
}

// Seeds is the seed article's portfolio, sized as documented in docs/disruption.md.
func Seeds() []Workload {
	var out []Workload
	for _, ep := range []string{"chat", "embed", "rerank"} {
		out = append(out, Workload{Name: "infer-" + ep, Pool: "inference", Replicas: 2, CPU: "8", Memory: "32Gi", GPUs: 1})
	}
	out = append(out,
		Workload{Name: "train-a", Pool: "training", Replicas: 8, CPU: "80", Memory: "900Gi", GPUs: 8, Gang: true,
			Windows: []Window{{From: 1 * time.Hour, To: 5 * time.Hour}}},
		Workload{Name: "train-b", Pool: "training", Replicas: 8, CPU: "80", Memory: "900Gi", GPUs: 8, Gang: true,
			Windows: []Window{{From: 13 * time.Hour, To: 17 * time.Hour}}},
		Workload{Name: "batch", Pool: "batch", Replicas: 20, CPU: "4", Memory: "16Gi", GPUs: 1,
			Windows: []Window{{From: 9 * time.Hour, To: 17 * time.Hour}}},
	)
	return out
}

// Pools are the NodePools the portfolio runs in. Inference and training buy
// on-demand; batch may buy spot unless static is set, since static
// provisioning buys everything on-demand.
func Pools(static bool) []*v1.NodePool {
	req := func(key string, op corev1.NodeSelectorOperator, vals ...string) v1.NodeSelectorRequirementWithMinValues {
		return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: vals}
	}
	// A10G/L4 class: a whole GPU of at least 20 GiB (excludes fractional L4 types).
	midGPU := []v1.NodeSelectorRequirementWithMinValues{
		req(v1.LabelGPUName, corev1.NodeSelectorOpIn, "a10g", "l4"),
		req(v1.LabelGPUMemory, corev1.NodeSelectorOpGt, "20000"),
	}
	batchCapacity := []string{v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}
	if static {
		batchCapacity = []string{v1.CapacityTypeOnDemand}
	}
	mk := func(name string, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodePool {
		return &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1.NodePoolSpec{
				Template: v1.NodeClaimTemplate{
					ObjectMeta: v1.ObjectMeta{Labels: map[string]string{LabelWorkload: name}},
					Spec:       v1.NodeClaimTemplateSpec{Requirements: reqs, ExpireAfter: v1.Never},
				},
				// Commands complete at once in the replay, so the budget only
				// caps the size of one multi-node command; 10% would forbid
				// merging a pool of six nodes at all.
				Disruption: v1.Disruption{
					ConsolidationPolicy: v1.ConsolidationPolicyWhenEmptyOrUnderutilized,
					ConsolidateAfter:    v1.DurationOf(0),
					Budgets:             []v1.Budget{{Nodes: "100%"}},
				},
			},
		}
	}
	return []*v1.NodePool{
		mk("inference", append([]v1.NodeSelectorRequirementWithMinValues{
			req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)}, midGPU...)...),
		mk("training", req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand),
			req(v1.LabelGPUName, corev1.NodeSelectorOpIn, "h100", "a100")),
		mk("batch", append([]v1.NodeSelectorRequirementWithMinValues{
			req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, batchCapacity...)}, midGPU...)...),
	}
}

// Pods are the workload's pods.
func (w Workload) Pods() []*corev1.Pod {
	out := make([]*corev1.Pod, 0, w.Replicas)
	for i := range w.Replicas {
		name := fmt.Sprintf("%s-%d", w.Name, i)
		req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(w.CPU), corev1.ResourceMemory: resource.MustParse(w.Memory)}
		if w.GPUs > 0 {
			req[v1.ResourceNvidiaGPU] = *resource.NewQuantity(int64(w.GPUs), resource.DecimalSI)
		}
		labels := map[string]string{"app": w.Name}
		if w.Gang {
			labels[v1.LabelPodGroup] = w.Name
			labels[v1.LabelPodGroupSize] = strconv.Itoa(w.Replicas)
		}
		out = append(out, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "portfolio", Name: name, UID: types.UID(name), Labels: labels},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{LabelWorkload: w.Pool},
				Containers:   []corev1.Container{{Name: "main", Resources: corev1.ResourceRequirements{Requests: req}}},
			},
		})
	}
	return out
}

// StaticPerHour is the hourly price of static provisioning: each
// workload's peak pods planned alone, on empty on-demand capacity, kept all day.
func StaticPerHour(ctx context.Context, cat disruption.InstanceTyper, workloads []Workload) (map[string]float64, error) {
	pools, err := solverPools(ctx, cat, Pools(true))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, w := range workloads {
		plan, err := solver.Solve(ctx, &solver.Snapshot{Pods: w.Pods(), NodePools: pools})
		if err != nil {
			return nil, fmt.Errorf("static plan for %s: %w", w.Name, err)
		}
		if len(plan.Unschedulable) > 0 {
			return nil, fmt.Errorf("static plan for %s: %d pods fit no instance type: %s", w.Name,
				len(plan.Unschedulable), plan.Unschedulable[0].Reason)
		}
		out[w.Name] = plan.CostPerHour
	}
	return out, nil
}

func solverPools(ctx context.Context, cat disruption.InstanceTyper, pools []*v1.NodePool) ([]*solver.NodePool, error) {
	var out []*solver.NodePool
	for _, p := range pools {
		its, err := cat.InstanceTypes(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("instance types of nodepool %s: %w", p.Name, err)
		}
		out = append(out, &solver.NodePool{NodePool: p, InstanceTypes: its, Usage: corev1.ResourceList{}})
	}
	return out, nil
}

// Step is the fleet during one interval of the replay.
type Step struct {
	Offset      time.Duration
	Nodes       int
	PerHour     float64
	Spot        int
	Disruptions int
}

// Replay is the Stowage side of the day.
type Replay struct {
	Steps []Step
	// PerDay is the day's cost: each step's fleet price for the step's length.
	PerDay float64
	// Commands counts executed disruption commands by "method/action".
	Commands map[string]int
	// Launched counts machines bought over the day.
	Launched int
}

// node is one machine in the replay.
type node struct {
	name    string
	pool    *v1.NodePool
	it      *cloudprovider.InstanceType
	off     cloudprovider.Offering
	pods    map[string]*corev1.Pod
	created time.Time
	changed time.Time
}

// maxPassesPerStep bounds the disruption passes in one step: the controller
// runs every 10 s, 90 times in 15 minutes.
const maxPassesPerStep = 90

// RunDay replays the workloads over one day in steps of step: at each step
// finished pods leave, new pods are provisioned with the solver, then the
// disruption methods (emptiness, then consolidation) run
// until they find nothing more, each command completing at once.
func RunDay(ctx context.Context, cat disruption.InstanceTyper, workloads []Workload, step time.Duration) (*Replay, error) {
	day := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	pools := Pools(false)
	poolByName := map[string]*v1.NodePool{}
	for _, p := range pools {
		poolByName[p.Name] = p
	}
	spools, err := solverPools(ctx, cat, pools)
	if err != nil {
		return nil, err
	}
	sim := &disruption.Simulator{Solver: disruption.SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) {
		return solver.Solve(ctx, s)
	}), Cloud: cat}
	methods := []disruption.Method{disruption.Emptiness{}, disruption.Consolidation{}}
	out := &Replay{Commands: map[string]int{}}
	var fleet []*node
	seq := 0
	add := func(pool *v1.NodePool, ch solver.Choice, pods []*corev1.Pod, now time.Time) {
		seq++
		n := &node{name: fmt.Sprintf("node-%03d", seq), pool: pool, it: ch.InstanceType, off: ch.Offering,
			pods: map[string]*corev1.Pod{}, created: now, changed: now}
		for _, p := range pods {
			n.pods[p.Name] = p
		}
		fleet = append(fleet, n)
		out.Launched++
	}
	for offset := time.Duration(0); offset < 24*time.Hour; offset += step {
		now := day.Add(offset)
		want := map[string]*corev1.Pod{}
		for _, w := range workloads {
			if w.Active(offset) {
				for _, p := range w.Pods() {
					want[p.Name] = p
				}
			}
		}
		// Finished pods leave their nodes.
		placed := map[string]bool{}
		for _, n := range fleet {
			for name := range n.pods {
				if want[name] == nil {
					delete(n.pods, name)
					n.changed = now
				} else {
					placed[name] = true
				}
			}
		}
		// New pods are provisioned.
		var pending []*corev1.Pod
		for _, name := range sortedKeys(want) {
			if !placed[name] {
				pending = append(pending, want[name])
			}
		}
		if len(pending) > 0 {
			snap := &solver.Snapshot{Pods: pending, NodePools: spools}
			for _, n := range fleet {
				snap.Nodes = append(snap.Nodes, n.solverNode())
			}
			plan, err := solver.Solve(ctx, snap)
			if err != nil {
				return nil, fmt.Errorf("provisioning at %s: %w", offset, err)
			}
			if len(plan.Unschedulable) > 0 {
				return nil, fmt.Errorf("provisioning at %s: pod %s: %s", offset, plan.Unschedulable[0].Pod.Name, plan.Unschedulable[0].Reason)
			}
			applyBindings(fleet, plan.Bindings, now)
			for _, nn := range plan.NewNodes {
				add(poolByName[nn.NodePool], nn.Choices[0], nn.Pods, now)
			}
		}
		// Disruption passes.
		disrupted := 0
		for range maxPassesPerStep {
			st := clusterState(now, pools, fleet)
			cands := disruption.BuildCandidates(st, nil)
			e := disruption.NewEvaluation(st, sim, disruption.DefaultChurnGuard())
			cmd, err := firstCommand(ctx, e, methods, cands)
			if err != nil {
				return nil, fmt.Errorf("disruption at %s: %w", offset, err)
			}
			if cmd.IsEmpty() {
				break
			}
			disrupted += len(cmd.Candidates)
			out.Commands[cmd.Method+"/"+string(cmd.Action())]++
			gone := map[string]bool{}
			for _, c := range cmd.Candidates {
				gone[c.Node.Name] = true
			}
			fleet = slices.DeleteFunc(fleet, func(n *node) bool { return gone[n.name] })
			applyBindings(fleet, cmd.Bindings, now)
			for _, r := range cmd.Replacements {
				add(poolByName[r.NodePool], r.Choices[0], r.Pods, now)
			}
		}
		s := Step{Offset: offset, Nodes: len(fleet), Disruptions: disrupted}
		for _, n := range fleet {
			s.PerHour += n.off.PricePerHour
			if n.off.CapacityType == v1.CapacityTypeSpot {
				s.Spot++
			}
		}
		out.Steps = append(out.Steps, s)
		out.PerDay += s.PerHour * step.Hours()
	}
	return out, nil
}

func firstCommand(ctx context.Context, e *disruption.Evaluation, methods []disruption.Method, cands []*disruption.Candidate) (disruption.Command, error) {
	for _, m := range methods {
		var want []*disruption.Candidate
		for _, c := range cands {
			if m.ShouldDisrupt(e, c) {
				want = append(want, c)
			}
		}
		if len(want) == 0 {
			continue
		}
		cmds, err := m.ComputeCommands(ctx, e, want)
		if err != nil || len(cmds) > 0 {
			// The replay completes one command at a time, each seeing the last.
			return first(cmds), err
		}
	}
	return disruption.Command{}, nil
}

func first(cmds []disruption.Command) disruption.Command {
	if len(cmds) == 0 {
		return disruption.Command{}
	}
	return cmds[0]
}

func applyBindings(fleet []*node, bindings []solver.Binding, now time.Time) {
	for _, b := range bindings {
		for _, n := range fleet {
			if n.name == b.NodeName {
				p := b.Pod.DeepCopy()
				p.Spec.NodeName = ""
				n.pods[p.Name] = p
				n.changed = now
			}
		}
	}
}

func (n *node) labels() map[string]string {
	l := scheduling.NodeLabels(n.it, n.pool)
	l[v1.LabelInstanceType] = n.it.Name
	l[v1.LabelZone] = n.off.Zone
	l[v1.LabelCapacityType] = n.off.CapacityType
	l[v1.LabelHostname] = n.name
	l[v1.LabelNodeClaim] = n.name
	return l
}

func (n *node) sortedPods() []*corev1.Pod {
	out := make([]*corev1.Pod, 0, len(n.pods))
	for _, name := range sortedKeys(n.pods) {
		p := n.pods[name].DeepCopy()
		p.Spec.NodeName = n.name
		p.Status.Phase = corev1.PodRunning
		out = append(out, p)
	}
	return out
}

func (n *node) solverNode() *solver.Node {
	return &solver.Node{Name: n.name, Labels: n.labels(), Allocatable: n.it.Allocatable(), Pods: n.sortedPods(),
		PricePerHour: n.off.PricePerHour}
}

// clusterState is the fleet as the disruption controller would read it.
func clusterState(now time.Time, pools []*v1.NodePool, fleet []*node) *disruption.ClusterState {
	st := &disruption.ClusterState{Now: now, Pools: map[string]*v1.NodePool{}, Nodes: map[string]*corev1.Node{},
		NodeOfClaim: map[string]*corev1.Node{}, ClaimOfNode: map[string]*v1.NodeClaim{}, PodsByNode: map[string][]*corev1.Pod{}}
	for _, p := range pools {
		st.Pools[p.Name] = p
	}
	for _, n := range fleet {
		pid := "replay://" + n.name
		claim := &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{v1.LabelNodePool: n.pool.Name},
				CreationTimestamp: metav1.NewTime(n.created)},
			Spec: v1.NodeClaimSpec{ExpireAfter: v1.Never, Offerings: []v1.OfferingChoice{{InstanceType: n.it.Name,
				Zone: n.off.Zone, CapacityType: n.off.CapacityType}}},
			Status: v1.NodeClaimStatus{ProviderID: pid, NodeName: n.name, InstanceType: n.it.Name, Zone: n.off.Zone,
				CapacityType: n.off.CapacityType, PricePerHour: strconv.FormatFloat(n.off.PricePerHour, 'f', -1, 64),
				Allocatable: n.it.Allocatable(), Capacity: n.it.Capacity, LastPodEventTime: metav1.NewTime(n.changed),
				Conditions: []metav1.Condition{{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue,
					LastTransitionTime: metav1.NewTime(n.created)}}},
		}
		// What the nodeclaim.disruption controller would have set by now.
		if at, ok := claimconditions.ConsolidatableAt(n.pool, claim); ok && !now.Before(at) {
			claim.Status.Conditions = append(claim.Status.Conditions, metav1.Condition{Type: v1.ConditionConsolidatable,
				Status: metav1.ConditionTrue, Reason: claimconditions.ReasonConsolidatable, LastTransitionTime: metav1.NewTime(at)})
		}
		k8sNode := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: n.labels(), CreationTimestamp: metav1.NewTime(n.created)},
			Spec:       corev1.NodeSpec{ProviderID: pid},
			Status: corev1.NodeStatus{Capacity: n.it.Capacity, Allocatable: n.it.Allocatable(),
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		}
		st.Claims = append(st.Claims, claim)
		st.Nodes[n.name] = k8sNode
		st.NodeOfClaim[n.name] = k8sNode
		st.ClaimOfNode[n.name] = claim
		st.PodsByNode[n.name] = n.sortedPods()
	}
	sort.Slice(st.Claims, func(i, j int) bool { return st.Claims[i].Name < st.Claims[j].Name })
	return st
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
