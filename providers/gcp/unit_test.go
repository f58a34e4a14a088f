package gcp

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
)

func TestInstanceName(t *testing.T) {
	for in, want := range map[string]string{
		"gpu-abc12":  "gpu-abc12",
		"GPU.pool-1": "gpu-pool-1-",
		"1st-pool-x": "n1st-pool-x-",
	} {
		got := InstanceName(in)
		if !validName.MatchString(got) || !strings.HasPrefix(got, want) {
			t.Errorf("InstanceName(%q) = %q, want a valid name starting %q", in, got, want)
		}
	}
	long := strings.Repeat("a", 80)
	if got := InstanceName(long); len(got) > 63 || !validName.MatchString(got) || got == InstanceName(long+"b") {
		t.Errorf("InstanceName of a long name = %q", got)
	}
}

func TestSplitType(t *testing.T) {
	for name, want := range map[string][3]any{
		"n1-standard-8-t4x1":    {"n1-standard-8", "nvidia-tesla-t4", 1},
		"n1-highmem-16-v100x2":  {"n1-highmem-16", "nvidia-tesla-v100", 2},
		"g2-standard-4":         {"g2-standard-4", "", 0},
		"n1-standard-8-l4x1":    {"n1-standard-8-l4x1", "", 0}, // L4 is not attachable
		"a3-highgpu-8g":         {"a3-highgpu-8g", "", 0},
		"n1-standard-8-nvidiax": {"n1-standard-8-nvidiax", "", 0},
	} {
		mt, accel, n := splitType(name)
		if got := [3]any{mt, accel, n}; got != want {
			t.Errorf("splitType(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestAttachedShapesFollowVCPULimits(t *testing.T) {
	base := shape{Name: "n1-standard-16", MachineType: "n1-standard-16", Family: "n1", VCPU: 16, Zones: []string{"z-a", "z-b"}}
	got := map[string][]string{}
	for _, s := range attachedShapes(base, map[string][]string{"nvidia-tesla-t4": {"z-a", "z-b"}, "nvidia-tesla-v100": {"z-b"}}) {
		got[s.Name] = s.Zones
	}
	want := map[string][]string{
		"n1-standard-16-t4x1": {"z-a", "z-b"}, "n1-standard-16-t4x2": {"z-a", "z-b"}, "n1-standard-16-t4x4": {"z-a", "z-b"},
		"n1-standard-16-v100x2": {"z-b"}, "n1-standard-16-v100x4": {"z-b"}, "n1-standard-16-v100x8": {"z-b"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attached shapes (-want +got):\n%s", diff)
	}
	if len(attachedShapes(shape{VCPU: 2, Family: "n1", Zones: []string{"z-a"}}, map[string][]string{"nvidia-tesla-t4": {"z-a"}})) != 0 {
		t.Error("a 2-vCPU n1 machine must get no GPU choices")
	}
}

func TestNodeMetadataRewritesKubeEnv(t *testing.T) {
	b := &bootstrap{Metadata: map[string]string{
		"kube-env":    "CLUSTER_NAME: c\nKUBELET_ARGS: --v=2 --max-pods=110\nNODE_LABELS: cloud.google.com/gke-nodepool=default-pool,cloud.google.com/gke-os-distribution=cos,keep=me\nNODE_TAINTS: ''\nCA_CERT: QUJD\n",
		"kube-labels": "cloud.google.com/gke-nodepool=default-pool", "cluster-name": "c",
	}}
	md, err := nodeMetadata(b, joinSettings{
		Labels:  map[string]string{"stowage.dev/nodepool": "gpu"},
		Taints:  []corev1.Taint{{Key: "nvidia.com/gpu", Value: "present", Effect: corev1.TaintEffectNoSchedule}},
		Kubelet: &gcpv1.Kubelet{MaxPods: ptr.To[int32](64), KubeReserved: map[string]string{"cpu": "100m", "memory": "1Gi"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "CLUSTER_NAME: c\n" +
		"KUBELET_ARGS: --v=2 --max-pods=64 --kube-reserved=cpu=100m,memory=1Gi\n" +
		"NODE_LABELS: keep=me,stowage.dev/nodepool=gpu\n" +
		"NODE_TAINTS: 'nvidia.com/gpu=present:NoSchedule'\n" +
		"CA_CERT: QUJD\n"
	if diff := cmp.Diff(want, md["kube-env"]); diff != "" {
		t.Errorf("kube-env (-want +got):\n%s", diff)
	}
	if md["kube-labels"] != "keep=me,stowage.dev/nodepool=gpu" || md["cluster-name"] != "c" {
		t.Errorf("metadata = %v", md)
	}
	if _, err := nodeMetadata(&bootstrap{Metadata: map[string]string{"kube-env": "not yaml at all"}}, joinSettings{}); err == nil {
		t.Error("a kube-env that is not KEY: value lines must be an error")
	}
}

func TestCapacityErrors(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&opError{codes: []string{"ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS"}}, true},
		{&opError{codes: []string{"QUOTA_EXCEEDED"}}, true},
		{&opError{codes: []string{"INVALID_FIELD_VALUE"}}, false},
		{errors.New("googleapi: Error 403: Quota 'NVIDIA_T4_GPUS' exceeded, quotaExceeded"), true},
		{errors.New("googleapi: Error 400: Invalid value for field 'resource.machineType'"), false},
	} {
		if got := isCapacityError(tc.err); got != tc.want {
			t.Errorf("isCapacityError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestPodCIDRSize(t *testing.T) {
	for pods, want := range map[int32]string{110: "/24", 64: "/25", 32: "/26", 8: "/28", 256: "/23"} {
		if got := podCIDRSize(&gcpv1.Kubelet{MaxPods: &pods}); got != want {
			t.Errorf("podCIDRSize(%d) = %s, want %s", pods, got, want)
		}
	}
}

func TestLabelValue(t *testing.T) {
	if got := LabelValue("Prod.GKE/cluster"); got != "prod_gke_cluster" {
		t.Errorf("LabelValue = %q", got)
	}
	if got := LabelValue(strings.Repeat("x", 70)); len(got) != 63 {
		t.Errorf("LabelValue length %d", len(got))
	}
}

// TestStaticShapeAcceleratorIsTheMachines: before machine types are listed,
// a launch reads its shape from the built-in catalog, which gives only the
// GPU's model and memory. a3-highgpu and a3-megagpu both have 80 GB H100s,
// so the accelerator type (the node's cloud.google.com/gke-accelerator label
// and the GPU's billing SKU) must follow the machine, not map order.
func TestStaticShapeAcceleratorIsTheMachines(t *testing.T) {
	p, err := New(Options{Clients: &Clients{}, ClusterName: "c", Project: "p", Region: "us-central1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.static.Load(logr.Discard()); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"a3-highgpu-8g": "nvidia-h100-80gb", "a3-megagpu-8g": "nvidia-h100-mega-80gb",
		"a2-highgpu-1g": "nvidia-tesla-a100", "g2-standard-4": "nvidia-l4",
	}
	// Map iteration order changes from call to call: ask many times.
	for range 20 {
		for name, accel := range want {
			s, ok := p.shapeFor(name)
			if !ok || s.Accel != accel || s.GPUs == 0 {
				t.Fatalf("shapeFor(%s) from the built-in catalog = %q with %d GPUs (found %v), want %s", name, s.Accel, s.GPUs, ok, accel)
			}
		}
	}
}
