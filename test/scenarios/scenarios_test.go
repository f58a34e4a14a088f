package scenarios

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/simulate"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pricing"
)

const catalogName = "aws/us-east-1"

// result is one scenario solved against the AWS catalog.
type result struct {
	snap  *solver.Snapshot
	plan  *solver.Plan
	naive float64
	pods  int
	// node maps a pod's namespace/name to the new node holding it.
	node map[string]*solver.NewNode
}

// solve runs the simulate use case on s, keeping the snapshot and plan it
// produced for the structural checks.
func solve(t testing.TB, s Scenario, opts ...solver.Option) *result {
	t.Helper()
	set, err := s.Load()
	if err != nil {
		t.Fatalf("loading %s: %v", s.Name, err)
	}
	c, err := pricing.Load(catalogName)
	if err != nil {
		t.Fatal(err)
	}
	r := &result{node: map[string]*solver.NewNode{}}
	capture := func(ctx context.Context, snap *solver.Snapshot) (*solver.Plan, error) {
		r.snap = snap
		plan, err := solver.Solve(ctx, snap, opts...)
		r.plan = plan
		return plan, err
	}
	report, err := simulate.Run(context.Background(), simulate.Input{Manifests: set, Catalog: c}, simulate.Options{Solve: capture})
	if err != nil {
		t.Fatalf("%s: %v", s.Name, err)
	}
	r.naive = report.NaiveCostPerHour
	// Every pod the solver saw: the manifests' own and those their
	// ProvisioningRequests ask for.
	r.pods = len(r.snap.Pods)
	if report.PodsPlaced()+len(report.Unschedulable) != r.pods {
		t.Errorf("report: %d placed + %d unschedulable, want %d pods", report.PodsPlaced(), len(report.Unschedulable), r.pods)
	}
	for _, n := range r.plan.NewNodes {
		for _, p := range n.Pods {
			r.node[p.Namespace+"/"+p.Name] = n
		}
	}
	return r
}

func TestScenarios(t *testing.T) {
	for _, s := range All() {
		t.Run(s.Name, func(t *testing.T) {
			if s.Large && (testing.Short() || raceEnabled || strings.HasSuffix(s.Name, "-100k")) {
				t.Skip("large scenario: measured by the benchmarks (and tested without -short or -race)")
			}
			var stats solver.Stats
			r := solve(t, s, solver.WithStats(&stats))
			checkInvariants(t, s, r)
			if stats.LPStopped > 0 {
				// Real programs need a few pivots per row; a stop costs
				// the bound and the guide a round.
				t.Errorf("%d simplex runs of the LP relaxation stopped at their pivot limit", stats.LPStopped)
			}
			if check, ok := specific[s.Name]; ok {
				check(t, r)
			}
			t.Logf("%s: %d pods on %d new nodes, $%.2f/h (lower bound $%.2f/h, naive $%.2f/h)",
				s.Name, r.pods, len(r.plan.NewNodes), r.plan.CostPerHour, r.plan.LowerBoundPerHour, r.naive)
		})
	}
}

// checkInvariants holds for every scenario: they are all feasible.
func checkInvariants(t *testing.T, s Scenario, r *result) {
	t.Helper()
	for _, u := range r.plan.Unschedulable {
		t.Errorf("pod %s/%s unschedulable: %s", u.Pod.Namespace, u.Pod.Name, u.Reason)
	}
	placed := 0
	sum := 0.0
	for i, n := range r.plan.NewNodes {
		placed += len(n.Pods)
		if len(n.Choices) == 0 {
			t.Errorf("new node %d has no choices", i)
			continue
		}
		sum += n.PricePerHour()
		it := n.Choices[0].InstanceType
		alloc := it.Allocatable()
		req := corev1.ResourceList{}
		for _, p := range n.Pods {
			for k, v := range simulate.PodRequests(p) {
				q := req[k]
				q.Add(v)
				req[k] = q
			}
		}
		for _, k := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			if have, want := alloc[k], req[k]; want.Cmp(have) > 0 {
				t.Errorf("node %d (%s): pods request %s %s, allocatable is %s", i, it.Name, want.String(), k, have.String())
			}
		}
	}
	if placed != len(r.node) {
		t.Errorf("%d placements for %d distinct pods: a pod is placed twice", placed, len(r.node))
	}
	if got := len(r.node) + len(r.plan.Unschedulable); got != r.pods {
		t.Errorf("placed + unschedulable = %d, want all %d pods", got, r.pods)
	}
	if diff := r.plan.CostPerHour - sum; diff > 1e-6 || diff < -1e-6 {
		t.Errorf("CostPerHour %.6f is not the sum of node prices %.6f", r.plan.CostPerHour, sum)
	}
	if r.plan.CostPerHour < r.plan.LowerBoundPerHour-1e-6 {
		t.Errorf("cost $%.4f/h is below the lower bound $%.4f/h", r.plan.CostPerHour, r.plan.LowerBoundPerHour)
	}
	if s.GPU && r.plan.CostPerHour > r.naive+1e-6 {
		t.Errorf("cost $%.4f/h is above the naive one-node-per-pod cost $%.4f/h", r.plan.CostPerHour, r.naive)
	}
}

