package disruption

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

func pdb(namespace, app string, allowed int32) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "pdb-" + app},
		Spec:       policyv1.PodDisruptionBudgetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}},
		Status:     policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: allowed},
	}
}

func pdbSelectingAll(namespace string, allowed int32) *policyv1.PodDisruptionBudget {
	p := pdb(namespace, "", allowed)
	p.Spec.Selector = &metav1.LabelSelector{}
	return p
}

func named(p *policyv1.PodDisruptionBudget, name string) *policyv1.PodDisruptionBudget {
	p.Name = name
	return p
}

func alwaysAllow(p *policyv1.PodDisruptionBudget) *policyv1.PodDisruptionBudget {
	policy := policyv1.AlwaysAllow
	p.Spec.UnhealthyPodEvictionPolicy = &policy
	return p
}

func healthy(p *policyv1.PodDisruptionBudget, current, desired int32) *policyv1.PodDisruptionBudget {
	p.Status.CurrentHealthy, p.Status.DesiredHealthy = current, desired
	return p
}

func ready(p *corev1.Pod) {
	p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
}

// TestBlocker checks that each blocker blocks what it should and nothing else.
func TestBlocker(t *testing.T) {
	cpu := catalog()[0]
	gpu := catalog()[2]
	now := start.Add(time.Hour)
	cases := []struct {
		name     string
		it       *cloudprovider.InstanceType
		created  time.Time
		pool     func(*v1.NodePool)
		nodeAnn  map[string]string
		pods     []*corev1.Pod
		pdbs     []*policyv1.PodDisruptionBudget
		blocked  bool
		contains string
	}{
		{name: "plain node with a pod", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1")}},
		{name: "node do-not-disrupt", it: cpu, created: start, nodeAnn: map[string]string{v1.AnnotationDoNotDisrupt: "true"},
			blocked: true, contains: "node n has"},
		{name: "node do-not-disrupt false", it: cpu, created: start, nodeAnn: map[string]string{v1.AnnotationDoNotDisrupt: "false"}},
		{name: "pod do-not-disrupt", it: cpu, created: start,
			pods:    []*corev1.Pod{pod("a", "n", "1"), pod("b", "n", "1", annotated(v1.AnnotationDoNotDisrupt, "true"))},
			blocked: true, contains: "pod default/b"},
		{name: "pdb allows none", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1")},
			pdbs: []*policyv1.PodDisruptionBudget{pdb("default", "a", 0)}, blocked: true, contains: "poddisruptionbudget default/pdb-a"},
		{name: "pdb allows one", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1")},
			pdbs: []*policyv1.PodDisruptionBudget{pdb("default", "a", 1)}},
		{name: "pdb of another app", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1")},
			pdbs: []*policyv1.PodDisruptionBudget{pdb("default", "b", 0)}},
		{name: "pdb in another namespace", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1")},
			pdbs: []*policyv1.PodDisruptionBudget{pdb("other", "a", 0)}},
		// The Eviction API refuses a pod two budgets select, whatever they
		// allow: the drain would wait for it until the claim's deadline.
		{name: "two pdbs that each allow one", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1", ready)},
			pdbs:    []*policyv1.PodDisruptionBudget{pdb("default", "a", 1), named(pdbSelectingAll("default", 1), "all")},
			blocked: true, contains: "more than one"},
		{name: "pdb allows none, unready pod, AlwaysAllow", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1")},
			pdbs: []*policyv1.PodDisruptionBudget{alwaysAllow(pdb("default", "a", 0))}},
		{name: "pdb allows none, ready pod, AlwaysAllow", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1", ready)},
			pdbs: []*policyv1.PodDisruptionBudget{alwaysAllow(pdb("default", "a", 0))}, blocked: true, contains: "pdb-a"},
		{name: "pdb allows none, unready pod, application healthy without it", it: cpu, created: start,
			pods: []*corev1.Pod{pod("a", "n", "1")},
			pdbs: []*policyv1.PodDisruptionBudget{healthy(pdb("default", "a", 0), 2, 2)}},
		{name: "pdb allows none, unready pod, application short", it: cpu, created: start,
			pods: []*corev1.Pod{pod("a", "n", "1")},
			pdbs: []*policyv1.PodDisruptionBudget{healthy(pdb("default", "a", 0), 1, 2)}, blocked: true, contains: "pdb-a"},
		{name: "pdb allows none, pod not started", it: cpu, created: start,
			pods: []*corev1.Pod{pod("a", "n", "1", func(p *corev1.Pod) { p.Status.Phase = corev1.PodPending })},
			pdbs: []*policyv1.PodDisruptionBudget{pdb("default", "a", 0)}},
		{name: "running job", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1", ownedBy("Job"))},
			blocked: true, contains: "running Job"},
		{name: "running job, pool evicts running jobs", it: cpu, created: start,
			pods: []*corev1.Pod{pod("a", "n", "1", ownedBy("Job"))},
			pool: func(p *v1.NodePool) { p.Spec.Disruption.EvictRunningJobs = true }},
		{name: "replicaset pod", it: cpu, created: start, pods: []*corev1.Pod{pod("a", "n", "1", ownedBy("ReplicaSet"))}},
		{name: "young gpu node, default lifetime", it: gpu, created: now.Add(-5 * time.Minute),
			pool: func(p *v1.NodePool) { p.Spec.Disruption.MinNodeLifetime = nil }, blocked: true, contains: "minimum lifetime 10m0s"},
		{name: "old gpu node, default lifetime", it: gpu, created: now.Add(-11 * time.Minute),
			pool: func(p *v1.NodePool) { p.Spec.Disruption.MinNodeLifetime = nil }},
		{name: "young cpu node, default lifetime", it: cpu, created: now.Add(-time.Minute),
			pool: func(p *v1.NodePool) { p.Spec.Disruption.MinNodeLifetime = nil }},
		{name: "young cpu node, explicit lifetime", it: cpu, created: now.Add(-time.Minute),
			pool:    func(p *v1.NodePool) { p.Spec.Disruption.MinNodeLifetime = &metav1.Duration{Duration: 2 * time.Minute} },
			blocked: true, contains: "minimum lifetime 2m0s"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := pool("p")
			if tc.pool != nil {
				tc.pool(p)
			}
			claim, node := machine("n", "p", tc.it, v1.CapacityTypeOnDemand, tc.created)
			node.Annotations = tc.nodeAnn
			st := stateOf(now, []*v1.NodePool{p}, []*v1.NodeClaim{claim}, []*corev1.Node{node}, tc.pods, tc.pdbs)
			cands := BuildCandidates(st, nil)
			if len(cands) != 1 {
				t.Fatalf("got %d candidates, want 1", len(cands))
			}
			got := cands[0].Blocked
			if (got != "") != tc.blocked {
				t.Fatalf("Blocked = %q, want blocked=%v", got, tc.blocked)
			}
			if tc.contains != "" && !strings.Contains(got, tc.contains) {
				t.Errorf("Blocked = %q, want it to mention %q", got, tc.contains)
			}
		})
	}
}

