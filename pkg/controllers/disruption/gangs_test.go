package disruption

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

func inGang(name string, size string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Labels[v1.LabelPodGroup] = name
		p.Labels[v1.LabelPodGroupSize] = size
	}
}

// gangCluster: a 3-node gang (g1..g3), an ordinary node (web) and a pool
// whose budget allows disrupting budget nodes at once.
func gangCluster(t *testing.T, budget string, blockG3 bool) (*Evaluation, []*Candidate) {
	t.Helper()
	now := start.Add(24 * time.Hour)
	it := catalog()[0]
	p := pool("p", func(np *v1.NodePool) { np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: budget}} })
	var claims []*v1.NodeClaim
	var nodes []*corev1.Node
	var pods []*corev1.Pod
	for _, n := range []string{"g1", "g2", "g3", "web"} {
		c, node := machine(n, "p", it, v1.CapacityTypeOnDemand, start)
		claims, nodes = append(claims, c), append(nodes, node)
		if n == "web" {
			pods = append(pods, pod("web", n, "1"))
			continue
		}
		mutate := []func(*corev1.Pod){inGang("train", "3")}
		if n == "g3" && blockG3 {
			mutate = append(mutate, func(p *corev1.Pod) { p.Annotations = map[string]string{v1.AnnotationDoNotDisrupt: "true"} })
		}
		pods = append(pods, pod("worker-"+n, n, "1", mutate...))
	}
	st := stateOf(now, []*v1.NodePool{p}, claims, nodes, pods, nil)
	cands := BuildCandidates(st, nil)
	e := newEvaluation(st, &Simulator{Solver: SolverFunc(firstFit), Cloud: &fakeCloud{types: catalog()}}, ChurnGuard{}, nil)
	return e, cands
}

func candidate(cands []*Candidate, node string) *Candidate {
	for _, c := range cands {
		if c.Node.Name == node {
			return c
		}
	}
	return nil
}

func names(cands []*Candidate) string {
	var out []string
	for _, c := range cands {
		out = append(out, c.Node.Name)
	}
	return strings.Join(out, " ")
}

func TestWholeGangs(t *testing.T) {
	ctx := context.Background()
	drift := func(cands ...*Candidate) Command {
		return Command{Method: "drift", Reason: v1.DisruptionReasonDrifted, Candidates: cands,
			Replacements: []*solver.NewNode{{NodePool: "p"}}}
	}
	t.Run("drift of one member takes the whole gang, replanned together", func(t *testing.T) {
		e, cands := gangCluster(t, "100%", false)
		cmd, members, why, err := wholeGangs(ctx, e, cands, drift(candidate(cands, "g2")), scheduling.Gangs{}, false)
		if err != nil || why != "" {
			t.Fatalf("wholeGangs: %q, %v", why, err)
		}
		if got := names(cmd.Candidates); got != "g2 g1 g3" {
			t.Errorf("candidates %q, want the gang's three nodes", got)
		}
		if len(members) != 1 || members[0] != "default/train" {
			t.Errorf("gangs %v", members)
		}
		placed := 0
		for _, n := range cmd.Replacements {
			placed += len(n.Pods)
		}
		for _, b := range cmd.Bindings {
			if strings.HasPrefix(b.Pod.Name, "worker-") {
				placed++
			}
		}
		if placed != 3 {
			t.Errorf("the widened plan places %d of the gang's 3 pods", placed)
		}
	})
	t.Run("a blocked member holds the whole gang", func(t *testing.T) {
		e, cands := gangCluster(t, "100%", true)
		_, _, why, err := wholeGangs(ctx, e, cands, drift(candidate(cands, "g1")), scheduling.Gangs{}, false)
		if err != nil || !strings.Contains(why, "also runs on node g3") {
			t.Errorf("why = %q, %v; want the blocked member named", why, err)
		}
	})
	t.Run("a budget too small for the gang holds it", func(t *testing.T) {
		e, cands := gangCluster(t, "2", false)
		_, _, why, err := wholeGangs(ctx, e, cands, drift(candidate(cands, "g1")), scheduling.Gangs{}, false)
		if err != nil || !strings.Contains(why, "need 3 nodes of nodepool p") {
			t.Errorf("why = %q, %v", why, err)
		}
	})
	t.Run("a gang is never consolidated", func(t *testing.T) {
		e, cands := gangCluster(t, "100%", false)
		cmd := Command{Method: "consolidation", Reason: v1.DisruptionReasonUnderutilized, Candidates: []*Candidate{candidate(cands, "g1")}}
		_, _, why, err := wholeGangs(ctx, e, cands, cmd, scheduling.Gangs{}, false)
		if err != nil || !strings.Contains(why, "never consolidated") {
			t.Errorf("why = %q, %v", why, err)
		}
	})
	t.Run("commands without gang pods pass unchanged", func(t *testing.T) {
		e, cands := gangCluster(t, "100%", false)
		cmd := Command{Method: "consolidation", Reason: v1.DisruptionReasonUnderutilized, Candidates: []*Candidate{candidate(cands, "web")}}
		got, members, why, err := wholeGangs(ctx, e, cands, cmd, scheduling.Gangs{}, false)
		if err != nil || why != "" || members != nil || names(got.Candidates) != "web" {
			t.Errorf("got %q %v %q %v", names(got.Candidates), members, why, err)
		}
	})
	t.Run("forceful expiry takes the gang past blockers", func(t *testing.T) {
		e, cands := gangCluster(t, "1", true)
		cmd := Command{Method: "expiry", Reason: v1.DisruptionReasonExpired, Forceful: true, Candidates: []*Candidate{candidate(cands, "g1")}}
		got, _, why, err := wholeGangs(ctx, e, cands, cmd, scheduling.Gangs{}, false)
		if err != nil || why != "" || names(got.Candidates) != "g1 g2 g3" {
			t.Errorf("got %q, %q, %v", names(got.Candidates), why, err)
		}
	})
}