func gpus(n *solver.NewNode) int {
	if g := n.Choices[0].InstanceType.GPU; g != nil {
		return g.Count
	}
	return 0
}

func podsOf(r *result, prefix string) []string {
	var out []string
	for name := range r.node {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}

var specific = map[string]func(t *testing.T, r *result){
	"seeds-example": func(t *testing.T, r *result) {
		trainers := map[*solver.NewNode]int{}
		for _, p := range podsOf(r, "default/trainer-") {
			n := r.node[p]
			if gpus(n) < 8 {
				t.Errorf("%s is on %s with %d GPUs, needs 8", p, n.Choices[0].InstanceType.Name, gpus(n))
			}
			trainers[n]++
		}
		if len(trainers) != 2 {
			t.Errorf("the 2 trainers share nodes: %d nodes", len(trainers))
		}
		for _, p := range podsOf(r, "default/inference-") {
			if gpus(r.node[p]) == 0 {
				t.Errorf("%s is on %s, which has no GPU", p, r.node[p].Choices[0].InstanceType.Name)
			}
		}
		// The article's shape is 1 x 4-GPU, 1 CPU and 2 x 8-GPU nodes; the
		// cheapest plan may split the 4-GPU node into single-GPU ones, but
		// never needs more than one node per inference pod, one for the
		// CPU services and one per trainer.
		if n := len(r.plan.NewNodes); n > 3+1+2 {
			t.Errorf("%d nodes for the seeds portfolio", n)
		}
	},
	"mixed-inference": func(t *testing.T, r *result) {
		for name, n := range r.node {
			it := n.Choices[0].InstanceType
			if strings.HasPrefix(name, "inference/gateway-") {
				if it.GPU != nil {
					t.Errorf("%s is on GPU type %s", name, it.Name)
				}
				continue
			}
			want := map[string]string{"embeddings": "t4", "whisper": "l4", "llama-8b": "a10g", "llama-70b": "h100"}
			app := strings.TrimPrefix(name[:strings.LastIndexByte(name, '-')], "inference/")
			if it.GPU == nil || it.GPU.Name != want[app] {
				t.Errorf("%s is on %s, want a %s node", name, it.Name, want[app])
			}
		}
	},
	"distributed-training-gang": func(t *testing.T, r *result) {
		zones := map[string]int{}
		for _, p := range podsOf(r, "research/pretrain-") {
			zones[r.node[p].Choices[0].Offering.Zone]++
		}
		if len(zones) != 1 {
			t.Errorf("the gang spans zones %v, want one", zones)
		}
	},
	"spot-only-batch": func(t *testing.T, r *result) {
		for _, n := range r.plan.NewNodes {
			for _, c := range n.Choices {
				if c.Offering.CapacityType != v1.CapacityTypeSpot {
					t.Errorf("node for %d pods may launch as %s %s", len(n.Pods), c.InstanceType.Name, c.Offering.CapacityType)
				}
			}
		}
	},
	"reserved-first": func(t *testing.T, r *result) {
		used := map[string]int{}
		for _, n := range r.plan.NewNodes {
			if o := n.Choices[0].Offering; o.CapacityType == v1.CapacityTypeReserved {
				used[n.Choices[0].InstanceType.Name+" "+o.Zone]++
			}
		}
		want := map[string]int{"g6.12xlarge us-east-1a": 2, "p5.48xlarge us-east-1b": 1}
		if diff := cmp.Diff(want, used); diff != "" {
			t.Errorf("reserved nodes used (-want +got):\n%s", diff)
		}
	},
	"zonal-spread": func(t *testing.T, r *result) {
		for _, app := range []string{"web", "etcd"} {
			zones := map[string]int{}
			for _, p := range podsOf(r, "default/"+app+"-") {
				zones[r.node[p].Choices[0].Offering.Zone]++
			}
			lo, hi := 1<<30, 0
			for z, n := range zones {
				if z != "us-east-1a" && z != "us-east-1b" && z != "us-east-1c" {
					t.Errorf("%s pod in zone %s, outside the pool's zones", app, z)
				}
				lo, hi = min(lo, n), max(hi, n)
			}
			if len(zones) != 3 || hi-lo > 1 {
				t.Errorf("%s spread over zones %v, want all three within a skew of 1", app, zones)
			}
		}
	},
	"mig-inference": func(t *testing.T, r *result) {
		for _, n := range r.plan.NewNodes {
			it := n.Choices[0].InstanceType
			if it.GPU == nil || it.GPU.MIGProfiles["1g.10gb"] == 0 {
				t.Errorf("MIG pods on %s, which has no 1g.10gb profile", it.Name)
			}
		}
	},
	"time-sliced-inference": func(t *testing.T, r *result) {
		physical := 0
		for _, n := range r.plan.NewNodes {
			physical += gpus(n)
		}
		// 12 pods sharing 4 ways need 3 GPUs; a plan with 12 has ignored time-slicing.
		if physical >= 12 {
			t.Errorf("%d physical GPUs for 12 time-sliced pods", physical)
		}
	},
	"cpu-web": func(t *testing.T, r *result) {
		seen := map[*solver.NewNode]bool{}
		for _, p := range podsOf(r, "default/postgres-") {
			if seen[r.node[p]] {
				t.Errorf("postgres pods share a node despite hostname anti-affinity")
			}
			seen[r.node[p]] = true
		}
		for _, n := range r.plan.NewNodes {
			if gpus(n) > 0 {
				t.Errorf("CPU services on GPU type %s", n.Choices[0].InstanceType.Name)
			}
		}
	},
}

func TestDiverse(t *testing.T) {
	a, b := Diverse(1000), Diverse(1000)
	if len(a) != 1000 {
		t.Fatalf("Diverse(1000) made %d pods", len(a))
	}
	kinds := map[string]int{}
	for i := range a {
		if diff := cmp.Diff(a[i], b[i]); diff != "" {
			t.Fatalf("Diverse is not deterministic at pod %d (-first +second):\n%s", i, diff)
		}
		app := a[i].Labels["app"]
		kinds[strings.TrimRight(app, "-0123456789")]++
	}
	want := map[string]int{"plain": 200, "zone-spread": 200, "host-spread": 200, "zone-affinity": 200, "host-anti-affinity": 200}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("pod kinds (-want +got):\n%s", diff)
	}
}

