package solver

import (
	"context"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

func annotate(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[k] = v
	}
}

func unschedNames(p *Plan) string {
	var out []string
	for _, u := range p.Unschedulable {
		out = append(out, u.Pod.Name+": "+u.Reason)
	}
	return strings.Join(out, "; ")
}

var onDemand = withReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)

func solveT(t *testing.T, snap *Snapshot) *Plan {
	t.Helper()
	plan, err := Solve(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	return plan
}

// zoneOf is the zone of the node a pod was planned onto, "" if unplaced.
func zoneOf(plan *Plan, name string) string {
	for _, n := range plan.NewNodes {
		for _, p := range n.Pods {
			if p.Name == name {
				return n.Choices[0].Offering.Zone
			}
		}
	}
	return ""
}

func TestGangDeclaredByAnnotationsWaitsForItsSize(t *testing.T) {
	pods := makePods(3, "job", "1", "1Gi", annotate(v1.LabelPodGroup, "job"), annotate(v1.LabelPodGroupSize, "4"))
	plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}})
	if len(plan.NewNodes) != 0 || len(plan.Unschedulable) != 3 {
		t.Fatalf("planned %d nodes, %d unschedulable; want the incomplete gang held back", len(plan.NewNodes), len(plan.Unschedulable))
	}
	if !strings.Contains(plan.Unschedulable[0].Reason, "has 3 of its 4 pods") {
		t.Errorf("reason %q", plan.Unschedulable[0].Reason)
	}
}

func TestGangsThatDifferOnlyByAnnotationStaySeparate(t *testing.T) {
	// Same labels and requests: without the gang in the shape key both
	// gangs would become one shape, and complete gang a would carry b along.
	a := makePods(2, "a", "2", "4Gi", annotate(v1.LabelPodGroup, "a"), annotate(v1.LabelPodGroupSize, "2"))
	b := makePods(2, "b", "2", "4Gi", annotate(v1.LabelPodGroup, "b"), annotate(v1.LabelPodGroupSize, "3"))
	plan := solveT(t, &Snapshot{Pods: concat(a, b), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}})
	var placed []string
	for _, n := range plan.NewNodes {
		if n.Gang != "default/a" {
			t.Errorf("node holds gang %q, want default/a", n.Gang)
		}
		for _, p := range n.Pods {
			placed = append(placed, p.Name)
		}
	}
	if strings.Join(placed, " ") != "a-000 a-001" || len(plan.Unschedulable) != 2 {
		t.Errorf("placed %v, unschedulable %s; want gang a placed and incomplete gang b held", placed, unschedNames(plan))
	}
}

func TestKueuePodGroupIsAGang(t *testing.T) {
	pods := makePods(2, "w", "2", "4Gi", label(scheduling.LabelKueuePodGroup, "wl"), annotate(scheduling.AnnotationKueuePodGroupTotal, "3"))
	plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}})
	if len(plan.NewNodes) != 0 || len(plan.Unschedulable) != 2 {
		t.Errorf("a Kueue group of 2 of 3 pods got %d nodes", len(plan.NewNodes))
	}
	pods = append(pods, makePod("w-extra", "2", "4Gi", label(scheduling.LabelKueuePodGroup, "wl"), annotate(scheduling.AnnotationKueuePodGroupTotal, "3")))
	plan = solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}})
	if len(plan.Unschedulable) != 0 {
		t.Fatalf("complete Kueue group unschedulable: %s", unschedNames(plan))
	}
	zone := zoneOf(plan, "w-000")
	for _, p := range pods {
		if z := zoneOf(plan, p.Name); z != zone {
			t.Errorf("pod %s in zone %q, gang's first pod in %q", p.Name, z, zone)
		}
	}
}

type fixedSizes int

func (n fixedSizes) IndexedJobSize(string, string) (int, error) { return int(n), nil }
func (n fixedSizes) JobSetSize(string, string) (int, error)     { return int(n), nil }
func (fixedSizes) LeaderWorkerSetLeaderFirst(string, string) (bool, error) {
	return false, nil
}

