package cost

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

func gpuSlice(node string, generation int64, devices ...string) resourceapi.ResourceSlice {
	s := resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{Name: node + "-gpus-" + string(rune('a'+generation))},
		Spec: resourceapi.ResourceSliceSpec{Driver: scheduling.DriverNvidiaGPU, NodeName: ptr.To(node),
			Pool: resourceapi.ResourcePool{Name: node, Generation: generation, ResourceSliceCount: 1}},
	}
	for _, d := range devices {
		s.Spec.Devices = append(s.Spec.Devices, resourceapi.Device{Name: d,
			Attributes: map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{"type": {StringValue: ptr.To(scheduling.DeviceTypeGPU)}}})
	}
	return s
}

func gpuClaim(ns, name, node string, reserved bool, devices ...string) resourceapi.ResourceClaim {
	c := resourceapi.ResourceClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	c.Status.Allocation = &resourceapi.AllocationResult{}
	for _, d := range devices {
		c.Status.Allocation.Devices.Results = append(c.Status.Allocation.Devices.Results,
			resourceapi.DeviceRequestAllocationResult{Request: "gpu", Driver: scheduling.DriverNvidiaGPU, Pool: node, Device: d})
	}
	if reserved {
		c.Status.ReservedFor = []resourceapi.ResourceClaimConsumerReference{{Resource: "pods", Name: name, UID: types.UID(ns + "-" + name)}}
	}
	return c
}

// GPUs allocated through DRA are in no node's allocatable: the machine's
// price still has a GPU part, and the namespace whose claims hold the
// devices pays its share of it.
func TestAttributeDRAGPUs(t *testing.T) {
	// One machine, $4/h, 4 cores, 32 GiB (reference 0.16+0.16 = 0.32), and 4
	// GPUs its DRA driver publishes: GPU part 3.68, 0.92 a GPU. ml's pod asks
	// for 2 cores and 16 GiB and holds gpu-0 through its claim: 0.92 + 0.08 + 0.08.
	alloc := resources("cpu", "4", "memory", "32Gi")
	p := pod("ml", "train", "n", corev1.PodRunning, resources("cpu", "2", "memory", "16Gi"))
	p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To("train")}}
	adminOnly := gpuClaim("monitoring", "dcgm", "n", true, "gpu-1")
	adminOnly.Status.Allocation.Devices.Results[0].AdminAccess = ptr.To(true)
	s := State{
		NodeClaims: []v1.NodeClaim{claim("a", "gpu", v1.CapacityTypeOnDemand, "g.x", "4", "n", "fake://a", alloc)},
		Nodes:      []corev1.Node{node("n", "fake://a", alloc)},
		Pods:       []corev1.Pod{p},
		ResourceSlices: []resourceapi.ResourceSlice{
			gpuSlice("n", 2, "gpu-0", "gpu-1", "gpu-2", "gpu-3"),
			gpuSlice("n", 1, "gpu-0", "gpu-1", "gpu-2", "gpu-3", "gpu-4"), // replaced: not counted
		},
		ResourceClaims: []resourceapi.ResourceClaim{
			gpuClaim("ml", "train", "n", true, "gpu-0"),
			gpuClaim("ml", "done", "n", false, "gpu-2"), // no pod uses it any more
			adminOnly, // watches a device, holds none
		},
	}
	got := Attribute(s, testModel, nil)
	want := []NamespaceCost{{Namespace: "ml", PerHour: 0.92 + 0.16, GPU: 0.92}}
	if diff := cmp.Diff(want, got.Namespaces, approx); diff != "" {
		t.Errorf("namespaces mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(0.92*3, got.Idle.GPU, approx); diff != "" {
		t.Errorf("idle GPU mismatch (-want +got):\n%s", diff)
	}
}

// Read lists claims and slices when a pod uses claims, and never asks a
// cluster whose pods use none (it may not serve the DRA API).
func TestReadDRA(t *testing.T) {
	p := pod("ml", "train", "n", corev1.PodRunning, nil)
	p.Spec.ResourceClaims = []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimName: ptr.To("train")}}
	slice, rc := gpuSlice("n", 1, "gpu-0"), gpuClaim("ml", "train", "n", true, "gpu-0")

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, v1.AddToScheme, resourceapi.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(&p, &slice, &rc).Build()
	s, err := Read(context.Background(), kube)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ResourceClaims) != 1 || len(s.ResourceSlices) != 1 {
		t.Errorf("read %d claims and %d slices, want 1 and 1", len(s.ResourceClaims), len(s.ResourceSlices))
	}

	// Without the DRA types a list would fail: pods without claims never list them.
	noClaims := pod("web", "api", "n", corev1.PodRunning, nil)
	if _, err := Read(context.Background(), newFakeClient(t, State{Pods: []corev1.Pod{noClaims}})); err != nil {
		t.Errorf("pods without claims: %v", err)
	}
}
