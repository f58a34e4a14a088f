package fake_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	"github.com/stowage-k8s/stowage/providers/fake"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// TestOnRealCluster launches a GPU machine on a real local control plane and
// runs a GPU pod on the Node the fake kubelet registers (kwok plays the
// kubelet), then deletes the machine.
func TestOnRealCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local control plane")
	}
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true})
	ctx := context.Background()
	gpu := v1.ResourceNvidiaGPU
	catalog := &pricing.Catalog{
		Cloud: "test", Region: "test-1", Zones: []string{"test-1a"},
		InstanceTypes: []*cloudprovider.InstanceType{{
			Name: "g.xlarge",
			Labels: map[string]string{v1.LabelInstanceType: "g.xlarge", v1.LabelArch: "amd64", v1.LabelOS: "linux",
				v1.LabelGPUName: "a10g", v1.LabelGPUCount: "1"},
			Capacity: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("16Gi"),
				corev1.ResourcePods: resource.MustParse("58"), gpu: resource.MustParse("1"),
			},
			GPU: &cloudprovider.GPU{Manufacturer: "nvidia", Name: "a10g", Count: 1, MemoryMiB: 24576},
			Offerings: []cloudprovider.Offering{
				{Zone: "test-1a", CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.4, Available: true},
			},
		}},
	}
	cloud, err := fake.New(fake.Options{Client: cp.Client, Catalog: catalog, ClusterName: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cloud.Stop)
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-abcde", UID: "0b4c7a9e", Labels: map[string]string{v1.LabelNodePool: "gpu"}},
		Spec: v1.NodeClaimSpec{
			Offerings: []v1.OfferingChoice{{InstanceType: "g.xlarge", Zone: "test-1a", CapacityType: v1.CapacityTypeSpot}},
			GPU:       &v1.GPUSharing{TimeSlicingReplicas: ptr.To[int32](2)},
		},
	}
	launched, err := cloud.Create(ctx, claim)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	// The fake DRA driver publishes the GPU, owned by the Node.
	slices := &resourceapi.ResourceSliceList{}
	if err := cp.Client.List(ctx, slices); err != nil || len(slices.Items) != 1 {
		t.Fatalf("listing slices: %d, %v; want the machine's one", len(slices.Items), err)
	}
	if s := slices.Items[0]; len(s.Spec.Devices) != 1 || *s.Spec.NodeName != nodeName(launched.Status.ProviderID) ||
		len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Node" || s.OwnerReferences[0].UID == "" {
		t.Errorf("slice %s: %d devices on %s, owners %v", s.Name, len(s.Spec.Devices), *s.Spec.NodeName, s.OwnerReferences)
	}

	// Two pods share the time-sliced GPU. They tolerate the unregistered
	// taint because no Stowage controller runs here to lift it.
	for _, name := range []string{"infer-1", "infer-2"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.PodSpec{
				NodeSelector: map[string]string{v1.LabelNodePool: "gpu", v1.LabelCapacityType: v1.CapacityTypeSpot},
				Tolerations:  []corev1.Toleration{{Key: v1.UnregisteredTaintKey, Operator: corev1.TolerationOpExists}},
				Containers: []corev1.Container{{Name: "c", Image: "c", Resources: corev1.ResourceRequirements{
					Limits: corev1.ResourceList{gpu: resource.MustParse("1")},
				}}},
			},
		}
		if err := cp.Client.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "pod "+name+" to run", func(ctx context.Context) (bool, error) {
			err := cp.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod)
			return err == nil && pod.Status.Phase == corev1.PodRunning, err
		})
		if want := nodeName(launched.Status.ProviderID); pod.Spec.NodeName != want {
			t.Errorf("pod %s on %q, want the launched node %q", name, pod.Spec.NodeName, want)
		}
	}

	if err := cloud.Delete(ctx, launched); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	waitFor(t, "the node to be deleted", func(ctx context.Context) (bool, error) {
		err := cp.Client.Get(ctx, client.ObjectKey{Name: nodeName(launched.Status.ProviderID)}, &corev1.Node{})
		return client.IgnoreNotFound(err) == nil && err != nil, client.IgnoreNotFound(err)
	})
	if err := cp.Client.List(ctx, slices); err != nil || len(slices.Items) != 0 {
		t.Errorf("slices after Delete: %d, %v", len(slices.Items), err)
	}
	if list, err := cloud.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("List after Delete: %d instances, %v", len(list), err)
	}
}

// nodeName is the instance ID, the last element of fake://<zone>/<id>.
func nodeName(providerID string) string { return providerID[strings.LastIndex(providerID, "/")+1:] }

func waitFor(t *testing.T, what string, cond wait.ConditionWithContextFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
