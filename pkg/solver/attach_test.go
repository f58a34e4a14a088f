package solver

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

const ebs = "ebs.csi.aws.com"

// volumePods returns n pods, each mounting its own claim of an EBS class
// that binds on first consumer, and the Volumes that resolve them.
func volumePods(n int) ([]*corev1.Pod, *scheduling.Volumes) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "gp3"}, Provisioner: ebs, VolumeBindingMode: &wffc}
	pods := makePods(n, "db", "100m", "128Mi")
	var claims []*corev1.PersistentVolumeClaim
	for i, p := range pods {
		name := fmt.Sprintf("data-%d", i)
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}}}
		claims = append(claims, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("gp3")}})
	}
	return pods, scheduling.NewVolumes(claims, nil, []*storagev1.StorageClass{class})
}

func withAttachLimit(it itSpec, n int64) *NodePool {
	t := makeIT(it)
	t.Capacity[cloudprovider.AttachLimitResource(ebs)] = *resource.NewQuantity(n, resource.DecimalSI)
	return makePool("default", []*cloudprovider.InstanceType{t}, onDemand)
}

func TestAttachLimitsSplitVolumePodsAcrossMachines(t *testing.T) {
	pods, vols := volumePods(30)
	pool := withAttachLimit(itSpec{name: "m.4xlarge", cpu: 16, memGi: 64, price: 0.8}, 10)

	plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{pool}})
	if len(plan.NewNodes) != 1 {
		t.Fatalf("without Volumes the limit is not known: %d new nodes, want 1", len(plan.NewNodes))
	}

	plan = solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{pool}, Volumes: vols})
	if len(plan.NewNodes) != 3 || len(plan.Unschedulable) != 0 {
		t.Fatalf("30 volumes, 10 per machine: %d new nodes, %d unschedulable; want 3 and 0", len(plan.NewNodes), len(plan.Unschedulable))
	}
	original := map[*corev1.Pod]bool{}
	for _, p := range pods {
		original[p] = true
	}
	for _, n := range plan.NewNodes {
		if len(n.Pods) > 10 {
			t.Errorf("%d volume pods planned onto one machine that attaches 10", len(n.Pods))
		}
		for _, p := range n.Pods {
			if !original[p] {
				t.Fatalf("plan holds pod %s that is not the caller's", p.Name)
			}
		}
		for r := range n.Requests {
			if cloudprovider.IsAttachLimitResource(r) {
				t.Errorf("the synthetic resource %s leaked into the node's requests", r)
			}
		}
		if n.Choices[0].InstanceType != pool.InstanceTypes[0] {
			t.Errorf("a choice names a copy of the instance type, not the pool's")
		}
	}
}

func TestAttachLimitsUnknownMeansUnlimited(t *testing.T) {
	pods, vols := volumePods(30)
	pool := makePool("default", []*cloudprovider.InstanceType{makeIT(itSpec{name: "m.4xlarge", cpu: 16, memGi: 64, price: 0.8})}, onDemand)
	plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{pool}, Volumes: vols})
	if len(plan.NewNodes) != 1 || len(plan.Unschedulable) != 0 {
		t.Fatalf("no limit known: %d new nodes, %d unschedulable; want 1 and 0", len(plan.NewNodes), len(plan.Unschedulable))
	}
}

func TestAttachLimitsOnExistingNodes(t *testing.T) {
	pods, vols := volumePods(12)
	onNode, pending := pods[:8], pods[8:]
	pool := withAttachLimit(itSpec{name: "m.4xlarge", cpu: 16, memGi: 64, price: 0.8}, 26)
	node := func() *Node {
		return &Node{Name: "n1", Pods: onNode, Labels: map[string]string{
			v1.LabelHostname: "n1", v1.LabelZone: "us-east-1a", v1.LabelNodePool: "default", v1.LabelInstanceType: "m.4xlarge"},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16"), corev1.ResourceMemory: resource.MustParse("60Gi"),
				corev1.ResourcePods: resource.MustParse("110")}}
	}

	// The catalog says 26: room for the 4 pending volumes beside the 8.
	plan := solveT(t, &Snapshot{Pods: pending, Nodes: []*Node{node()}, NodePools: []*NodePool{pool}, Volumes: vols})
	if len(plan.Bindings) != 4 || len(plan.NewNodes) != 0 {
		t.Fatalf("catalog limit 26, 8 attached: %d bindings, %d new nodes; want 4 and 0", len(plan.Bindings), len(plan.NewNodes))
	}

	// The CSI driver on the node says 10: two more fit, two need a machine.
	vols.SetNodeLimits([]*storagev1.CSINode{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{
		{Name: ebs, NodeID: "i-1", Allocatable: &storagev1.VolumeNodeResources{Count: ptr.To[int32](10)}}}}}})
	plan = solveT(t, &Snapshot{Pods: pending, Nodes: []*Node{node()}, NodePools: []*NodePool{pool}, Volumes: vols})
	if len(plan.Bindings) != 2 || len(plan.NewNodes) != 1 || len(plan.NewNodes[0].Pods) != 2 {
		t.Fatalf("CSINode limit 10, 8 attached: %d bindings, %d new nodes; want 2 bindings and one machine for 2", len(plan.Bindings), len(plan.NewNodes))
	}
	for _, b := range plan.Bindings {
		if b.Pod != pending[0] && b.Pod != pending[1] && b.Pod != pending[2] && b.Pod != pending[3] {
			t.Errorf("binding names pod %s that is not one of the caller's pending pods", b.Pod.Name)
		}
	}
}

// An in-tree EBS disk in a pod spec attaches through the EBS CSI driver
// (CSI migration), so it counts against the same limit as a claim.
func TestAttachLimitsCountInlineDisks(t *testing.T) {
	pods := makePods(30, "legacy", "100m", "128Mi")
	for i, p := range pods {
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: fmt.Sprintf("vol-%d", i)}}}}
	}
	pool := withAttachLimit(itSpec{name: "m.4xlarge", cpu: 16, memGi: 64, price: 0.8}, 10)
	plan := solveT(t, &Snapshot{Pods: pods, NodePools: []*NodePool{pool}, Volumes: scheduling.NewVolumes(nil, nil, nil)})
	if len(plan.NewNodes) != 3 || len(plan.Unschedulable) != 0 {
		t.Fatalf("30 inline EBS disks, 10 per machine: %d new nodes, %d unschedulable; want 3 and 0", len(plan.NewNodes), len(plan.Unschedulable))
	}
}