func TestScenarioFilesLoad(t *testing.T) {
	// Independent of the solver: every file-based scenario must read cleanly
	// with no warnings except the documented Service in cpu-web.
	for _, s := range All() {
		if s.Large {
			continue
		}
		set, err := s.Load()
		if err != nil {
			t.Errorf("%s: %v", s.Name, err)
			continue
		}
		if len(set.Pods)+len(set.ProvisioningRequests) == 0 {
			t.Errorf("%s has no pods", s.Name)
		}
		wantWarnings := 0
		if s.Name == "cpu-web" {
			wantWarnings = 1
		}
		if len(set.Warnings) != wantWarnings {
			t.Errorf("%s: warnings %v", s.Name, set.Warnings)
		}
	}
	set, err := fromDir("seeds-example", true).Load()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, p := range set.Pods {
		count[fmt.Sprint(p.OwnerReferences[0].Name)]++
	}
	if diff := cmp.Diff(map[string]int{"inference": 3, "api": 5, "trainer": 2}, count); diff != "" {
		t.Errorf("seeds-example pods (-want +got):\n%s", diff)
	}
}

// oneZone checks that the pods with a prefix share one zone and the gang.
func oneZone(t *testing.T, r *result, prefix, gang string, want int) {
	t.Helper()
	pods := podsOf(r, prefix)
	if len(pods) != want {
		t.Fatalf("%d pods %s*, want %d", len(pods), prefix, want)
	}
	zones := map[string]bool{}
	for _, p := range pods {
		n := r.node[p]
		zones[n.Choices[0].Offering.Zone] = true
		if n.Gang != gang {
			t.Errorf("%s is on a node of gang %q, want %q", p, n.Gang, gang)
		}
	}
	if len(zones) != 1 {
		t.Errorf("gang %s spans zones %v", gang, zones)
	}
}

