package solver

import (
	"context"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pricing"
)

const (
	gpuClassExpr = "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'"
	mem40Expr    = "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('40Gi')) >= 0"
)

// awsTypes are named types of the built-in AWS catalog, with their real GPU facts.
func awsTypes(t *testing.T, names ...string) []*cloudprovider.InstanceType {
	t.Helper()
	cat, err := pricing.Load("aws/us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	var out []*cloudprovider.InstanceType
	for _, n := range names {
		it, ok := pricing.Lookup(cat, n)
		if !ok {
			t.Fatalf("no %s in the catalog", n)
		}
		out = append(out, it)
	}
	return out
}

func deviceClass(name string, exprs ...string) *resourceapi.DeviceClass {
	c := &resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, e := range exprs {
		c.Spec.Selectors = append(c.Spec.Selectors, resourceapi.DeviceSelector{CEL: &resourceapi.CELDeviceSelector{Expression: e}})
	}
	return c
}

func claimSpec(class string, count int64, exprs ...string) resourceapi.ResourceClaimSpec {
	r := resourceapi.DeviceRequest{Name: "gpu", Exactly: &resourceapi.ExactDeviceRequest{DeviceClassName: class, Count: count,
		AllocationMode: resourceapi.DeviceAllocationModeExactCount}}
	for _, e := range exprs {
		r.Exactly.Selectors = append(r.Exactly.Selectors, resourceapi.DeviceSelector{CEL: &resourceapi.CELDeviceSelector{Expression: e}})
	}
	return resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{Requests: []resourceapi.DeviceRequest{r}}}
}

func draInputs() *scheduling.DRA {
	return &scheduling.DRA{
		Classes:   map[string]*resourceapi.DeviceClass{"gpu.nvidia.com": deviceClass("gpu.nvidia.com", gpuClassExpr)},
		Templates: map[string]*resourceapi.ResourceClaimTemplate{},
		Claims:    map[string]*resourceapi.ResourceClaim{},
	}
}

func (d draT) template(name string, spec resourceapi.ResourceClaimSpec) {
	d.Templates["default/"+name] = &resourceapi.ResourceClaimTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: resourceapi.ResourceClaimTemplateSpec{Spec: spec}}
}

func (d draT) claim(name string, spec resourceapi.ResourceClaimSpec) *resourceapi.ResourceClaim {
	c := &resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: spec}
	d.Claims["default/"+name] = c
	return c
}

type draT struct{ *scheduling.DRA }

func fromTemplate(template string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.ResourceClaims = append(p.Spec.ResourceClaims, corev1.PodResourceClaim{Name: "gpu", ResourceClaimTemplateName: ptr.To(template)})
	}
}

func sharedClaim(name string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.ResourceClaims = append(p.Spec.ResourceClaims, corev1.PodResourceClaim{Name: "gpu", ResourceClaimName: ptr.To(name)})
	}
}

func typesOf(plan *Plan) []string {
	var out []string
	for _, n := range plan.NewNodes {
		out = append(out, n.Choices[0].InstanceType.Name)
	}
	slices.Sort(out)
	return out
}

