package disruption

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// TestShouldDisrupt runs every method over candidates in each state and
// records which methods want each one.
func TestShouldDisrupt(t *testing.T) {
	now := start.Add(24 * time.Hour)
	it := catalog()[0]
	type cand struct {
		pool    func(*v1.NodePool)
		claim   func(*v1.NodeClaim)
		node    func(*corev1.Node)
		pods    int
		blocked string
	}
	podEvent := func(ago time.Duration) func(*v1.NodeClaim) {
		return func(c *v1.NodeClaim) { c.Status.LastPodEventTime = metav1.NewTime(now.Add(-ago)) }
	}
	expired := func(c *v1.NodeClaim) {
		c.Spec.ExpireAfter = v1.DurationOf(time.Hour)
		withCondition(c, v1.ConditionExpired, "Expired", start.Add(time.Hour))
	}
	drifted := func(c *v1.NodeClaim) { withCondition(c, v1.ConditionDrifted, "ImageDrift", now) }
	notConsolidatable := func(c *v1.NodeClaim) { meta.RemoveStatusCondition(&c.Status.Conditions, v1.ConditionConsolidatable) }
	cases := []struct {
		name string
		cand cand
		want []string
	}{
		{name: "settled node with pods", cand: cand{pods: 1, claim: podEvent(time.Minute)}, want: []string{"consolidation"}},
		{name: "node with pods not settled", cand: cand{pods: 1, claim: podEvent(10 * time.Second)}},
		{name: "settled empty node", cand: cand{claim: podEvent(time.Minute)}, want: []string{"emptiness"}},
		{name: "empty node not settled", cand: cand{claim: podEvent(29 * time.Second)}},
		// The condition lags a pod event by a moment; both must agree.
		{name: "consolidatable condition not set", cand: cand{claim: notConsolidatable}},
		{name: "consolidateAfter Never", cand: cand{
			pool: func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.Never }}},
		{name: "WhenEmpty allows only emptiness", cand: cand{pods: 1,
			pool: func(p *v1.NodePool) { p.Spec.Disruption.ConsolidationPolicy = v1.ConsolidationPolicyWhenEmpty }}},
		{name: "WhenEmpty, empty", cand: cand{
			pool: func(p *v1.NodePool) { p.Spec.Disruption.ConsolidationPolicy = v1.ConsolidationPolicyWhenEmpty }},
			want: []string{"emptiness"}},
		{name: "blocked", cand: cand{pods: 1, blocked: "pdb"}},
		{name: "blocked but expired", cand: cand{pods: 1, blocked: "pdb", claim: expired}, want: []string{"expiry"}},
		{name: "expired condition lagging a longer expireAfter", cand: cand{pods: 1, blocked: "pdb", claim: func(c *v1.NodeClaim) {
			expired(c)
			c.Spec.ExpireAfter = v1.DurationOf(25 * time.Hour)
		}}},
		{name: "drifted", cand: cand{pods: 1, blocked: "", claim: func(c *v1.NodeClaim) { drifted(c); notConsolidatable(c) }},
			want: []string{"drift"}},
		{name: "drifted but blocked", cand: cand{pods: 1, blocked: "do-not-disrupt", claim: drifted}},
		{name: "not ready for less than repairAfter", cand: cand{pods: 1, claim: notConsolidatable,
			node: func(n *corev1.Node) { notReady(n, now.Add(-10*time.Minute)) }}},
		{name: "not ready for repairAfter", cand: cand{pods: 1, blocked: "pdb", claim: notConsolidatable,
			node: func(n *corev1.Node) { notReady(n, now.Add(-15*time.Minute)) }}, want: []string{"repair"}},
		{name: "not ready empty node is repaired, not emptied", cand: cand{
			node: func(n *corev1.Node) { notReady(n, now.Add(-time.Hour)) }}, want: []string{"repair"}},
		{name: "repair off", cand: cand{pods: 1, claim: notConsolidatable,
			pool: func(p *v1.NodePool) { p.Spec.Disruption.RepairAfter = v1.Never },
			node: func(n *corev1.Node) { notReady(n, now.Add(-time.Hour)) }}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pool("p")
			if tc.cand.pool != nil {
				tc.cand.pool(p)
			}
			claim, node := machine("n", "p", it, v1.CapacityTypeOnDemand, start)
			if tc.cand.claim != nil {
				tc.cand.claim(claim)
			}
			if tc.cand.node != nil {
				tc.cand.node(node)
			}
			c := &Candidate{Claim: claim, Node: node, Pool: p, Blocked: tc.cand.blocked, Ready: nodeReady(node)}
			for i := 0; i < tc.cand.pods; i++ {
				c.Pods = append(c.Pods, pod("p", "n", "1"))
			}
			e := &Evaluation{State: &ClusterState{Now: now}}
			var got []string
			for _, m := range DefaultMethods() {
				if m.ShouldDisrupt(e, c) {
					got = append(got, m.Name())
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("methods wanting the candidate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChurnGuard(t *testing.T) {
	now := start.Add(2 * time.Hour)
	g := DefaultChurnGuard()
	newNode := func(price float64) []*solver.NewNode {
		return []*solver.NewNode{{Choices: []solver.Choice{{InstanceType: &cloudprovider.InstanceType{Name: "x"},
			Offering: cloudprovider.Offering{PricePerHour: price}}}}}
	}
	cases := []struct {
		name       string
		old, new   float64
		replacedAt *time.Time
		allowed    bool
		savings    float64
	}{
		{name: "big saving", old: 1.00, new: 0.40, allowed: true, savings: 0.60},
		{name: "5% and 5 cents exactly", old: 1.00, new: 0.95, allowed: true, savings: 0.05},
		{name: "below 5%", old: 4.00, new: 3.85, savings: 0.15},
		{name: "below 5 cents", old: 0.40, new: 0.36, savings: 0.04},
		{name: "more expensive", old: 0.40, new: 0.50, savings: -0.10},
		{name: "replaced recently", old: 1.00, new: 0.40, replacedAt: ptrTime(now.Add(-30 * time.Minute)), savings: 0.60},
		{name: "replaced long ago", old: 1.00, new: 0.40, replacedAt: ptrTime(now.Add(-2 * time.Hour)), allowed: true, savings: 0.60},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claim, node := machine("n", "p", catalog()[2], v1.CapacityTypeSpot, start)
			if tc.replacedAt != nil {
				claim.Annotations = map[string]string{AnnotationReplacedAt: tc.replacedAt.Format(time.RFC3339)}
			}
			c := &Candidate{Claim: claim, Node: node, PricePerHour: tc.old}
			savings, why := g.AllowsReplace(now, []*Candidate{c}, newNode(tc.new))
			if (why == "") != tc.allowed {
				t.Errorf("AllowsReplace refused=%q, want allowed=%v", why, tc.allowed)
			}
			if diff := cmp.Diff(tc.savings, savings, cmpFloat); diff != "" {
				t.Errorf("savings (-want +got):\n%s", diff)
			}
		})
	}
}

var cmpFloat = cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })

func ptrTime(t time.Time) *time.Time { return &t }

// TestComputeCommand runs each method's ComputeCommand on a small cluster.
func TestComputeCommand(t *testing.T) {
	now := start.Add(time.Hour)
	small, large, gpu := catalog()[0], catalog()[1], catalog()[2]
	type node struct {
		name, ct string
		it       *cloudprovider.InstanceType
		cpu      []string // pods' CPU requests
		gpuPods  int
	}
	cases := []struct {
		name   string
		method Method
		nodes  []node
		budget string
		want   []string // Command.String() of each command
	}{
		{name: "single-node delete: pods fit on the other node", method: SingleNode{},
			nodes: []node{{name: "a", it: large, cpu: []string{"2"}}, {name: "b", it: large, cpu: []string{"8"}}},
			want:  []string{"single-node delete [a], saving $0.8000/h"}},
		{name: "single-node replace: one cheaper node", method: SingleNode{},
			nodes: []node{{name: "a", it: large, cpu: []string{"2"}}},
			want:  []string{"single-node replace [a] with [small on-demand], saving $0.6000/h"}},
		{name: "single-node nothing cheaper", method: SingleNode{},
			nodes: []node{{name: "a", it: small, cpu: []string{"2"}}}},
		{name: "single-node budget zero", method: SingleNode{}, budget: "0",
			nodes: []node{{name: "a", it: large, cpu: []string{"2"}}, {name: "b", it: large, cpu: []string{"8"}}}},
		{name: "multi-node merges three into one", method: MultiNode{},
			nodes: []node{{name: "a", it: large, cpu: []string{"1"}}, {name: "b", it: large, cpu: []string{"1"}},
				{name: "c", it: large, cpu: []string{"1"}}},
			want: []string{"multi-node replace [a, b, c] with [small on-demand], saving $2.2000/h"}},
		{name: "multi-node respects budget", method: MultiNode{}, budget: "2",
			nodes: []node{{name: "a", it: large, cpu: []string{"1"}}, {name: "b", it: large, cpu: []string{"1"}},
				{name: "c", it: large, cpu: []string{"1"}}},
			want: []string{"multi-node delete [a, b], saving $1.6000/h"}},
		{name: "two half-empty gpu nodes into one spot node", method: MultiNode{},
			nodes: []node{{name: "a", it: gpu, ct: v1.CapacityTypeOnDemand, gpuPods: 1}, {name: "b", it: large, cpu: []string{"1"}}},
			want:  []string{"multi-node replace [a, b] with [gpu1 spot], saving $1.4000/h"}},
		{name: "consolidation prefers deleting one of two half-empty nodes", method: Consolidation{},
			nodes: []node{{name: "a", it: small, cpu: []string{"1"}}, {name: "b", it: small, cpu: []string{"1"}}},
			want:  []string{"single-node delete [a], saving $0.2000/h"}},
		{name: "consolidation takes the larger multi-node saving", method: Consolidation{},
			nodes: []node{{name: "a", it: large, cpu: []string{"1"}}, {name: "b", it: large, cpu: []string{"1"}},
				{name: "c", it: large, cpu: []string{"1"}}},
			want: []string{"multi-node replace [a, b, c] with [small on-demand], saving $2.2000/h"}},
		{name: "emptiness deletes within budget", method: Emptiness{}, budget: "1",
			nodes: []node{{name: "a", it: small}, {name: "b", it: large}},
			want:  []string{"emptiness delete [b], saving $0.8000/h"}},
		{name: "drift replaces", method: Drift{},
			nodes: []node{{name: "a", it: small, cpu: []string{"1"}}},
			want:  []string{"drift replace [a] with [small on-demand], saving $0.0000/h"}},
		{name: "expiry with nowhere to go still replaces what fits", method: Expiry{},
			nodes: []node{{name: "a", it: large, cpu: []string{"12"}}},
			want:  []string{"expiry replace [a] with [large on-demand], saving $0.0000/h"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pool("p")
			if tc.budget != "" {
				p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: tc.budget}}
			}
			var claims []*v1.NodeClaim
			var nodes []*corev1.Node
			var pods []*corev1.Pod
			for _, n := range tc.nodes {
				ct := n.ct
				if ct == "" {
					ct = v1.CapacityTypeOnDemand
				}
				claim, node := machine(n.name, "p", n.it, ct, start)
				claim.Spec.ExpireAfter = v1.DurationOf(30 * time.Minute)
				claims, nodes = append(claims, claim), append(nodes, node)
				for i, cpu := range n.cpu {
					pods = append(pods, pod(n.name+"-"+string(rune('0'+i)), n.name, cpu))
				}
				for i := 0; i < n.gpuPods; i++ {
					pods = append(pods, pod(n.name+"-gpu"+string(rune('0'+i)), n.name, "1", gpuRequest))
				}
			}
			st := stateOf(now, []*v1.NodePool{p}, claims, nodes, pods, nil)
			for _, c := range claims {
				if tc.name == "drift replaces" {
					withCondition(c, v1.ConditionDrifted, "ImageDrift", now)
				}
				withCondition(c, v1.ConditionExpired, "Expired", start.Add(30*time.Minute))
			}
			cands := BuildCandidates(st, nil)
			e := NewEvaluation(st, &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
			var want []*Candidate
			for _, c := range cands {
				if tc.method.ShouldDisrupt(e, c) {
					want = append(want, c)
				}
			}
			cmds, err := tc.method.ComputeCommands(context.Background(), e, want)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, cmd := range cmds {
				got = append(got, cmd.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("commands (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConsolidationMergesWithinAPool: a cheap node of another pool sorts
// first and spoils the cross-pool prefix; the per-pool search still finds
// the merge.
func TestConsolidationMergesWithinAPool(t *testing.T) {
	now := start.Add(time.Hour)
	small, large := catalog()[0], catalog()[1]
	other := pool("other")
	p := pool("p")
	ca, na := machine("a", "p", large, v1.CapacityTypeOnDemand, start)
	cb, nb := machine("b", "p", large, v1.CapacityTypeOnDemand, start)
	cx, nx := machine("x", "other", small, v1.CapacityTypeOnDemand, start)
	pods := []*corev1.Pod{pod("a0", "a", "1"), pod("a1", "a", "1"), pod("b0", "b", "1"), pod("b1", "b", "1"), pod("x0", "x", "3")}
	st := stateOf(now, []*v1.NodePool{p, other}, []*v1.NodeClaim{ca, cb, cx}, []*corev1.Node{na, nb, nx}, pods, nil)
	cands := BuildCandidates(st, nil)
	e := NewEvaluation(st, &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	cmd, err := Consolidation{}.ComputeCommand(context.Background(), e, cands)
	if err != nil {
		t.Fatal(err)
	}
	// Across pools the best prefix is [x, a, b] onto one large ($1.00/h
	// saved); pool p alone merges a and b onto one small ($1.40/h saved).
	if diff := cmp.Diff("multi-node replace [a, b] with [small on-demand], saving $1.4000/h", cmd.String()); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
}

// Two pods binding one host port cannot share a node, so consolidation
// (planned by the real solver) must not merge their nodes: each may only be
// replaced by a cheaper machine of its own.
func TestConsolidationKeepsHostPortsApart(t *testing.T) {
	now := start.Add(time.Hour)
	large := catalog()[1]
	ca, na := machine("a", "p", large, v1.CapacityTypeOnDemand, start)
	cb, nb := machine("b", "p", large, v1.CapacityTypeOnDemand, start)
	agent := func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100}}
	}
	pods := []*corev1.Pod{pod("a0", "a", "1", agent), pod("b0", "b", "1", agent)}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb}, []*corev1.Node{na, nb}, pods, nil)
	solve := func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }
	e := NewEvaluation(st, &Simulator{Solver: SolverFunc(solve), Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	cmd, err := Consolidation{}.ComputeCommand(context.Background(), e, BuildCandidates(st, nil))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("single-node replace [a] with [small on-demand], saving $0.6000/h", cmd.String()); diff != "" {
		t.Errorf("command (-want +got):\n%s", diff)
	}
}

// A machine still launching is no place to evict pods to: a consolidation
// whose pods would land on it waits for a later pass.
func TestConsolidationDoesNotMoveOntoLaunchingMachines(t *testing.T) {
	now := start.Add(time.Hour)
	large := catalog()[1]
	ca, na := machine("a", "p", large, v1.CapacityTypeOnDemand, start)
	launching, _ := machine("launching", "p", large, v1.CapacityTypeOnDemand, now.Add(-10*time.Second))
	launching.Status = v1.NodeClaimStatus{}
	pods := []*corev1.Pod{pod("a0", "a", "1")}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, launching}, []*corev1.Node{na}, pods, nil)
	e := NewEvaluation(st, &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	cmd, err := SingleNode{}.ComputeCommand(context.Background(), e, BuildCandidates(st, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(cmd.Candidates) > 0 {
		t.Errorf("command %s moves pods onto a machine still launching", cmd)
	}
	if _, why, err := consolidate(context.Background(), e, "single-node", BuildCandidates(st, nil)); err != nil || why != "its pods would wait for a machine still launching" {
		t.Errorf("consolidation held because %q (%v), want the launching machine named as the cause", why, err)
	}
	sim, err := e.simulate(context.Background(), BuildCandidates(st, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(sim.Plan.Bindings) != 0 || len(sim.Plan.Unschedulable) != 1 ||
		!strings.Contains(sim.Plan.Unschedulable[0].Reason, "launching, which is still launching") {
		var got []string
		for _, b := range sim.Plan.Bindings {
			got = append(got, b.Pod.Name+" -> "+b.NodeName)
		}
		for _, u := range sim.Plan.Unschedulable {
			got = append(got, u.Pod.Name+": "+u.Reason)
		}
		t.Errorf("what-if %q: want a0 without a place, waiting for launching", got)
	}
}