func TestSignalGangs(t *testing.T) {
	e, _ := gangCluster(t, "100%", false)
	var objs []*corev1.Pod
	for _, pods := range e.State.PodsByNode {
		objs = append(objs, pods...)
	}
	b := cloudtest.NewClientBuilder()
	for _, p := range objs {
		b = b.WithObjects(p.DeepCopy())
	}
	c := b.Build()
	ctx := context.Background()
	mustT(t, signalGangs(ctx, c, e.State, scheduling.Gangs{}, []string{"default/train"}, GangSignal(v1.DisruptionReasonDrifted)))
	list := &corev1.PodList{}
	mustT(t, c.List(ctx, list))
	for _, p := range list.Items {
		want := ""
		if strings.HasPrefix(p.Name, "worker-") {
			want = "disruption:Drifted"
		}
		if got := p.Annotations[v1.AnnotationInterruption]; got != want {
			t.Errorf("pod %s signal %q, want %q", p.Name, got, want)
		}
	}
}

func TestSignalGangPeers(t *testing.T) {
	here := pod("worker-0", "n1", "1", inGang("train", "2"))
	there := pod("worker-1", "n2", "1", inGang("train", "2"))
	other := pod("web", "n2", "1")
	c := cloudtest.NewClientBuilder().WithObjects(here.DeepCopy(), there.DeepCopy(), other.DeepCopy()).Build()
	ctx := context.Background()
	mustT(t, SignalGangPeers(ctx, c, []*corev1.Pod{here}, "SpotReclaim deadline=x", nil))
	list := &corev1.PodList{}
	mustT(t, c.List(ctx, list))
	for _, p := range list.Items {
		want := "SpotReclaim deadline=x"
		if p.Name == "web" {
			want = ""
		}
		if got := p.Annotations[v1.AnnotationInterruption]; got != want {
			t.Errorf("pod %s signal %q, want %q", p.Name, got, want)
		}
	}
}

// A training gang's peers are nearly always blocked (a running Job, a young
// GPU node): repair of a dead member's node must not wait for them, or the
// gang stays broken on a machine billed forever. Only that node goes; the
// peers get the checkpoint signal and stay.
func TestRepairOfADeadGangMemberIsNotHeldByItsPeers(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.Never })
	down, g2, g3 := mach("down", 1, v1.CapacityTypeOnDemand), mach("g2", 1, v1.CapacityTypeOnDemand), mach("g3", 1, v1.CapacityTypeOnDemand)
	notReady(down[1].(*corev1.Node), start.Add(time.Hour-16*time.Minute))
	e := newEnv(t, objects(p, down, g2, g3)...)
	for _, n := range []string{"down", "g2", "g3"} {
		mustT(t, e.client.Create(context.Background(), pod("worker-"+n, n, "1", inGang("train", "3"), ownedBy("Job"))))
	}
	e.pass(t)
	e.validate(t)
	e.validate(t)
	if !e.tainted(t, "down") {
		t.Fatalf("the dead gang member's node was not repaired; claims %v; events: %s", e.claims(t), drain(e.recorder))
	}
	for _, n := range []string{"g2", "g3"} {
		if e.tainted(t, n) {
			t.Errorf("healthy peer node %s is being disrupted; only the dead node should go", n)
		}
		got := &corev1.Pod{}
		mustT(t, e.client.Get(context.Background(), client.ObjectKey{Namespace: "default", Name: "worker-" + n}, got))
		if got.Annotations[v1.AnnotationInterruption] != GangSignal(v1.DisruptionReasonUnhealthy) {
			t.Errorf("peer pod %s annotations %v; want the checkpoint signal %q", got.Name, got.Annotations, GangSignal(v1.DisruptionReasonUnhealthy))
		}
	}
}
