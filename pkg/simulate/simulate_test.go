package simulate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pricing"
)

// instanceType builds a small hand-made type with no overhead, so fit checks
// are easy to reason about: cpu, memory in GiB, GPUs, on-demand and spot price.
func instanceType(name string, cpu, memGiB int64, gpu int, gpuName string, od, spot float64, zones ...string) *cloudprovider.InstanceType {
	it := &cloudprovider.InstanceType{
		Name:   name,
		Labels: map[string]string{v1.LabelInstanceType: name, v1.LabelArch: "amd64"},
		Capacity: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewQuantity(cpu, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(memGiB<<30, resource.BinarySI),
			corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
		},
	}
	if gpu > 0 {
		it.GPU = &cloudprovider.GPU{Manufacturer: "nvidia", Name: gpuName, Count: gpu, MemoryMiB: 81920}
		if gpuName == "a100" {
			it.GPU.MIGProfiles = map[string]int{"1g.10gb": 7}
		}
		it.Capacity[v1.ResourceNvidiaGPU] = *resource.NewQuantity(int64(gpu), resource.DecimalSI)
		it.Labels[v1.LabelGPUName] = gpuName
		it.Labels[v1.LabelGPUCount] = resource.NewQuantity(int64(gpu), resource.DecimalSI).String()
	}
	if len(zones) == 0 {
		zones = []string{"zone-a", "zone-b"}
	}
	for _, z := range zones {
		it.Offerings = append(it.Offerings,
			cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: od, Available: true},
			cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, PricePerHour: spot, Available: true})
	}
	return it
}

func testCatalog() *pricing.Catalog {
	return &pricing.Catalog{
		Cloud: "test", Region: "r", Zones: []string{"zone-a", "zone-b"},
		InstanceTypes: []*cloudprovider.InstanceType{
			instanceType("small", 2, 4, 0, "", 0.1, 0.03),
			instanceType("large", 16, 64, 0, "", 0.8, 0.25),
			instanceType("l4x1", 8, 32, 1, "l4", 0.9, 0.3),
			instanceType("a100x8", 96, 1024, 8, "a100", 30, 12),
			instanceType("h100x8", 192, 2048, 8, "h100", 55, 20, "zone-b"),
		},
	}
}

func pod(name string, req corev1.ResourceList, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.Namespace = name, "default"
	p.Spec.Containers = []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req}}}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func pool(name string, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodePool {
	np := &v1.NodePool{}
	np.Name = name
	np.Spec.Template.Spec.Requirements = reqs
	return np
}

func req(key string, op corev1.NodeSelectorOperator, values ...string) v1.NodeSelectorRequirementWithMinValues {
	return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: values}
}

