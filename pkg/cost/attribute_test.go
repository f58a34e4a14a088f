package cost

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// testModel has round rates so the expected dollars can be worked by hand.
var testModel = PriceModel{CPUPerCoreHour: 0.04, MemoryPerGiBHour: 0.005}

type fakePricer map[string]float64

func (f fakePricer) OnDemandPrice(instanceType, _ string) (float64, bool) {
	p, ok := f[instanceType]
	return p, ok
}

func resources(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func claim(name, pool, capacityType, instanceType, price, nodeName, providerID string, capacity corev1.ResourceList) v1.NodeClaim {
	c := v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}},
		Status: v1.NodeClaimStatus{
			ProviderID: providerID, NodeName: nodeName, InstanceType: instanceType, Zone: "zone-a",
			CapacityType: capacityType, PricePerHour: price, Capacity: capacity, Allocatable: capacity,
		},
	}
	if pool != "" {
		c.Labels[v1.LabelNodePool] = pool
	}
	return c
}

func node(name, providerID string, allocatable corev1.ResourceList) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{ProviderID: providerID},
		Status:     corev1.NodeStatus{Capacity: allocatable, Allocatable: allocatable},
	}
}

func pod(ns, name, nodeName string, phase corev1.PodPhase, requests corev1.ResourceList) corev1.Pod {
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeName:   nodeName,
			Containers: []corev1.Container{{Name: "main", Resources: corev1.ResourceRequirements{Requests: requests}}},
		},
		Status: corev1.PodStatus{Phase: phase},
	}
}

// cluster is a known state whose costs are worked out by hand below.
//
// gpu-1: on-demand, $10.00/h, 8 cores, 64 GiB, 4 GPUs.
//
//	CPU/memory reference value 8*0.04 + 64*0.005 = 0.64 < 10, so
//	cpu 0.32, memory 0.32, GPUs 9.36 (2.34 each).
//	ml/train (2 GPU, 4 cores, 32 GiB):  4.68 + 0.16 + 0.16  = 5.00
//	ml/notebook (1 GPU, 1 core, 8 GiB): 2.34 + 0.04 + 0.04  = 2.42
//	kube-system/agent (0.5 core, 1 GiB): 0.02 + 0.005       = 0.025
//	idle: GPU 1/4*9.36 = 2.34; cpu 2.5/8*0.32 = 0.10; memory 23/64*0.32 = 0.115
//
// cpu-1: spot, $0.12/h, 4 cores, 16 GiB, no GPU. Reference value
// 0.16 + 0.08 = 0.24, so the price splits 2:1: cpu 0.08, memory 0.04.
//
//	web/api (2 cores, 4 GiB):            0.04 + 0.01   = 0.05
//	kube-system/agent (0.5 core, 1 GiB): 0.01 + 0.0025 = 0.0125
//	idle: cpu 1.5/4*0.08 = 0.03; memory 11/16*0.04 = 0.0275
//	on-demand equivalent from the pricer: 0.19
//
// cpu-2: on-demand, $0.20/h, launched but not registered: all idle CPU/memory.
func cluster() State {
	gpuCap := resources("cpu", "8", "memory", "64Gi", "nvidia.com/gpu", "4")
	cpuCap := resources("cpu", "4", "memory", "16Gi")
	return State{
		NodeClaims: []v1.NodeClaim{
			claim("gpu-1", "gpu", v1.CapacityTypeOnDemand, "g.2xlarge", "10.00", "node-gpu-1", "fake://gpu-1", gpuCap),
			// Matched to its node by provider ID: status.nodeName is not set yet.
			claim("cpu-1", "general", v1.CapacityTypeSpot, "m.xlarge", "0.12", "", "fake://cpu-1", cpuCap),
			claim("cpu-2", "general", v1.CapacityTypeOnDemand, "m.large", "0.20", "", "fake://cpu-2", resources("cpu", "2", "memory", "8Gi")),
			// Not launched yet: not billed.
			claim("cpu-3", "general", v1.CapacityTypeOnDemand, "m.large", "0.20", "", "", nil),
		},
		Nodes: []corev1.Node{
			node("node-gpu-1", "fake://gpu-1", gpuCap),
			node("node-cpu-1", "fake://cpu-1", cpuCap),
			node("unmanaged", "other://x", cpuCap),
		},
		Pods: []corev1.Pod{
			pod("ml", "train", "node-gpu-1", corev1.PodRunning, resources("cpu", "4", "memory", "32Gi", "nvidia.com/gpu", "2")),
			pod("ml", "notebook", "node-gpu-1", corev1.PodRunning, resources("cpu", "1", "memory", "8Gi", "nvidia.com/gpu", "1")),
			pod("kube-system", "agent-a", "node-gpu-1", corev1.PodRunning, resources("cpu", "500m", "memory", "1Gi")),
			pod("kube-system", "agent-b", "node-cpu-1", corev1.PodRunning, resources("cpu", "500m", "memory", "1Gi")),
			pod("web", "api", "node-cpu-1", corev1.PodRunning, resources("cpu", "2", "memory", "4Gi")),
			// Finished, pending and foreign pods cost nothing here.
			pod("web", "migrate", "node-cpu-1", corev1.PodSucceeded, resources("cpu", "1")),
			pod("web", "pending", "", corev1.PodPending, resources("cpu", "1")),
			pod("other", "x", "unmanaged", corev1.PodRunning, resources("cpu", "1")),
		},
	}
}

