//go:build unix

package e2e

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// draClaimTemplate asks for one GPU of the NVIDIA class matching exprs.
func draClaimTemplate(ns, name string, exprs ...string) *resourceapi.ResourceClaimTemplate {
	req := &resourceapi.ExactDeviceRequest{DeviceClassName: "gpu.nvidia.com", AllocationMode: resourceapi.DeviceAllocationModeExactCount, Count: 1}
	for _, e := range exprs {
		req.Selectors = append(req.Selectors, resourceapi.DeviceSelector{CEL: &resourceapi.CELDeviceSelector{Expression: e}})
	}
	return &resourceapi.ResourceClaimTemplate{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: resourceapi.ResourceClaimTemplateSpec{Spec: resourceapi.ResourceClaimSpec{Devices: resourceapi.DeviceClaim{
			Requests: []resourceapi.DeviceRequest{{Name: "gpu", Exactly: req}}}}},
	}
}

func draPod(ns, name, template, pool string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Tolerations:                   []corev1.Toleration{{Key: pool, Operator: corev1.TolerationOpExists}},
			ResourceClaims:                []corev1.PodResourceClaim{{Name: "gpu", ResourceClaimTemplateName: ptr.To(template)}},
			Containers: []corev1.Container{{Name: "server", Image: "example/vllm:1",
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi")},
					Claims:   []corev1.ResourceClaim{{Name: "gpu"}},
				}}},
		},
	}
}

// TestDRA plans pods that get their GPUs through ResourceClaims: the
// kube-scheduler's DRA plugin allocates their claims on the kwok nodes
// whose ResourceSlices the fake cloud publishes. A pod asking for one GPU
// with at least 40 GiB gets an L40S machine, not the cheaper T4; one asking
// for any GPU gets the T4.
func TestDRA(t *testing.T) {
	tc := trnStart(t, "dra-e2e", nil)
	ctx := context.Background()
	const ns = "serve"
	trnCreate(t, tc.c,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		trnPool("gpu", "g4dn.xlarge", "g6e.xlarge", "p4d.24xlarge"),
		// What the NVIDIA DRA driver installs.
		&resourceapi.DeviceClass{ObjectMeta: metav1.ObjectMeta{Name: "gpu.nvidia.com"}, Spec: resourceapi.DeviceClassSpec{
			Selectors: []resourceapi.DeviceSelector{{CEL: &resourceapi.CELDeviceSelector{
				Expression: "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'"}}}}},
		draClaimTemplate(ns, "gpu-40gib", "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('40Gi')) >= 0"),
		draClaimTemplate(ns, "any-gpu"),
		draPod(ns, "llm", "gpu-40gib", "gpu"),
		draPod(ns, "embed", "any-gpu", "gpu"),
	)
	var nodes map[string]*corev1.Node
	trnEventually(t, "both pods running", func(ctx context.Context) (bool, error) {
		var ok bool
		var err error
		nodes, ok, err = trnRunning(ctx, tc.c, ns, "llm", "embed")
		return ok, err
	})
	for pod, want := range map[string]string{"llm": "g6e.xlarge", "embed": "g4dn.xlarge"} {
		if got := nodes[pod].Labels[v1.LabelInstanceType]; got != want {
			t.Errorf("pod %s runs on %s, want %s", pod, got, want)
		}
	}
	// The scheduler allocated each claim a device of the pod's node.
	for _, name := range []string{"llm", "embed"} {
		pod := &corev1.Pod{}
		if err := tc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pod); err != nil {
			t.Fatal(err)
		}
		if len(pod.Status.ResourceClaimStatuses) != 1 || pod.Status.ResourceClaimStatuses[0].ResourceClaimName == nil {
			t.Fatalf("pod %s has claim statuses %v", name, pod.Status.ResourceClaimStatuses)
		}
		claim := &resourceapi.ResourceClaim{}
		if err := tc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: *pod.Status.ResourceClaimStatuses[0].ResourceClaimName}, claim); err != nil {
			t.Fatal(err)
		}
		a := claim.Status.Allocation
		if a == nil || len(a.Devices.Results) != 1 || a.Devices.Results[0].Driver != scheduling.DriverNvidiaGPU ||
			a.Devices.Results[0].Pool != pod.Spec.NodeName {
			t.Errorf("claim of %s allocated %+v, want one device of node %s", name, a, pod.Spec.NodeName)
		}
	}
	claims, err := trnClaims(ctx, tc.c, "gpu")
	if err != nil || len(claims) != 2 {
		t.Errorf("%d nodeclaims (%v), want one per pod", len(claims), err)
	}
	if machines, err := tc.cloud.List(ctx); err != nil || len(machines) != 2 {
		t.Errorf("the cloud runs %d machines (%v), want 2", len(machines), err)
	}
}