func TestDRAOneGPUWithAtLeast40GiB(t *testing.T) {
	d := draT{draInputs()}
	d.template("big-gpu", claimSpec("gpu.nvidia.com", 1, mem40Expr))
	pods := makePods(1, "infer", "2", "8Gi", fromTemplate("big-gpu"))
	pool := makePool("gpu", awsTypes(t, "g4dn.xlarge", "g6e.xlarge", "p4d.24xlarge", "m5.xlarge"), onDemand)
	plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{pool}, DRA: d.DRA})
	if got := typesOf(plan); !slices.Equal(got, []string{"g6e.xlarge"}) {
		t.Fatalf("bought %v, want the L40S g6e.xlarge (T4 has 16 GiB; A100 costs more)", got)
	}
	n := plan.NewNodes[0]
	if n.Pods[0] != pods[0] {
		t.Error("the plan must hold the caller's pod, not the copy carrying device requests")
	}
	for _, c := range n.Choices {
		if c.InstanceType.Name == "g4dn.xlarge" || c.InstanceType.Name == "m5.xlarge" {
			t.Errorf("fallback choice %s has no 40 GiB GPU", c.InstanceType.Name)
		}
		if !slices.Contains(pool.InstanceTypes, c.InstanceType) {
			t.Errorf("choice %s is not the caller's instance type", c.InstanceType.Name)
		}
	}
	for name := range n.Requests {
		if scheduling.IsDeviceResource(name) {
			t.Errorf("node requests carry synthetic resource %s", name)
		}
	}
	// Without the claim the cheapest GPU machine would do.
	plain := solveT(t, &Snapshot{Pods: makePods(1, "infer", "2", "8Gi", gpus(1)), NodePools: []*NodePool{pool}})
	if got := typesOf(plain); !slices.Equal(got, []string{"g4dn.xlarge"}) {
		t.Errorf("control: one nvidia.com/gpu bought %v, want g4dn.xlarge", got)
	}
}

func TestDRACountsAndSharing(t *testing.T) {
	pool := func() *NodePool { return makePool("gpu", awsTypes(t, "g6e.xlarge", "g6e.12xlarge"), onDemand) }
	t.Run("two devices need a machine with two", func(t *testing.T) {
		d := draT{draInputs()}
		d.template("two", claimSpec("gpu.nvidia.com", 2))
		plan := solveT(t, &Snapshot{Pods: makePods(1, "p", "1", "1Gi", fromTemplate("two")), NodePools: []*NodePool{pool()}, DRA: d.DRA})
		if got := typesOf(plan); !slices.Equal(got, []string{"g6e.12xlarge"}) {
			t.Errorf("bought %v, want the 4-GPU g6e.12xlarge", got)
		}
	})
	t.Run("a shared claim is counted once and keeps its pods together", func(t *testing.T) {
		d := draT{draInputs()}
		d.claim("shared", claimSpec("gpu.nvidia.com", 1))
		plan := solveT(t, &Snapshot{Pods: makePods(3, "p", "1", "1Gi", sharedClaim("shared")), NodePools: []*NodePool{pool()}, DRA: d.DRA})
		if got := typesOf(plan); !slices.Equal(got, []string{"g6e.xlarge"}) || len(plan.NewNodes[0].Pods) != 3 {
			t.Errorf("bought %v, want one 1-GPU machine holding all three pods", got)
		}
	})
	t.Run("different requests do not count one device twice", func(t *testing.T) {
		d := draT{draInputs()}
		d.template("any", claimSpec("gpu.nvidia.com", 1))
		d.template("big", claimSpec("gpu.nvidia.com", 1, mem40Expr))
		pods := concat(makePods(1, "a", "1", "1Gi", fromTemplate("any")), makePods(1, "b", "1", "1Gi", fromTemplate("big")))
		only1GPU := makePool("gpu", awsTypes(t, "g6e.xlarge"), onDemand)
		plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{only1GPU}, DRA: d.DRA})
		if len(plan.NewNodes) != 2 {
			t.Errorf("bought %d one-GPU machines for two one-GPU pods, want 2", len(plan.NewNodes))
		}
	})
	t.Run("allocationMode All needs a machine with a matching device", func(t *testing.T) {
		d := draT{draInputs()}
		spec := claimSpec("gpu.nvidia.com", 0, mem40Expr)
		spec.Devices.Requests[0].Exactly.AllocationMode = resourceapi.DeviceAllocationModeAll
		d.template("all", spec)
		plan := solveT(t, &Snapshot{Pods: makePods(1, "p", "1", "1Gi", fromTemplate("all")),
			NodePools: []*NodePool{makePool("gpu", awsTypes(t, "g4dn.xlarge", "g6e.xlarge"), onDemand)}, DRA: d.DRA})
		if got := typesOf(plan); !slices.Equal(got, []string{"g6e.xlarge"}) {
			t.Errorf("bought %v", got)
		}
	})
}