func TestFilterInstanceTypes(t *testing.T) {
	tests := []struct {
		name string
		pool *v1.NodePool
		any  bool
		want []string // type: offerings
	}{{
		name: "no requirements keeps everything",
		pool: pool("p"),
		want: []string{"small:4", "large:4", "l4x1:4", "a100x8:4", "h100x8:2"},
	}, {
		name: "spot in one zone",
		pool: pool("p", req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot"), req(v1.LabelZone, corev1.NodeSelectorOpIn, "zone-a")),
		want: []string{"small:1", "large:1", "l4x1:1", "a100x8:1"},
	}, {
		name: "any capacity type ignores the capacity-type requirement only",
		pool: pool("p", req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot"), req(v1.LabelZone, corev1.NodeSelectorOpIn, "zone-a")),
		any:  true,
		want: []string{"small:2", "large:2", "l4x1:2", "a100x8:2"},
	}, {
		name: "gpu name",
		pool: pool("p", req(v1.LabelGPUName, corev1.NodeSelectorOpIn, "h100", "l4")),
		want: []string{"l4x1:4", "h100x8:2"},
	}, {
		name: "gpu count greater than",
		pool: pool("p", req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "1")),
		want: []string{"a100x8:4", "h100x8:2"},
	}, {
		name: "not a gpu",
		pool: pool("p", req(v1.LabelGPUName, corev1.NodeSelectorOpDoesNotExist)),
		want: []string{"small:4", "large:4"},
	}, {
		name: "custom labels are left to the solver",
		pool: pool("p", req("team", corev1.NodeSelectorOpIn, "ml"), req(v1.LabelInstanceType, corev1.NodeSelectorOpNotIn, "small", "large")),
		want: []string{"l4x1:4", "a100x8:4", "h100x8:2"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, it := range FilterInstanceTypes(tt.pool, testCatalog().InstanceTypes, tt.any) {
				got = append(got, it.Name+":"+resource.NewQuantity(int64(len(it.Offerings)), resource.DecimalSI).String())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("FilterInstanceTypes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFilterDoesNotModifyCatalog(t *testing.T) {
	c := testCatalog()
	FilterInstanceTypes(pool("p", req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot")), c.InstanceTypes, false)
	if got := len(c.InstanceTypes[0].Offerings); got != 4 {
		t.Errorf("catalog type has %d offerings after filtering, want 4", got)
	}
}

func TestNaiveCost(t *testing.T) {
	gpuTaint := corev1.Taint{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}
	tolerateGPU := func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists}}
	}
	selectH100 := func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{v1.LabelGPUName: "h100"} }
	tests := []struct {
		name         string
		pods         []*corev1.Pod
		ds           []*corev1.Pod
		taints       []corev1.Taint
		types        func([]*cloudprovider.InstanceType)
		wantCost     float64
		wantUnplaced int
	}{{
		name:     "cpu pods each get the cheapest on-demand type",
		pods:     []*corev1.Pod{pod("a", rl("cpu", "1")), pod("b", rl("cpu", "1")), pod("c", rl("cpu", "8", "memory", "16Gi"))},
		wantCost: 0.1 + 0.1 + 0.8,
	}, {
		name:     "daemonset overhead pushes a pod to a bigger type",
		pods:     []*corev1.Pod{pod("a", rl("cpu", "1500m"))},
		ds:       []*corev1.Pod{pod("agent", rl("cpu", "1"))},
		wantCost: 0.8,
	}, {
		name:     "gpu selector",
		pods:     []*corev1.Pod{pod("a", rl("nvidia.com/gpu", "1"), selectH100)},
		wantCost: 55,
	}, {
		name:     "a MIG slice costs a whole MIG-capable GPU node",
		pods:     []*corev1.Pod{pod("a", rl("nvidia.com/mig-1g.10gb", "1"))},
		wantCost: 30,
	}, {
		name:         "untolerated taint and impossible requests are unplaced",
		pods:         []*corev1.Pod{pod("a", rl("cpu", "1")), pod("b", rl("nvidia.com/gpu", "1"), tolerateGPU), pod("c", rl("cpu", "1000"), tolerateGPU)},
		taints:       []corev1.Taint{gpuTaint},
		wantCost:     0.9,
		wantUnplaced: 2,
	}, {
		name: "types sold only as spot are priced at spot, not left out",
		pods: []*corev1.Pod{pod("a", rl("cpu", "8")), pod("b", rl("cpu", "1"))},
		types: func(types []*cloudprovider.InstanceType) {
			for _, it := range types {
				if it.Name != "small" {
					it.Offerings = slices.DeleteFunc(it.Offerings, func(o cloudprovider.Offering) bool { return o.CapacityType == v1.CapacityTypeOnDemand })
				}
			}
		},
		wantCost: 0.25 + 0.1,
	}, {
		name: "init container larger than containers",
		pods: []*corev1.Pod{pod("a", rl("cpu", "1"), func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: rl("cpu", "4")}}}
		})},
		wantCost: 0.8,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			np := pool("p")
			np.Spec.Template.Spec.Taints = tt.taints
			snap := &solver.Snapshot{
				Pods:          tt.pods,
				DaemonSetPods: tt.ds,
				NodePools:     []*solver.NodePool{{NodePool: np}},
			}
			types := testCatalog().InstanceTypes
			if tt.types != nil {
				tt.types(types)
			}
			cost, excluded := NaiveCost(snap, types)
			unplaced := len(excluded)
			if diff := cmp.Diff(tt.wantCost, cost, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
				t.Errorf("cost (-want +got):\n%s", diff)
			}
			if unplaced != tt.wantUnplaced {
				t.Errorf("unplaced = %d, want %d", unplaced, tt.wantUnplaced)
			}
		})
	}
}