func init() {
	specific["kueue-gang"] = func(t *testing.T, r *result) {
		oneZone(t, r, "research/llm-finetune-", "research/kueue:llm-finetune", 4)
	}
	specific["provisioning-request"] = func(t *testing.T, r *result) {
		oneZone(t, r, "research/pretrain-", "research/provisioningrequest/pretrain", 9)
	}
	specific["dra-inference"] = func(t *testing.T, r *result) {
		for _, p := range podsOf(r, "serving/llm-") {
			if g := r.node[p].Choices[0].InstanceType.GPU; g == nil || g.MemoryMiB < 40<<10 {
				t.Errorf("%s on %s: its claim asks for a GPU with at least 40 GiB", p, r.node[p].Choices[0].InstanceType.Name)
			}
		}
		for _, p := range podsOf(r, "serving/embed-") {
			if g := r.node[p].Choices[0].InstanceType.GPU; g == nil || computeCapability(g.ComputeCapability) < 8 {
				t.Errorf("%s on %s: its claim asks for compute capability 8.0 or newer", p, r.node[p].Choices[0].InstanceType.Name)
			}
		}
		if len(podsOf(r, "serving/")) != 10 {
			t.Errorf("%d serving pods placed, want 10", len(podsOf(r, "serving/")))
		}
	}
}

func computeCapability(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return f
}

func TestGPUMix(t *testing.T) {
	a, b := GPUMix(5000), GPUMix(5000)
	if len(a) != 5000 {
		t.Fatalf("GPUMix(5000) made %d pods", len(a))
	}
	gpuPods, antiAffinity, zoneSpread := 0, 0, 0
	for i := range a {
		if diff := cmp.Diff(a[i], b[i]); diff != "" {
			t.Fatalf("GPUMix is not deterministic at pod %d (-first +second):\n%s", i, diff)
		}
		if _, ok := a[i].Spec.Containers[0].Resources.Requests["nvidia.com/gpu"]; ok {
			gpuPods++
		}
		if a[i].Spec.Affinity != nil {
			antiAffinity++
		}
		if len(a[i].Spec.TopologySpreadConstraints) > 0 {
			zoneSpread++
		}
	}
	// About 4% GPU pods; anti-affinity and zone spread each on a good share.
	if gpuPods < 100 || gpuPods > 500 || antiAffinity < 250 || zoneSpread < 1000 {
		t.Errorf("GPUMix(5000): %d GPU pods, %d with anti-affinity, %d spread over zones", gpuPods, antiAffinity, zoneSpread)
	}
}

// podsSnapshot is what the solver sees for pods alone, with the default
// pool and the AWS catalog.
func podsSnapshot(t *testing.T, pods []*corev1.Pod) *solver.Snapshot {
	t.Helper()
	c, err := pricing.Load(catalogName)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := simulate.BuildSnapshot(simulate.Input{Manifests: &manifest.Set{Pods: pods}, Catalog: c})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestFillBalancesSmallMachines: on the diverse mix, whose cheapest plan
// puts CPU-heavy pods on many small burstable machines, filling the LP's
// machines by matching pods to room is cheaper than first fit over the same
// machines in either order, and the default solve keeps the fill's plan.
func TestFillBalancesSmallMachines(t *testing.T) {
	snap := podsSnapshot(t, Diverse(2000))
	cost := map[solver.Strategy]float64{}
	for _, s := range []solver.Strategy{solver.StrategyLP, solver.StrategyLPInterleaved, solver.StrategyLPFill, solver.StrategyBest} {
		plan, err := solver.Solve(t.Context(), snap, solver.WithStrategy(s))
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Unschedulable) > 0 {
			t.Fatalf("strategy %d: %d pods unschedulable", s, len(plan.Unschedulable))
		}
		cost[s] = plan.CostPerHour
	}
	firstFit := min(cost[solver.StrategyLP], cost[solver.StrategyLPInterleaved])
	if cost[solver.StrategyLPFill] > 0.99*firstFit {
		t.Errorf("fill $%.3f/h, first fit over the LP's machines $%.3f/h: want the fill at least 1%% cheaper", cost[solver.StrategyLPFill], firstFit)
	}
	if cost[solver.StrategyBest] > cost[solver.StrategyLPFill]+1e-9 {
		t.Errorf("default solve $%.3f/h, dearer than the fill's $%.3f/h", cost[solver.StrategyBest], cost[solver.StrategyLPFill])
	}
}