// TestBuildCandidatesExcludes checks which nodes are never candidates.
func TestBuildCandidatesExcludes(t *testing.T) {
	it := catalog()[0]
	now := start.Add(time.Hour)
	deleting := metav1.NewTime(now)
	p := pool("p")
	var claims []*v1.NodeClaim
	var nodes []*corev1.Node
	add := func(name string, mutate func(*v1.NodeClaim, *corev1.Node)) {
		c, n := machine(name, "p", it, v1.CapacityTypeOnDemand, start)
		if mutate != nil {
			mutate(c, n)
		}
		claims = append(claims, c)
		if n != nil {
			nodes = append(nodes, n)
		}
	}
	add("ok", nil)
	add("claim-deleting", func(c *v1.NodeClaim, _ *corev1.Node) {
		c.DeletionTimestamp = &deleting
		c.Finalizers = []string{v1.TerminationFinalizer}
	})
	add("tainted", func(_ *v1.NodeClaim, n *corev1.Node) { n.Spec.Taints = []corev1.Taint{disruptedTaint} })
	add("not-initialized", func(c *v1.NodeClaim, _ *corev1.Node) { c.Status.Conditions = nil })
	add("interrupted", func(c *v1.NodeClaim, _ *corev1.Node) {
		c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{Type: v1.ConditionInterrupted, Status: metav1.ConditionTrue})
	})
	add("other-pool", func(c *v1.NodeClaim, _ *corev1.Node) { c.Labels[v1.LabelNodePool] = "gone" })
	c, _ := machine("in-flight", "p", it, v1.CapacityTypeOnDemand, start)
	c.Status.ProviderID, c.Status.NodeName = "", ""
	claims = append(claims, c)

	st := stateOf(now, []*v1.NodePool{p}, claims, nodes, []*corev1.Pod{
		pod("ds", "ok", "1", ownedBy("DaemonSet")),
		pod("done", "ok", "1", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		pod("web", "ok", "1"),
	}, nil)
	cands := BuildCandidates(st, nil)
	var names []string
	for _, c := range cands {
		names = append(names, c.Name())
	}
	if diff := cmp.Diff([]string{"ok"}, names); diff != "" {
		t.Fatalf("candidates (-want +got):\n%s", diff)
	}
	var pods []string
	for _, p := range cands[0].Pods {
		pods = append(pods, p.Name)
	}
	if diff := cmp.Diff([]string{"web"}, pods); diff != "" {
		t.Errorf("pods to move (-want +got):\n%s", diff)
	}
}