func TestAddReservations(t *testing.T) {
	c := testCatalog()
	err := AddReservations(c, []manifest.Reservation{{InstanceType: "l4x1", Zone: "zone-b", Count: 3, Source: "r.yaml: document 1"}})
	if err != nil {
		t.Fatal(err)
	}
	it, _ := pricing.Lookup(c, "l4x1")
	got := it.Offerings[len(it.Offerings)-1]
	want := cloudprovider.Offering{Zone: "zone-b", CapacityType: v1.CapacityTypeReserved, PricePerHour: ReservedPricePerHour, Available: true, ReservationID: "simulated-l4x1-zone-b", ReservedCount: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reserved offering (-want +got):\n%s", diff)
	}

	for _, bad := range []struct {
		r    manifest.Reservation
		want string
	}{
		{manifest.Reservation{InstanceType: "nope", Zone: "zone-a", Count: 1, Source: "r.yaml: document 2"}, `r.yaml: document 2: instance type "nope" is not in the test/r catalog`},
		{manifest.Reservation{InstanceType: "small", Zone: "zone-z", Count: 1, Source: "r.yaml: document 3"}, `r.yaml: document 3: zone "zone-z" is not in test/r`},
	} {
		err := AddReservations(testCatalog(), []manifest.Reservation{bad.r})
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("AddReservations(%v) = %v, want an error containing %q", bad.r, err, bad.want)
		}
	}
}

func TestBuildSnapshotDefaultPool(t *testing.T) {
	for _, tt := range []struct {
		reservations []manifest.Reservation
		want         []string
	}{
		{nil, []string{"spot", "on-demand"}},
		{[]manifest.Reservation{{InstanceType: "small", Zone: "zone-a", Count: 1}}, []string{"reserved", "spot", "on-demand"}},
	} {
		snap, err := BuildSnapshot(Input{Catalog: testCatalog(), Manifests: &manifest.Set{Pods: []*corev1.Pod{pod("a", nil)}, Reservations: tt.reservations}})
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.NodePools) != 1 || snap.NodePools[0].Name != DefaultNodePoolName {
			t.Fatalf("want one default pool, got %d", len(snap.NodePools))
		}
		got := snap.NodePools[0].Spec.Template.Spec.Requirements[0].Values
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("default pool capacity types (-want +got):\n%s", diff)
		}
		if n := len(snap.NodePools[0].InstanceTypes); n != 5 {
			t.Errorf("default pool has %d instance types, want 5", n)
		}
	}
}

// packAll is a stand-in solver: every pod on one node of the first type of
// the first pool, one pod unschedulable when asked.
func packAll(clk *testingclock.FakePassiveClock, unschedulable string) SolveFunc {
	return func(_ context.Context, s *solver.Snapshot) (*solver.Plan, error) {
		clk.SetTime(clk.Now().Add(1500 * time.Millisecond))
		it := s.NodePools[0].InstanceTypes[0]
		n := &solver.NewNode{NodePool: s.NodePools[0].Name, Choices: []solver.Choice{{InstanceType: it, Offering: it.Offerings[0]}}}
		plan := &solver.Plan{NewNodes: []*solver.NewNode{n}, CostPerHour: it.Offerings[0].PricePerHour, LowerBoundPerHour: 0.5}
		for _, p := range s.Pods {
			if p.Name == unschedulable {
				plan.Unschedulable = append(plan.Unschedulable, solver.Unschedulable{Pod: p, Reason: "no instance type has 1000 cpu"})
				continue
			}
			n.Pods = append(n.Pods, p)
		}
		return plan, nil
	}
}

