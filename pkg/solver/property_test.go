package solver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// randomSnapshot builds a small random cluster: a catalog drawn from a mix of
// CPU and GPU types, one to three pools (taints, weights, limits, zone and
// capacity-type requirements, GPU sharing), existing nodes with pods, DaemonSets,
// and pods with every constraint kind the solver handles.
func randomSnapshot(r *rand.Rand) *Snapshot {
	var catalog []*cloudprovider.InstanceType
	for i := range 4 + r.IntN(10) {
		cpu := int64(2 << r.IntN(6))
		s := itSpec{name: fmt.Sprintf("t%d.%dx", i, cpu), cpu: cpu, memGi: cpu * int64(2<<r.IntN(3)), price: float64(cpu) * (0.03 + 0.03*r.Float64())}
		if r.IntN(4) == 0 {
			s.gpus, s.gpuName = int64(1<<r.IntN(4)), []string{"a10g", "a100"}[r.IntN(2)]
			s.price += float64(s.gpus) * 1.5
			if s.gpuName == "a100" {
				s.mig = map[string]int{"1g.5gb": 7}
			}
		}
		it := makeIT(s)
		if r.IntN(3) == 0 { // a capacity reservation
			it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: testZones[r.IntN(len(testZones))], CapacityType: v1.CapacityTypeReserved,
				PricePerHour: 0.0001, Available: true, ReservationID: fmt.Sprintf("cr-%d", i), ReservedCount: 1 + r.IntN(2)})
		}
		for j := range it.Offerings {
			if r.IntN(8) == 0 {
				it.Offerings[j].Available = false
			}
		}
		catalog = append(catalog, it)
	}
	if r.IntN(3) == 0 {
		// Commitments the running machines partly use: covered offerings
		// that a plan may spend once, across types and zones.
		var cs []v1.Commitment
		for i := range 1 + r.IntN(3) {
			c := v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c-%d", i)}}
			c.Spec.Type = v1.CommitmentReservedInstances
			switch r.IntN(3) {
			case 0:
				c.Spec.Count = ptr.To(int32(1 + r.IntN(3)))
			case 1:
				c.Spec.Type, c.Spec.AmountPerHour = v1.CommitmentSavingsPlan, ptr.To(resource.MustParse(fmt.Sprintf("%.2f", 0.2+2*r.Float64())))
				c.Spec.DiscountPercent = ptr.To(int32(r.IntN(50)))
			default:
				c.Spec.Type, c.Spec.DiscountPercent = v1.CommitmentDiscount, ptr.To(int32(1+r.IntN(40)))
			}
			if r.IntN(2) == 0 {
				c.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{catalog[r.IntN(len(catalog))].Name, catalog[r.IntN(len(catalog))].Name}}}
			}
			cs = append(cs, c)
		}
		running := []pricing.Machine{{InstanceType: catalog[0].Name, ListPricePerHour: catalog[0].Offerings[0].PricePerHour,
			Labels: map[string]string{v1.LabelInstanceType: catalog[0].Name, v1.LabelCapacityType: v1.CapacityTypeOnDemand, v1.LabelZone: testZones[0]}}}
		catalog = pricing.ApplyCommitments(catalog, cs, running, time.Unix(0, 0))
	}
	snap := &Snapshot{}
	for i := range 1 + r.IntN(3) {
		var opts []poolOpt
		if r.IntN(3) == 0 {
			opts = append(opts, withTaint("dedicated"))
		}
		if r.IntN(2) == 0 {
			opts = append(opts, withWeight(int32(1+r.IntN(50))))
		}
		if r.IntN(4) == 0 {
			opts = append(opts, withLimit(corev1.ResourceCPU, fmt.Sprint(16+r.IntN(200))))
		}
		if r.IntN(4) == 0 {
			opts = append(opts, withLimit(ResourceNodes, fmt.Sprint(1+r.IntN(6))))
		}
		if r.IntN(4) == 0 {
			opts = append(opts, withReq(v1.LabelZone, corev1.NodeSelectorOpIn, testZones[:1+r.IntN(3)]...))
		}
		if r.IntN(4) == 0 {
			opts = append(opts, withReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand))
		}
		pool := makePool(fmt.Sprintf("pool-%d", i), catalog, opts...)
		if r.IntN(5) == 0 {
			pool.Spec.Template.Spec.GPU = &v1.GPUSharing{MIGProfile: "1g.5gb"}
		}
		snap.NodePools = append(snap.NodePools, pool)
	}
	if r.IntN(2) == 0 {
		snap.DaemonSetPods = []*corev1.Pod{makePod("ds", "100m", "128Mi")}
	}
	for i := range r.IntN(4) {
		z := testZones[r.IntN(len(testZones))]
		n := &Node{Name: fmt.Sprintf("existing-%d", i), Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Labels: map[string]string{v1.LabelZone: z, v1.LabelHostname: fmt.Sprintf("existing-%d", i), v1.LabelCapacityType: v1.CapacityTypeOnDemand, v1.LabelArch: "amd64"}}
		if r.IntN(2) == 0 {
			n.Labels[v1.LabelInstanceCPU] = "8"
		}
		for j := range r.IntN(3) {
			opts := []podOpt{label("app", fmt.Sprintf("app-%d", r.IntN(4)))}
			if r.IntN(4) == 0 { // a running pod whose anti-affinity new pods must respect
				opts = append(opts, podAntiAffinity([]string{v1.LabelZone, v1.LabelHostname}[r.IntN(2)], map[string]string{"app": fmt.Sprintf("app-%d", r.IntN(4))}))
			}
			n.Pods = append(n.Pods, makePod(fmt.Sprintf("running-%d-%d", i, j), "1", "2Gi", opts...))
		}
		snap.Nodes = append(snap.Nodes, n)
	}
	cpus := []string{"100m", "500m", "1", "2", "4", "7", "30"}
	mems := []string{"256Mi", "1Gi", "4Gi", "16Gi", "64Gi"}
	for g := range 2 + r.IntN(6) {
		app := fmt.Sprintf("app-%d", g)
		sel := map[string]string{"app": app}
		opts := []podOpt{label("app", app)}
		switch r.IntN(12) {
		case 1:
			opts = append(opts, spread(v1.LabelZone, int32(1+r.IntN(2)), true, sel))
			if r.IntN(3) == 0 {
				md := int32(2 + r.IntN(3))
				opts = append(opts, func(p *corev1.Pod) { p.Spec.TopologySpreadConstraints[0].MinDomains = &md })
			}
		case 2:
			opts = append(opts, spread(v1.LabelHostname, 1, r.IntN(2) == 0, sel))
		case 3:
			opts = append(opts, podAffinity(v1.LabelZone, sel))
		case 4:
			opts = append(opts, podAntiAffinity(v1.LabelHostname, sel))
		case 5:
			opts = append(opts, nodeSelector(v1.LabelZone, testZones[r.IntN(len(testZones))]))
		case 6:
			opts = append(opts, tolerate("dedicated"))
		case 7:
			opts = append(opts, gpus(int64(1+r.IntN(4))))
		case 8:
			opts = append(opts, podGroup(app, 1+r.IntN(5)))
		case 9:
			opts = append(opts, preferredNodeAffinity(10, v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeSpot))
		case 10:
			opts = append(opts, extended("nvidia.com/mig-1g.5gb", int64(1+r.IntN(3))))
		case 11:
			opts = append(opts, spread(v1.LabelCapacityType, 1, true, sel))
		}
		if r.IntN(4) == 0 { // preferred pod (anti-)affinity, to this app or another
			other := map[string]string{"app": fmt.Sprintf("app-%d", r.IntN(4))}
			opts = append(opts, preferredPodAffinity([]string{v1.LabelHostname, v1.LabelZone}[r.IntN(2)], r.IntN(2) == 0, other))
		}
		// A hard spread that counts an earlier app's pods, not its own: chains
		// but no cycles, which spreadRanks documents it cannot order.
		if g > 0 && r.IntN(6) == 0 {
			other := map[string]string{"app": fmt.Sprintf("app-%d", r.IntN(g))}
			opts = append(opts, spread([]string{v1.LabelZone, v1.LabelInstanceCPU}[r.IntN(2)], int32(1+r.IntN(2)), true, other))
		}
		if g > 0 && r.IntN(6) == 0 { // required (anti-)affinity to an earlier app
			other := map[string]string{"app": fmt.Sprintf("app-%d", r.IntN(g))}
			key := []string{v1.LabelZone, v1.LabelHostname, v1.LabelInstanceCPU}[r.IntN(3)]
			if r.IntN(2) == 0 {
				opts = append(opts, podAffinity(key, other))
			} else {
				opts = append(opts, podAntiAffinity(key, other))
			}
		}
		if r.IntN(4) == 0 { // another team's namespace: rules here count none of default's pods
			opts = append(opts, func(p *corev1.Pod) { p.Namespace = "team-b" })
		}
		snap.Pods = append(snap.Pods, makePods(1+r.IntN(12), app, cpus[r.IntN(len(cpus))], mems[r.IntN(len(mems))], opts...)...)
	}
	addHostPorts(rand.New(rand.NewPCG(r.Uint64(), 13)), snap)
	return snap
}