func TestDRAMIGPool(t *testing.T) {
	d := draT{draInputs()}
	d.Classes["mig.nvidia.com"] = deviceClass("mig.nvidia.com", "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'")
	d.template("slice", claimSpec("mig.nvidia.com", 1, "device.attributes['gpu.nvidia.com'].profile == '1g.5gb'"))
	pool := makePool("mig", awsTypes(t, "p4d.24xlarge", "g6e.xlarge"), onDemand)
	pool.Spec.Template.Spec.GPU = &v1.GPUSharing{MIGProfile: "1g.5gb"}
	plan := solveT(t, &Snapshot{Pods: makePods(10, "p", "1", "1Gi", fromTemplate("slice")), NodePools: []*NodePool{pool}, DRA: d.DRA})
	if got := typesOf(plan); !slices.Equal(got, []string{"p4d.24xlarge"}) || len(plan.NewNodes[0].Pods) != 10 {
		t.Errorf("bought %v, want one p4d (8 A100 × 7 slices) for ten 1g.5gb pods", got)
	}
}

func TestDRAExistingNodes(t *testing.T) {
	d := draT{draInputs()}
	d.template("one", claimSpec("gpu.nvidia.com", 1))
	g6e := awsTypes(t, "g6e.xlarge")
	driver, devs := scheduling.Devices(g6e[0], nil)
	d.Slices = []*resourceapi.ResourceSlice{{Spec: resourceapi.ResourceSliceSpec{Driver: driver, NodeName: ptr.To("n1"),
		Pool: resourceapi.ResourcePool{Name: "n1"}, Devices: devs}}}
	node := &Node{Name: "n1", Labels: map[string]string{v1.LabelHostname: "n1", v1.LabelZone: "us-east-1a"},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("50")}}
	pool := makePool("gpu", g6e, onDemand)
	plan := solveT(t, &Snapshot{Pods: makePods(1, "p", "1", "1Gi", fromTemplate("one")), Nodes: []*Node{node}, NodePools: []*NodePool{pool}, DRA: d.DRA})
	if len(plan.Bindings) != 1 || len(plan.NewNodes) != 0 {
		t.Fatalf("free device on n1: %d bindings, %d new nodes; want the pod on n1", len(plan.Bindings), len(plan.NewNodes))
	}
	d.claim("taken", claimSpec("gpu.nvidia.com", 1)).Status.Allocation = &resourceapi.AllocationResult{Devices: resourceapi.DeviceAllocationResult{
		Results: []resourceapi.DeviceRequestAllocationResult{{Request: "gpu", Driver: driver, Pool: "n1", Device: devs[0].Name}}}}
	plan = solveT(t, &Snapshot{Pods: makePods(1, "p", "1", "1Gi", fromTemplate("one")), Nodes: []*Node{node}, NodePools: []*NodePool{pool}, DRA: d.DRA})
	if len(plan.Bindings) != 0 || len(plan.NewNodes) != 1 {
		t.Errorf("n1's only device is allocated: %d bindings, %d new nodes; want a new machine", len(plan.Bindings), len(plan.NewNodes))
	}
}