func stateOf(now time.Time, pools []*v1.NodePool, claims []*v1.NodeClaim, nodes []*corev1.Node,
	pods []*corev1.Pod, pdbs []*policyv1.PodDisruptionBudget) *ClusterState {
	st := &ClusterState{Now: now, Pools: map[string]*v1.NodePool{}, Nodes: map[string]*corev1.Node{},
		NodeOfClaim: map[string]*corev1.Node{}, ClaimOfNode: map[string]*v1.NodeClaim{}, PodsByNode: map[string][]*corev1.Pod{}, PDBs: pdbs}
	for _, p := range pools {
		st.Pools[p.Name] = p
	}
	for _, n := range nodes {
		st.Nodes[n.Name] = n
	}
	for _, c := range claims {
		st.Claims = append(st.Claims, c)
		if n := st.Nodes[c.Status.NodeName]; n != nil {
			st.NodeOfClaim[c.Name] = n
			st.ClaimOfNode[n.Name] = c
		}
	}
	for _, p := range pods {
		if !scheduling.Finished(p) {
			st.PodsByNode[p.Spec.NodeName] = append(st.PodsByNode[p.Spec.NodeName], p)
		}
	}
	return st
}

// A node that pods are on their way to is no candidate, whatever it runs now.
func TestBuildCandidatesSkipsNominatedNodes(t *testing.T) {
	now := start.Add(time.Hour)
	ca, na := machine("a", "p", catalog()[0], v1.CapacityTypeOnDemand, start)
	cb, nb := machine("b", "p", catalog()[0], v1.CapacityTypeOnDemand, start)
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb}, []*corev1.Node{na, nb}, nil, nil)
	var asked []string
	cands := BuildCandidates(st, func(claim, node string) bool {
		asked = append(asked, claim+"/"+node)
		return claim == "b"
	})
	if len(cands) != 1 || cands[0].Name() != "a" {
		t.Errorf("candidates = %v, want only a", cands)
	}
	if diff := cmp.Diff([]string{"a/a", "b/b"}, asked); diff != "" {
		t.Errorf("nominations asked for (-want +got):\n%s", diff)
	}
}