func TestOptedInGangSources(t *testing.T) {
	pods := makePods(2, "js", "1", "1Gi", label(scheduling.LabelJobSetName, "big"))
	snap := &Snapshot{Pods: pods, NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}}
	if plan := solveT(t, snap); len(plan.Unschedulable) != 0 {
		t.Fatalf("without opting in the JobSet's pods are ordinary pods: %s", unschedNames(plan))
	}
	snap.Gangs = scheduling.Gangs{Sources: map[scheduling.GangSource]bool{scheduling.GangSourceJobSet: true}, Sizes: fixedSizes(4)}
	if plan := solveT(t, snap); len(plan.Unschedulable) != 2 || !strings.Contains(plan.Unschedulable[0].Reason, "jobset:big has 2 of its 4 pods") {
		t.Errorf("opted-in JobSet of 2 of 4 pods: %s", unschedNames(plan))
	}
}

func placeable(its []*cloudprovider.InstanceType, names ...string) []*cloudprovider.InstanceType {
	for _, it := range its {
		for _, n := range names {
			if it.Name == n {
				it.Placement = true
			}
		}
	}
	return its
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestGangPlacementGroup(t *testing.T) {
	train := func(n int) []*corev1.Pod {
		return makePods(n, "train", "8", "64Gi", gpus(8), podGroup("llm-pretrain", n), label("app", "t"), podAntiAffinity(v1.LabelHostname, map[string]string{"app": "t"}))
	}
	t.Run("two placeable machines share a group and keep only placeable choices", func(t *testing.T) {
		plan := solveT(t, &Snapshot{Pods: train(2), NodePools: []*NodePool{makePool("gpu", placeable(gpuCatalog(), "g5.48xlarge", "p4d.24xlarge", "p5.48xlarge"))}})
		if len(plan.NewNodes) != 2 {
			t.Fatalf("%d nodes, want 2", len(plan.NewNodes))
		}
		g := plan.NewNodes[0].PlacementGroup
		if g == "" || !dnsLabel.MatchString(g) || len(g) > 63 {
			t.Fatalf("placement group %q, want a DNS label", g)
		}
		for _, n := range plan.NewNodes {
			if n.PlacementGroup != g || n.Gang != "default/llm-pretrain" {
				t.Errorf("node has group %q gang %q, want %q default/llm-pretrain", n.PlacementGroup, n.Gang, g)
			}
			for _, c := range n.Choices {
				if !c.InstanceType.Placement || c.Offering.Zone != n.Choices[0].Offering.Zone {
					t.Errorf("choice %s/%s cannot join the group", c.InstanceType.Name, c.Offering.Zone)
				}
			}
		}
	})
	t.Run("no group when the cheapest type cannot be placed", func(t *testing.T) {
		plan := solveT(t, &Snapshot{Pods: train(2), NodePools: []*NodePool{makePool("gpu", placeable(gpuCatalog(), "p5.48xlarge"))}})
		for _, n := range plan.NewNodes {
			if n.PlacementGroup != "" || n.Gang == "" {
				t.Errorf("node on %s: group %q gang %q, want none and the gang", n.Choices[0].InstanceType.Name, n.PlacementGroup, n.Gang)
			}
			if len(n.Choices) < 2 {
				t.Errorf("fallbacks dropped without a group: %d choices", len(n.Choices))
			}
		}
	})
	t.Run("a one-machine gang needs no group", func(t *testing.T) {
		plan := solveT(t, &Snapshot{Pods: train(1), NodePools: []*NodePool{makePool("gpu", placeable(gpuCatalog(), "p4d.24xlarge", "p5.48xlarge", "g5.48xlarge"))}})
		if len(plan.NewNodes) != 1 || plan.NewNodes[0].PlacementGroup != "" {
			t.Errorf("one-node gang got group %q", plan.NewNodes[0].PlacementGroup)
		}
	})
	t.Run("pods outside gangs get neither", func(t *testing.T) {
		plan := solveT(t, &Snapshot{Pods: makePods(2, "web", "8", "64Gi", gpus(8)), NodePools: []*NodePool{makePool("gpu", placeable(gpuCatalog(), "g5.48xlarge"))}})
		for _, n := range plan.NewNodes {
			if n.Gang != "" || n.PlacementGroup != "" {
				t.Errorf("gang %q group %q on a node of ordinary pods", n.Gang, n.PlacementGroup)
			}
		}
	})
}

func TestPlacementGroupName(t *testing.T) {
	long := strings.Repeat("very-long-team-name/", 10)
	for _, gang := range []string{"default/llm", "ml/kueue:wl-1", long, "../__"} {
		a, b := PlacementGroupName(gang, "us-east-1a"), PlacementGroupName(gang, "us-east-1b")
		if !dnsLabel.MatchString(a) || len(a) > 63 {
			t.Errorf("PlacementGroupName(%q) = %q, not a DNS label of at most 63", gang, a)
		}
		if a == b {
			t.Errorf("gang %q gets the same group %q in two zones", gang, a)
		}
		if l := GangLabelValue(gang); !dnsLabel.MatchString(l) || len(l) > 63 || l == GangLabelValue(gang+"x") {
			t.Errorf("GangLabelValue(%q) = %q, not a unique label value", gang, l)
		}
	}
}

// A node can fall out when the plan is finished (here the pool's minValues:
// the big pod's node has one qualifying type, the pool asks for two), after
// the gang was placed whole; the rest of the gang must go with it, or half a
// training job is bought.
func TestGangWithdrawnWholeWhenANodeFailsMinValues(t *testing.T) {
	two := 2
	pool := makePool("default", cpuCatalog(), onDemand, func(np *NodePool) {
		np.Spec.Template.Spec.Requirements = append(np.Spec.Template.Spec.Requirements,
			v1.NodeSelectorRequirementWithMinValues{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpExists, MinValues: &two})
	})
	g := map[string]string{"app": "g"}
	snap := &Snapshot{
		Pods: concat(
			makePods(1, "big", "10", "1Gi", label("app", "g"), label("role", "big"), podGroup("g", 2), podAntiAffinity(v1.LabelHostname, g)),
			makePods(1, "small", "1", "1Gi", label("app", "g"), podGroup("g", 2), podAntiAffinity(v1.LabelHostname, g)),
			// web may share small's node, not big's.
			makePods(1, "web", "1", "1Gi", podAntiAffinity(v1.LabelHostname, map[string]string{"role": "big"})),
		),
		NodePools: []*NodePool{pool},
	}
	plan := solveT(t, snap)
	for _, n := range plan.NewNodes {
		for _, p := range n.Pods {
			if p.Labels["app"] == "g" {
				t.Errorf("gang pod %s planned onto a new node while the gang's other pod is unschedulable: %s", p.Name, unschedNames(plan))
			}
		}
	}
	if len(plan.Unschedulable) != 2 || len(plan.NewNodes) != 1 || plan.CostPerHour != plan.NewNodes[0].PricePerHour() {
		t.Errorf("want both gang pods unschedulable and one node for web at its price; got %d unschedulable (%s), %d nodes, $%v/h",
			len(plan.Unschedulable), unschedNames(plan), len(plan.NewNodes), plan.CostPerHour)
	}
	for _, u := range plan.Unschedulable {
		if !strings.Contains(u.Reason, "minValues") && !strings.Contains(u.Reason, "at least 2 distinct") {
			t.Errorf("%s: reason %q does not name the minValues that broke the gang", u.Pod.Name, u.Reason)
		}
	}
}

// Workers that must run in their leader's zone are larger than the leader,
// so size order placed them first, found no leader, and failed: the gang in
// every zone, ordinary pods one by one. Required affinity to other pending
// pods now places those first.
func TestWorkersWithAffinityToASmallerLeader(t *testing.T) {
	for _, gang := range []bool{true, false} {
		leader := []podOpt{label("role", "leader")}
		worker := []podOpt{label("role", "worker"), podAffinity(v1.LabelZone, map[string]string{"role": "leader"})}
		if gang {
			leader, worker = append(leader, podGroup("job", 4)), append(worker, podGroup("job", 4))
		}
		snap := &Snapshot{
			Pods:      concat(makePods(1, "leader", "500m", "1Gi", leader...), makePods(3, "worker", "2", "4Gi", worker...)),
			NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
		}
		plan := solveT(t, snap)
		if len(plan.Unschedulable) > 0 {
			t.Errorf("gang %v: unschedulable though one zone holds them all: %s", gang, unschedNames(plan))
		}
		if errs := validate(snap, plan); len(errs) > 0 {
			t.Errorf("gang %v: violations:\n  %s", gang, strings.Join(errs, "\n  "))
		}
	}
}