var approx = cmpopts.EquateApprox(0, 1e-9)

func TestAttribute(t *testing.T) {
	got := Attribute(cluster(), testModel, fakePricer{"m.xlarge": 0.19})
	want := Report{
		Total:              10.32,
		OnDemandEquivalent: 10.39,
		Machines:           3,
		NodePools: []NodePoolCost{
			{NodePool: "general", Machines: 2, PerHour: 0.32, OnDemandEquivalent: 0.39,
				ByCapacityType: map[string]float64{"spot": 0.12, "on-demand": 0.20}},
			{NodePool: "gpu", Machines: 1, PerHour: 10, OnDemandEquivalent: 10, IdleGPU: 2.34,
				ByCapacityType: map[string]float64{"on-demand": 10}},
		},
		CapacityTypes: []CapacityTypeCost{
			{CapacityType: "on-demand", Machines: 2, PerHour: 10.20},
			{CapacityType: "spot", Machines: 1, PerHour: 0.12},
		},
		Namespaces: []NamespaceCost{
			{Namespace: "ml", PerHour: 7.42, GPU: 7.02},
			{Namespace: "web", PerHour: 0.05},
			{Namespace: "kube-system", PerHour: 0.0375},
		},
		Idle: IdleCost{GPU: 2.34, CPUMemory: 0.10 + 0.115 + 0.03 + 0.0275 + 0.20},
	}
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("Attribute() mismatch (-want +got):\n%s", diff)
	}
	// Every dollar is either attributed or idle.
	sum := got.Idle.GPU + got.Idle.CPUMemory
	for _, ns := range got.Namespaces {
		sum += ns.PerHour
	}
	if diff := cmp.Diff(got.Total, sum, approx); diff != "" {
		t.Errorf("attributed + idle != total (-total +sum):\n%s", diff)
	}
}