func TestRunJSON(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Unix(0, 0))
	set := &manifest.Set{
		Pods:      []*corev1.Pod{pod("web-0", rl("cpu", "1")), pod("web-1", rl("cpu", "1")), pod("huge", rl("cpu", "1000"))},
		NodePools: []*v1.NodePool{pool("cpu", req(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "large"), req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot"))},
	}
	r, err := Run(context.Background(), Input{Manifests: set, Catalog: testCatalog()}, Options{Solve: packAll(clk, "huge"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"nodes": []any{map[string]any{
			"instanceType": "large", "zone": "zone-a", "capacityType": "spot", "pricePerHour": 0.25,
			"pods": []any{"default/web-0", "default/web-1"},
		}},
		"unschedulable":     []any{map[string]any{"pod": "default/huge", "reason": "no instance type has 1000 cpu"}},
		"costPerHour":       0.25,
		"naiveCostPerHour":  1.6, // the pool buys only large: two on demand; huge fits nothing
		"naiveExcluded":     []any{"default/huge"},
		"lowerBoundPerHour": 0.5,
		"solveSeconds":      1.5,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JSON report (-want +got):\n%s", diff)
	}
}

func TestRunErrors(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Unix(0, 0))
	if _, err := Run(context.Background(), Input{Manifests: &manifest.Set{}, Catalog: testCatalog()}, Options{Solve: packAll(clk, "")}); !errors.Is(err, ErrNoPods) {
		t.Errorf("Run with no pods = %v, want ErrNoPods", err)
	}
	// Issue 10 #12: an empty file is named.
	files := &manifest.Set{Files: []manifest.File{{Name: "empty.yaml"}, {Name: "pools.yaml", Objects: 2}}}
	_, err := Run(context.Background(), Input{Manifests: files, Catalog: testCatalog()}, Options{Solve: packAll(clk, "")})
	if want := "(empty.yaml is empty; pools.yaml holds 2 objects but no pods)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Run with an empty file = %v, want it to say %q", err, want)
	}
	failing := func(context.Context, *solver.Snapshot) (*solver.Plan, error) { return nil, context.DeadlineExceeded }
	_, err = Run(context.Background(), Input{Manifests: &manifest.Set{Pods: []*corev1.Pod{pod("a", nil)}}, Catalog: testCatalog()}, Options{Solve: failing})
	if err == nil || !strings.Contains(err.Error(), "solving 1 pods") {
		t.Errorf("Run with a failing solver = %v, want a wrapped error", err)
	}
}

