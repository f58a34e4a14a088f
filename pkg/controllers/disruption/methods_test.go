package disruption

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

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
		pool      func(*v1.NodePool)
		claim     func(*v1.NodeClaim)
		pods      int
		stableFor time.Duration
		blocked   string
	}
	cases := []struct {
		name string
		cand cand
		want []string
	}{
		{name: "settled node with pods", cand: cand{pods: 1, stableFor: time.Minute}, want: []string{"consolidation"}},
		{name: "node with pods not settled", cand: cand{pods: 1, stableFor: 10 * time.Second}},
		{name: "settled empty node", cand: cand{stableFor: time.Minute}, want: []string{"emptiness"}},
		{name: "empty node not settled", cand: cand{stableFor: 29 * time.Second}},
		{name: "consolidateAfter Never", cand: cand{stableFor: time.Hour,
			pool: func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.Never }}},
		{name: "WhenEmpty allows only emptiness", cand: cand{pods: 1, stableFor: time.Minute,
			pool: func(p *v1.NodePool) { p.Spec.Disruption.ConsolidationPolicy = v1.ConsolidationPolicyWhenEmpty }}},
		{name: "WhenEmpty, empty", cand: cand{stableFor: time.Minute,
			pool: func(p *v1.NodePool) { p.Spec.Disruption.ConsolidationPolicy = v1.ConsolidationPolicyWhenEmpty }},
			want: []string{"emptiness"}},
		{name: "blocked", cand: cand{pods: 1, stableFor: time.Hour, blocked: "pdb"}},
		{name: "blocked but expired", cand: cand{pods: 1, blocked: "pdb",
			claim: func(c *v1.NodeClaim) { c.Spec.ExpireAfter = v1.DurationOf(time.Hour) }}, want: []string{"expiry"}},
		{name: "not yet expired", cand: cand{pods: 1,
			claim: func(c *v1.NodeClaim) { c.Spec.ExpireAfter = v1.DurationOf(25 * time.Hour) }}},
		{name: "drifted", cand: cand{pods: 1, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}}, want: []string{"drift"}},
		{name: "drifted but blocked", cand: cand{pods: 1, blocked: "do-not-disrupt", pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}}},
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
			c := &Candidate{Claim: claim, Node: node, Pool: p, StableFor: tc.cand.stableFor, Blocked: tc.cand.blocked}
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