func TestDRAUnplaceable(t *testing.T) {
	d := draT{draInputs()}
	d.template("nothing-fits", claimSpec("gpu.nvidia.com", 1, "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('1Ti')) >= 0"))
	d.template("no-class", claimSpec("tpu.example.com", 1))
	pods := concat(makePods(1, "huge", "1", "1Gi", fromTemplate("nothing-fits")), makePods(1, "tpu", "1", "1Gi", fromTemplate("no-class")),
		makePods(1, "orphan", "1", "1Gi", fromTemplate("missing")))
	plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{makePool("gpu", awsTypes(t, "g6e.xlarge"), onDemand)}, DRA: d.DRA})
	why := map[string]string{}
	for _, u := range plan.Unschedulable {
		why[u.Pod.Name] = u.Reason
	}
	for pod, want := range map[string]string{
		"huge-000":   "devices of class gpu.nvidia.com matching device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('1Ti')) >= 0",
		"tpu-000":    "deviceclass tpu.example.com not found",
		"orphan-000": "resourceclaimtemplate default/missing not found",
	} {
		if !strings.Contains(why[pod], want) {
			t.Errorf("%s: reason %q, want it to say %q", pod, why[pod], want)
		}
		if strings.Contains(why[pod], scheduling.DeviceResourcePrefix) {
			t.Errorf("%s: reason %q names a synthetic resource", pod, why[pod])
		}
	}
}

// BenchmarkDRA plans 1,000 inference pods whose GPUs come from claims (half
// "any GPU", half "at least 40 GiB") on the whole AWS catalog; the baseline
// plans the same pods asking for nvidia.com/gpu, so the ratio is what
// planning devices costs.
func BenchmarkDRA(b *testing.B) {
	cat, err := pricing.Load("aws/us-east-1")
	if err != nil {
		b.Fatal(err)
	}
	pool := makePool("gpu", cat.InstanceTypes, onDemand)
	d := draT{draInputs()}
	d.template("any", claimSpec("gpu.nvidia.com", 1))
	d.template("big", claimSpec("gpu.nvidia.com", 1, mem40Expr))
	d.Matcher = scheduling.NewDeviceMatcher()
	claims := concat(makePods(500, "any", "2", "8Gi", fromTemplate("any")), makePods(500, "big", "4", "16Gi", fromTemplate("big")))
	plain := concat(makePods(500, "any", "2", "8Gi", gpus(1)), makePods(500, "big", "4", "16Gi", gpus(1)))
	for _, bc := range []struct {
		name string
		snap *Snapshot
	}{
		{"baseline-extended-resources", &Snapshot{Pods: plain, NodePools: []*NodePool{pool}}},
		{"resource-claims", &Snapshot{Pods: claims, NodePools: []*NodePool{pool}, DRA: d.DRA}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				plan, err := Solve(context.Background(), bc.snap)
				if err != nil || len(plan.Unschedulable) != 0 {
					b.Fatalf("%v, %d unschedulable", err, len(plan.Unschedulable))
				}
			}
		})
	}
}

// Pods sharing one ResourceClaim: only the first by name is charged its
// devices, so another sharer, larger and placed first, could open the group
// on a node without them (here a CPU node with room), and the device holder
// could not follow. The carrier now opens the group and the others join it.
func TestSharedClaimGroupOpensWhereTheDevicesAre(t *testing.T) {
	d := draT{draInputs()}
	d.claim("shared", claimSpec("gpu.nvidia.com", 1))
	cpu := &Node{Name: "cpu-a", Labels: map[string]string{v1.LabelZone: "us-east-1a", v1.LabelHostname: "cpu-a",
		v1.LabelCapacityType: v1.CapacityTypeOnDemand, v1.LabelInstanceType: "m5.4xlarge"},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110")}}
	pods := concat(makePods(1, "a-small", "500m", "1Gi", sharedClaim("shared")), makePods(1, "b-big", "14", "8Gi", sharedClaim("shared")))
	snap := &Snapshot{Pods: pods, Nodes: []*Node{cpu}, DRA: d.DRA,
		NodePools: []*NodePool{makePool("gpu", awsTypes(t, "g6e.xlarge", "g6e.12xlarge"), onDemand)}}
	plan := solveT(t, snap)
	if len(plan.Unschedulable) > 0 || len(plan.Bindings) > 0 || len(plan.NewNodes) != 1 || len(plan.NewNodes[0].Pods) != 2 {
		t.Fatalf("want both sharers on one new GPU machine; got\n%s\nunschedulable: %s", summarize(plan), unschedNames(plan))
	}
}