func TestAttributeWarnings(t *testing.T) {
	spot := claim("s", "p", v1.CapacityTypeSpot, "unknown.type", "0.5", "", "fake://s", resources("cpu", "1", "memory", "1Gi"))
	fromOffering := claim("o", "p", v1.CapacityTypeSpot, "m.large", "0.05", "", "fake://o", resources("cpu", "1", "memory", "1Gi"))
	fromOffering.Spec.Offerings = []v1.OfferingChoice{
		{InstanceType: "m.large", Zone: "zone-a", CapacityType: v1.CapacityTypeSpot, PricePerHour: "0.05"},
		{InstanceType: "m.large", Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.10"},
	}
	bad := claim("bad", "p", v1.CapacityTypeOnDemand, "m.large", "NaN", "", "fake://bad", nil)
	missing := claim("missing", "", v1.CapacityTypeOnDemand, "m.large", "", "", "fake://missing", nil)
	got := Attribute(State{NodeClaims: []v1.NodeClaim{spot, fromOffering, bad, missing}}, testModel, nil)

	wantWarnings := []string{
		`nodeclaim bad: status.pricePerHour: "NaN" is not a non-negative decimal; not counted`,
		`nodeclaim missing: status.pricePerHour: not set; not counted`,
		`nodeclaim s: no on-demand price known for instance type "unknown.type"; its on-demand equivalent is its own price`,
	}
	if diff := cmp.Diff(wantWarnings, got.Warnings); diff != "" {
		t.Errorf("warnings mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(0.6, got.OnDemandEquivalent, approx); diff != "" {
		t.Errorf("on-demand equivalent (0.5 own price + 0.10 from the claim's offerings) (-want +got):\n%s", diff)
	}
}

func TestPriceModelSplit(t *testing.T) {
	tests := []struct {
		name     string
		price    float64
		capacity corev1.ResourceList
		hasGPU   bool
		want     parts
	}{
		{name: "gpu machine keeps the reference value for cpu and memory",
			price: 10, capacity: resources("cpu", "8", "memory", "64Gi"), hasGPU: true,
			want: parts{gpu: 9.36, cpu: 0.32, memory: 0.32}},
		{name: "cheap spot gpu machine: cpu and memory capped at the price",
			price: 0.30, capacity: resources("cpu", "8", "memory", "64Gi"), hasGPU: true,
			want: parts{gpu: 0, cpu: 0.15, memory: 0.15}},
		{name: "cpu machine splits its whole price by reference ratio",
			price: 0.12, capacity: resources("cpu", "4", "memory", "16Gi"),
			want: parts{cpu: 0.08, memory: 0.04}},
		{name: "no capacity known, gpu", price: 3, hasGPU: true, want: parts{gpu: 3}},
		{name: "no capacity known, cpu", price: 3, want: parts{cpu: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := testModel.split(tt.price, tt.capacity, tt.hasGPU)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(parts{}), approx); diff != "" {
				t.Errorf("split() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAttributeMIGAndTimeSlicing(t *testing.T) {
	// One A100 machine, $4/h, 4 cores, 32 GiB (reference 0.16+0.16 = 0.32),
	// GPU part 3.68, partitioned into 7 x 1g.10gb. ml asks for 2 slices,
	// 2 cores and 16 GiB: 3.68*2/7 + 0.08 + 0.08.
	alloc := resources("cpu", "4", "memory", "32Gi", "nvidia.com/mig-1g.10gb", "7")
	s := State{
		NodeClaims: []v1.NodeClaim{claim("a", "mig", v1.CapacityTypeOnDemand, "a100.x", "4", "n", "fake://a", alloc)},
		Nodes:      []corev1.Node{node("n", "fake://a", alloc)},
		Pods:       []corev1.Pod{pod("ml", "p", "n", corev1.PodRunning, resources("cpu", "2", "memory", "16Gi", "nvidia.com/mig-1g.10gb", "2"))},
	}
	got := Attribute(s, testModel, nil)
	want := []NamespaceCost{{Namespace: "ml", PerHour: 3.68*2/7 + 0.16, GPU: 3.68 * 2 / 7}}
	if diff := cmp.Diff(want, got.Namespaces, approx); diff != "" {
		t.Errorf("namespaces mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(3.68*5/7, got.Idle.GPU, approx); diff != "" {
		t.Errorf("idle GPU mismatch (-want +got):\n%s", diff)
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name string
		pod  corev1.PodSpec
		want corev1.ResourceList
	}{
		{
			name: "containers sum",
			pod: corev1.PodSpec{Containers: []corev1.Container{
				{Resources: corev1.ResourceRequirements{Requests: resources("cpu", "1", "memory", "1Gi")}},
				{Resources: corev1.ResourceRequirements{Requests: resources("cpu", "500m", "nvidia.com/gpu", "1")}},
			}},
			want: resources("cpu", "1500m", "memory", "1Gi", "nvidia.com/gpu", "1"),
		},
		{
			name: "a big init container wins",
			pod: corev1.PodSpec{
				InitContainers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: resources("cpu", "4")}}},
				Containers:     []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: resources("cpu", "1", "memory", "1Gi")}}},
			},
			want: resources("cpu", "4", "memory", "1Gi"),
		},
		{
			name: "sidecars add to containers and to later init containers; overhead adds",
			pod: corev1.PodSpec{
				InitContainers: []corev1.Container{
					{RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: resources("cpu", "1")}},
					{Resources: corev1.ResourceRequirements{Requests: resources("cpu", "2")}},
				},
				Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: resources("cpu", "1")}}},
				Overhead:   resources("cpu", "100m"),
			},
			want: resources("cpu", "3100m"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PodRequests(&corev1.Pod{Spec: tt.pod})
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })); diff != "" {
				t.Errorf("PodRequests() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCatalogPricer(t *testing.T) {
	p, err := NewCatalogPricer("aws/us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	got, ok := p.OnDemandPrice("m7i.xlarge", "us-east-1a")
	if !ok || got <= 0 {
		t.Fatalf("OnDemandPrice(m7i.xlarge) = %v, %v; want a positive price", got, ok)
	}
	if _, ok := p.OnDemandPrice("no-such.type", "us-east-1a"); ok {
		t.Errorf("OnDemandPrice(no-such.type) found a price")
	}
	if _, err := NewCatalogPricer("aws/mars-1"); err == nil {
		t.Errorf("NewCatalogPricer(aws/mars-1) succeeded")
	}
}

// TestMetricsDocExample checks the worked example in docs/metrics.md with the
// default price model, so the documentation and the code cannot disagree.
func TestMetricsDocExample(t *testing.T) {
	capacity := resources("cpu", "48", "memory", "192Gi", "nvidia.com/gpu", "4")
	allocatable := resources("cpu", "47", "memory", "185Gi", "nvidia.com/gpu", "4")
	n := node("n", "fake://g5", allocatable)
	n.Status.Capacity = capacity
	s := State{
		NodeClaims: []v1.NodeClaim{claim("g5", "gpu", v1.CapacityTypeSpot, "g5.12xlarge", "3.49", "n", "fake://g5", capacity)},
		Nodes:      []corev1.Node{n},
		Pods:       []corev1.Pod{pod("team", "p", "n", corev1.PodRunning, resources("cpu", "12", "memory", "48Gi", "nvidia.com/gpu", "2"))},
	}
	got := Attribute(s, DefaultPriceModel, fakePricer{"g5.12xlarge": 5.672})
	if diff := cmp.Diff(1.3973, got.Namespaces[0].PerHour, cmpopts.EquateApprox(0, 5e-5)); diff != "" {
		t.Errorf("namespace cost (-doc +code):\n%s", diff)
	}
	if diff := cmp.Diff(1.0303, got.Idle.GPU, cmpopts.EquateApprox(0, 5e-5)); diff != "" {
		t.Errorf("idle GPU cost (-doc +code):\n%s", diff)
	}
}

func TestAttributeMissingLabels(t *testing.T) {
	c := claim("bare", "", "", "m.large", "0.10", "", "fake://bare", resources("cpu", "2", "memory", "8Gi"))
	got := Attribute(State{NodeClaims: []v1.NodeClaim{c}}, testModel, nil)
	want := []NodePoolCost{{NodePool: NoNodePool, Machines: 1, PerHour: 0.10, OnDemandEquivalent: 0.10,
		ByCapacityType: map[string]float64{UnknownCapacityType: 0.10}}}
	if diff := cmp.Diff(want, got.NodePools, approx); diff != "" {
		t.Errorf("node pools (-want +got):\n%s", diff)
	}
}

// A commitment's covered choice ($0.0001/h) is not an on-demand price: a
// spot machine that fell back past one, and a covered machine itself, get
// the list price as their on-demand equivalent, never less than they cost.
func TestOnDemandEquivalentIgnoresCoveredChoices(t *testing.T) {
	pricer := fakePricer{"m5.xlarge": 0.192}
	covered := v1.OfferingChoice{InstanceType: "m5.xlarge", Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.0001"}
	spotChoice := v1.OfferingChoice{InstanceType: "m5.xlarge", Zone: "zone-a", CapacityType: v1.CapacityTypeSpot, PricePerHour: "0.0800"}
	plain := v1.OfferingChoice{InstanceType: "m5.xlarge", Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.1920"}
	spot := claim("spot-1", "default", v1.CapacityTypeSpot, "m5.xlarge", "0.0800", "", "p://spot-1", resources("cpu", "4", "memory", "16Gi"))
	spot.Spec.Offerings = []v1.OfferingChoice{covered, spotChoice, plain}
	ri := claim("ri-1", "default", v1.CapacityTypeOnDemand, "m5.xlarge", "0.0001", "", "p://ri-1", resources("cpu", "4", "memory", "16Gi"))
	ri.Spec.Offerings = []v1.OfferingChoice{covered}
	for _, c := range []v1.NodeClaim{spot, ri} {
		r := Attribute(State{NodeClaims: []v1.NodeClaim{c}}, testModel, pricer)
		if r.OnDemandEquivalent < 0.1919 || r.OnDemandEquivalent > 0.1921 {
			t.Errorf("%s (%s, pays $%.4f/h): on-demand equivalent $%.4f/h, want the on-demand price $0.1920/h",
				c.Name, c.Status.CapacityType, r.Total, r.OnDemandEquivalent)
		}
	}
}