// addHostPorts gives some apps and some running pods a host port, from a
// generator of its own so the rest of each seed's snapshot stays as it was.
func addHostPorts(r *rand.Rand, snap *Snapshot) {
	ports := []int32{8080, 9090}
	bind := func(p *corev1.Pod, port int32) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port, HostPort: port})
	}
	byApp := map[string]int32{}
	for _, p := range snap.Pods {
		key := p.Namespace + "/" + p.Labels["app"]
		port, ok := byApp[key]
		if !ok {
			if r.IntN(5) == 0 {
				port = ports[r.IntN(len(ports))]
			}
			byApp[key] = port
		}
		if port > 0 {
			bind(p, port)
		}
	}
	for _, n := range snap.Nodes {
		if len(n.Pods) > 0 && r.IntN(3) == 0 {
			bind(n.Pods[0], ports[r.IntN(len(ports))])
		}
	}
	if len(snap.DaemonSetPods) > 0 && r.IntN(3) == 0 {
		ds := snap.DaemonSetPods[0].DeepCopy()
		bind(ds, ports[r.IntN(len(ports))])
		snap.DaemonSetPods = []*corev1.Pod{ds}
	}
}

// TestPropertyRandomSnapshots: every plan of a random snapshot respects every
// constraint, costs at least its lower bound, is deterministic, and the
// default strategy is never worse than plain FFD.
func TestPropertyRandomSnapshots(t *testing.T) {
	n := 300
	if testing.Short() {
		n = 50
	}
	if v := os.Getenv("STOWAGE_PROPERTY_SEEDS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for seed := range n {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		snap := randomSnapshot(r)
		plan, err := Solve(context.Background(), snap)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if errs := validate(snap, plan); len(errs) > 0 {
			t.Errorf("seed %d: %d violations:\n  %s", seed, len(errs), strings.Join(errs, "\n  "))
			continue
		}
		// Merges must keep every constraint even where the repacked plan
		// does not win, so each strategy's repacked plan is validated too
		// (the LP-guided ones with their quotas and fill).
		m, err := newModel(snap)
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		guide := newLPGuide(m)
		for _, s := range []Strategy{StrategyFFD, StrategyCostAware, StrategyDemandAware, StrategyInterleaved, StrategyLP, StrategyLPInterleaved, StrategyLPFill} {
			if s.guided() && guide == nil {
				continue
			}
			st, err := pack(context.Background(), m, s, guide, nil)
			if err != nil {
				t.Fatalf("seed %d: %v", seed, err)
			}
			st.repack()
			p := st.finish(DefaultMaxChoices, false)
			p.LowerBoundPerHour = lowerBound(m, p, true, nil)
			if errs := validate(snap, p); len(errs) > 0 {
				t.Errorf("seed %d strategy %d repacked: %d violations:\n  %s", seed, s, len(errs), strings.Join(errs, "\n  "))
			}
		}
		again, _ := Solve(context.Background(), snap)
		if summarize(plan) != summarize(again) {
			t.Errorf("seed %d: two solves of the same snapshot differ", seed)
		}
		// Strategies stopped by the cost bar (looked at after every pod
		// here) could not have won: the plan is the one without the bar.
		barred, _ := Solve(context.Background(), snap, withCostBarEvery(1))
		unbarred, _ := Solve(context.Background(), snap, withCostBarEvery(-1))
		if summarize(barred) != summarize(unbarred) {
			t.Errorf("seed %d: the cost bar changed the plan ($%.4f/h with it, $%.4f/h without)", seed, barred.CostPerHour, unbarred.CostPerHour)
		}
		ffd, _ := Solve(context.Background(), snap, WithStrategy(StrategyFFD))
		if len(plan.Unschedulable) > len(ffd.Unschedulable) ||
			(len(plan.Unschedulable) == len(ffd.Unschedulable) && plan.CostPerHour > ffd.CostPerHour+1e-9) {
			t.Errorf("seed %d: plan (%d unschedulable, $%.3f) worse than FFD (%d, $%.3f)", seed,
				len(plan.Unschedulable), plan.CostPerHour, len(ffd.Unschedulable), ffd.CostPerHour)
		}
	}
}

// summarize renders a plan by names, for comparisons.
func summarize(p *Plan) string {
	var b strings.Builder
	for _, x := range p.Bindings {
		fmt.Fprintf(&b, "bind %s %s\n", x.Pod.Name, x.NodeName)
	}
	for _, n := range p.NewNodes {
		fmt.Fprintf(&b, "node %s:", n.NodePool)
		for _, c := range n.Choices {
			fmt.Fprintf(&b, " %s", c.Offering.ID(c.InstanceType.Name))
		}
		for _, pod := range n.Pods {
			fmt.Fprintf(&b, " %s", pod.Name)
		}
		b.WriteByte('\n')
	}
	for _, u := range p.Unschedulable {
		fmt.Fprintf(&b, "unschedulable %s: %s\n", u.Pod.Name, u.Reason)
	}
	fmt.Fprintf(&b, "cost %.6f lb %.6f\n", p.CostPerHour, p.LowerBoundPerHour)
	return b.String()
}

var _ = metav1.ObjectMeta{}

// withCostBarEvery sets how often strategies look at the cost bar; negative: never.
func withCostBarEvery(n int) Option { return func(o *options) { o.barEvery = n } }