func TestDriftReason(t *testing.T) {
	it := catalog()[2]
	req := func(key string, op corev1.NodeSelectorOperator, vals ...string) v1.NodeSelectorRequirementWithMinValues {
		return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: vals}
	}
	cases := []struct {
		name    string
		pool    func(*v1.NodePool)
		claim   func(*v1.NodeClaim)
		drifted bool
	}{
		{name: "unchanged"},
		{name: "requirement still met", pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
				req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot", "on-demand"),
				req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "0"),
				req("absent", corev1.NodeSelectorOpDoesNotExist),
			}
		}},
		{name: "capacity type no longer allowed", drifted: true, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot")}
		}},
		{name: "instance type excluded", drifted: true, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{req(v1.LabelInstanceType, corev1.NodeSelectorOpNotIn, "gpu1")}
		}},
		{name: "gpu count bound", drifted: true, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "1")}
		}},
		{name: "template label added", drifted: true, pool: func(p *v1.NodePool) {
			p.Spec.Template.ObjectMeta.Labels = map[string]string{"team": "ml"}
		}},
		{name: "taint added", drifted: true, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}},
		{name: "taint removed", drifted: true, claim: func(c *v1.NodeClaim) {
			c.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}},
		{name: "same taints", pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}, claim: func(c *v1.NodeClaim) {
			c.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}},
		{name: "node class changed", drifted: true, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "aws.stowage.dev", Kind: "EC2NodeClass", Name: "b"}
		}, claim: func(c *v1.NodeClaim) {
			c.Spec.NodeClassRef = &v1.NodeClassReference{Group: "aws.stowage.dev", Kind: "EC2NodeClass", Name: "a"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pool("p")
			if tc.pool != nil {
				tc.pool(p)
			}
			claim, node := machine("n", "p", it, v1.CapacityTypeOnDemand, start)
			if tc.claim != nil {
				tc.claim(claim)
			}
			got := DriftReason(p, claim, node)
			if (got != "") != tc.drifted {
				t.Errorf("DriftReason = %q, want drifted=%v", got, tc.drifted)
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
		want   string // Command.String(), "" for none
	}{
		{name: "single-node delete: pods fit on the other node", method: SingleNode{},
			nodes: []node{{name: "a", it: large, cpu: []string{"2"}}, {name: "b", it: large, cpu: []string{"8"}}},
			want:  "single-node delete [a], saving $0.8000/h"},
		{name: "single-node replace: one cheaper node", method: SingleNode{},
			nodes: []node{{name: "a", it: large, cpu: []string{"2"}}},
			want:  "single-node replace [a] with [small on-demand], saving $0.6000/h"},
		{name: "single-node nothing cheaper", method: SingleNode{},
			nodes: []node{{name: "a", it: small, cpu: []string{"2"}}}},
		{name: "single-node budget zero", method: SingleNode{}, budget: "0",
			nodes: []node{{name: "a", it: large, cpu: []string{"2"}}, {name: "b", it: large, cpu: []string{"8"}}}},
		{name: "multi-node merges three into one", method: MultiNode{},
			nodes: []node{{name: "a", it: large, cpu: []string{"1"}}, {name: "b", it: large, cpu: []string{"1"}},
				{name: "c", it: large, cpu: []string{"1"}}},
			want: "multi-node replace [a, b, c] with [small on-demand], saving $2.2000/h"},
		{name: "multi-node respects budget", method: MultiNode{}, budget: "2",
			nodes: []node{{name: "a", it: large, cpu: []string{"1"}}, {name: "b", it: large, cpu: []string{"1"}},
				{name: "c", it: large, cpu: []string{"1"}}},
			want: "multi-node delete [a, b], saving $1.6000/h"},
		{name: "two half-empty gpu nodes into one spot node", method: MultiNode{},
			nodes: []node{{name: "a", it: gpu, ct: v1.CapacityTypeOnDemand, gpuPods: 1}, {name: "b", it: large, cpu: []string{"1"}}},
			want:  "multi-node replace [a, b] with [gpu1 spot], saving $1.4000/h"},
		{name: "consolidation prefers deleting one of two half-empty nodes", method: Consolidation{},
			nodes: []node{{name: "a", it: small, cpu: []string{"1"}}, {name: "b", it: small, cpu: []string{"1"}}},
			want:  "single-node delete [a], saving $0.2000/h"},
		{name: "consolidation takes the larger multi-node saving", method: Consolidation{},
			nodes: []node{{name: "a", it: large, cpu: []string{"1"}}, {name: "b", it: large, cpu: []string{"1"}},
				{name: "c", it: large, cpu: []string{"1"}}},
			want: "multi-node replace [a, b, c] with [small on-demand], saving $2.2000/h"},
		{name: "emptiness deletes within budget", method: Emptiness{}, budget: "1",
			nodes: []node{{name: "a", it: small}, {name: "b", it: large}},
			want:  "emptiness delete [b], saving $0.8000/h"},
		{name: "drift replaces", method: Drift{},
			nodes: []node{{name: "a", it: small, cpu: []string{"1"}}},
			want:  "drift replace [a] with [small on-demand], saving $0.0000/h"},
		{name: "expiry with nowhere to go still replaces what fits", method: Expiry{},
			nodes: []node{{name: "a", it: large, cpu: []string{"12"}}},
			want:  "expiry replace [a] with [large on-demand], saving $0.0000/h"},
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
			if tc.name == "drift replaces" {
				p.Spec.Template.ObjectMeta.Labels = map[string]string{"team": "ml"}
			}
			cands := BuildCandidates(st, func(string) time.Duration { return time.Hour })
			ctrl := NewController(Deps{})
			e := &Evaluation{State: st, Simulator: &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}},
				Guard: DefaultChurnGuard(), allowed: ctrl.budgets(context.Background(), st)}
			var want []*Candidate
			for _, c := range cands {
				if tc.method.ShouldDisrupt(e, c) {
					want = append(want, c)
				}
			}
			cmd, err := tc.method.ComputeCommand(context.Background(), e, want)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if !cmd.IsEmpty() {
				got = cmd.String()
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("command (-want +got):\n%s", diff)
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
	cands := BuildCandidates(st, func(string) time.Duration { return time.Hour })
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