// One zone's share of a plan, re-solved with its pods pinned there (the
// zone-level rules dropped, since no pod changes zone), is a program the LP
// relaxation once lost precision on: on gpu-cpu-50k's us-east-1c share a
// negative basic value picked a negative step, and two simplex runs spent
// their 50,000 pivots (14.8 s). No run may stop at its limit.
func TestZoneShareLPKeepsPrecision(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("large scenario: tested without -short or -race")
	}
	snap := podsSnapshot(t, GPUMix(50_000))
	plan, err := solver.Solve(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	const zone = "us-east-1c"
	var pods []*corev1.Pod
	for _, n := range plan.NewNodes {
		if n.Choices[0].Offering.Zone != zone {
			continue
		}
		for _, p := range n.Pods {
			p = p.DeepCopy()
			p.Spec.NodeSelector = map[string]string{corev1.LabelTopologyZone: zone}
			p.Spec.TopologySpreadConstraints = slices.DeleteFunc(p.Spec.TopologySpreadConstraints,
				func(c corev1.TopologySpreadConstraint) bool { return c.TopologyKey == corev1.LabelTopologyZone })
			pods = append(pods, p)
		}
	}
	if len(pods) < 1000 {
		t.Fatalf("the plan puts %d pods in %s; the test needs a zone's share of thousands", len(pods), zone)
	}
	share := *snap
	share.Pods, share.Types = pods, nil
	var stats solver.Stats
	sub, err := solver.Solve(context.Background(), &share, solver.WithStats(&stats))
	if err != nil {
		t.Fatal(err)
	}
	if stats.LPStopped > 0 {
		t.Errorf("%d simplex runs stopped at their pivot limit re-solving %d pods of %s", stats.LPStopped, len(pods), zone)
	}
	if len(sub.Unschedulable) > 0 {
		t.Errorf("%d of the zone's pods unschedulable on their own", len(sub.Unschedulable))
	}
}

// On diverse-10k the zone-spread apps send a share of their pods to every
// zone, us-east-1e among them, which offers none of the t3a machines the
// LP guide buys; packed again on their own, the zones' shares cost less.
// Every pod stays in the zone it had, and the plan still meets every
// invariant.
func TestRezoneSavesWhereTheGuideSaysNothing(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("large scenario: tested without -short or -race")
	}
	s := scenarioNamed(t, "diverse-10k")
	with, without := solve(t, s), solve(t, s, solver.WithoutRezone())
	checkInvariants(t, s, with)
	if with.plan.CostPerHour >= without.plan.CostPerHour {
		t.Errorf("plan $%.4f/h with rezoning, $%.4f/h without: want cheaper", with.plan.CostPerHour, without.plan.CostPerHour)
	}
	for pod, n := range without.node {
		if m, ok := with.node[pod]; !ok || m.Choices[0].Offering.Zone != n.Choices[0].Offering.Zone {
			t.Fatalf("pod %s moved from %s to %v", pod, n.Choices[0].Offering.Zone, m)
		}
	}
	if len(with.node) != len(without.node) {
		t.Errorf("%d pods on new nodes with rezoning, %d without", len(with.node), len(without.node))
	}
	t.Logf("$%.4f/h with rezoning, $%.4f/h without (%.2f%%)", with.plan.CostPerHour, without.plan.CostPerHour,
		100*(with.plan.CostPerHour/without.plan.CostPerHour-1))
}

func scenarioNamed(t *testing.T, name string) Scenario {
	t.Helper()
	for _, s := range All() {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no scenario %s", name)
	return Scenario{}
}