func TestWriteTable(t *testing.T) {
	r := &Report{
		Nodes: []NodeReport{
			{InstanceType: "p5.48xlarge", Zone: "us-east-1a", CapacityType: "spot", PricePerHour: 19.49, Pods: []string{"default/train-0", "default/train-1"}},
		},
		Unschedulable:     []UnschedulableReport{{Pod: "default/huge", Reason: "too big"}},
		CostPerHour:       19.49,
		NaiveCostPerHour:  110.08,
		LowerBoundPerHour: 19,
		SolveSeconds:      0.25,
	}
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"p5.48xlarge    us-east-1a  spot      19.4900  2     train-[0-1]",
		"1 nodes for 2 pods",
		"cost:         $19.4900/h",
		"naive:        $110.0800/h (one on-demand node per pod; stowage saves 82.3%)",
		"lower bound:  $19.0000/h (gap 2.6%)",
		"solve time:   250ms",
		"default/huge  too big",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestAbbreviate(t *testing.T) {
	tests := []struct {
		in   []string
		max  int
		want string
	}{
		{[]string{"default/web-0"}, 4, "web-0"},
		{[]string{"default/web-0", "default/web-1", "default/web-2"}, 4, "web-[0-2]"},
		{[]string{"default/web-2", "default/web-0", "default/web-7"}, 4, "web-[0,2,7]"},
		{[]string{"ml/train-0", "default/solo", "default/web-1"}, 4, "ml/train-0 solo web-1"},
		{[]string{"default/a-0", "default/b-0", "default/c-0", "default/c-1"}, 2, "a-0 b-0 +2 more"},
		{[]string{"default/x-01", "default/-1", "default/y-"}, 4, "x-01 -1 y-"},
	}
	for _, tt := range tests {
		if got := Abbreviate(tt.in, tt.max); got != tt.want {
			t.Errorf("Abbreviate(%v, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

// TestCommitmentsPriceThePlan: a Reserved Instance covers one machine, a
// Discount takes 25% off the rest; the naive baseline stays at list price.
func TestCommitmentsPriceThePlan(t *testing.T) {
	ri := &v1.Commitment{}
	ri.Name = "ri"
	ri.Spec = v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(1)),
		Requirements: []v1.NodeSelectorRequirementWithMinValues{req(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "large")}}
	edp := &v1.Commitment{}
	edp.Name = "edp"
	edp.Spec = v1.CommitmentSpec{Type: v1.CommitmentDiscount, DiscountPercent: ptr.To(int32(25))}
	set := &manifest.Set{
		Pods:        []*corev1.Pod{pod("a", rl("cpu", "10")), pod("b", rl("cpu", "10")), pod("c", rl("cpu", "10"))},
		NodePools:   []*v1.NodePool{pool("od", req(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "large"), req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "on-demand"))},
		Commitments: []*v1.Commitment{ri, edp},
	}
	r, err := Run(context.Background(), Input{Manifests: set, Catalog: testCatalog()}, Options{Solve: func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) {
		return solver.Solve(ctx, s)
	}})
	if err != nil {
		t.Fatal(err)
	}
	// One covered large (pricing.CoveredPricePerHour) and two at 0.8 less 25%.
	if want := pricing.CoveredPricePerHour + 2*0.6; math.Abs(r.CostPerHour-want) > 1e-9 {
		t.Errorf("cost $%.4f/h, want $%.4f/h", r.CostPerHour, want)
	}
	if want := 3 * 0.8; math.Abs(r.NaiveCostPerHour-want) > 1e-9 {
		t.Errorf("naive $%.4f/h, want list price $%.4f/h", r.NaiveCostPerHour, want)
	}
	want := []CommitmentReport{{Name: "ri", Type: "ReservedInstances", Committed: 1, Unit: "machines", Used: 1, Machines: 1}, {Name: "edp", Type: "Discount"}}
	if diff := cmp.Diff(want, r.Commitments); diff != "" {
		t.Errorf("commitments (-want +got):\n%s", diff)
	}
}

// A container that sets only limits gets requests equal to them from the API
// server's defaulting, and the kube-scheduler places it by those requests.
// simulate reads the manifest without that defaulting, and must plan the
// pod by its limits as the cluster would.
func TestLimitsOnlyPodIsPlannedByItsLimits(t *testing.T) {
	set, err := manifest.Decode("pods.yaml", []byte(`apiVersion: v1
kind: Pod
metadata: {name: trainer}
spec:
  containers:
  - name: c
    image: x
    resources:
      limits: {cpu: "8", memory: 32Gi, nvidia.com/gpu: "1"}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := Run(context.Background(), Input{Manifests: set, Catalog: testCatalog()}, Options{Solve: func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Nodes) != 1 {
		t.Fatalf("%d nodes planned, want 1", len(r.Nodes))
	}
	for _, n := range r.Nodes {
		if n.InstanceType != "l4x1" {
			t.Errorf("pod limited to 8 cpu, 32Gi and 1 GPU (so requesting them) planned on %s; want l4x1 (8 cpu, 32 GiB, 1 GPU)", n.InstanceType)
		}
	}
}
