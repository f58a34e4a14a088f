package pricing

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// cloudDefaults are the node settings a cloud's managed Kubernetes uses when
// the catalog does not say otherwise.
type cloudDefaults struct {
	maxPods          int
	ephemeralStorage resource.Quantity // root volume a node gets by default
	// kubeReservedMemoryMiB is the managed service's kube-reserved memory formula.
	kubeReservedMemoryMiB func(memoryMiB int64, maxPods int) int64
	// blockDriver is the CSI driver of the cloud's block storage, whose
	// attach limit a type's Volumes is.
	blockDriver string
	// volumes is the attach limit of a type the catalog gives none for,
	// 0 when the cloud has no rule.
	volumes func(name string) int
}

var defaults = map[string]cloudDefaults{
	// EKS: 20 GiB root volume; max pods from the VPC CNI limit (in the data).
	"aws": {maxPods: 110, ephemeralStorage: resource.MustParse("20Gi"), kubeReservedMemoryMiB: eksReservedMemory,
		blockDriver: "ebs.csi.aws.com"},
	// GKE: 100 GB boot disk, 110 pods per node.
	"gcp": {maxPods: 110, ephemeralStorage: resource.MustParse("100Gi"), kubeReservedMemoryMiB: gkeReservedMemory,
		blockDriver: "pd.csi.storage.gke.io", volumes: gceDataDisks},
	// AKS: 128 GB OS disk, 110 pods per node (kubenet / CNI overlay default).
	"azure": {maxPods: 110, ephemeralStorage: resource.MustParse("128Gi"), kubeReservedMemoryMiB: aksReservedMemory,
		blockDriver: "disk.csi.azure.com"},
}

// gceDataDisks is Compute Engine's persistent disk limit less the boot disk:
// 16 disks on shared-core machine types, 128 on the others (Compute Engine
// documentation, "Persistent Disk limits", read 2026-12-05).
func gceDataDisks(name string) int {
	switch name {
	case "e2-micro", "e2-small", "e2-medium", "f1-micro", "g1-small":
		return 15
	}
	return 127
}

// evictionThreshold is the kubelet's memory.available hard eviction default.
var evictionThreshold = resource.MustParse("100Mi")

// overhead is what the kubelet keeps back on a node of this shape.
func overhead(cloud string, vcpu int, memoryMiB int64, maxPods int) cloudprovider.Overhead {
	d := defaults[cloud]
	return cloudprovider.Overhead{
		KubeReserved: corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(kubeReservedCPUMilli(vcpu), resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(d.kubeReservedMemoryMiB(memoryMiB, maxPods)<<20, resource.BinarySI),
		},
		EvictionThreshold: corev1.ResourceList{corev1.ResourceMemory: evictionThreshold.DeepCopy()},
	}
}

// kubeReservedCPUMilli is the tiered CPU reservation EKS, GKE and AKS share:
// 6% of the first core, 1% of the second, 0.5% of the third and fourth and
// 0.25% of every core above four.
func kubeReservedCPUMilli(vcpu int) int64 {
	cores := int64(vcpu)
	var m int64
	if cores >= 1 {
		m += 60
	}
	if cores >= 2 {
		m += 10
	}
	if cores > 2 {
		m += 5 * min(cores-2, 2)
	}
	if cores > 4 {
		// 2.5 millicores per core, rounded down like the EKS bootstrap script.
		m += (cores - 4) * 25 / 10
	}
	return m
}

// eksReservedMemory is the EKS AMI formula: 255 MiB plus 11 MiB per pod.
func eksReservedMemory(_ int64, maxPods int) int64 { return 255 + 11*int64(maxPods) }

// gkeReservedMemory is GKE's tiered reservation: 255 MiB below 1 GiB, else
// 25% of the first 4 GiB, 20% of the next 4, 10% of the next 8, 6% of the
// next 112 and 2% above 128 GiB.
func gkeReservedMemory(memoryMiB int64, _ int) int64 {
	if memoryMiB < 1024 {
		return 255
	}
	tiers := []struct {
		upToMiB    int64
		perTenThou int64 // basis points
	}{{4 << 10, 2500}, {8 << 10, 2000}, {16 << 10, 1000}, {128 << 10, 600}, {1 << 62, 200}}
	var reserved, below int64
	for _, t := range tiers {
		if memoryMiB <= below {
			break
		}
		reserved += (min(memoryMiB, t.upToMiB) - below) * t.perTenThou / 10000
		below = t.upToMiB
	}
	return reserved
}

// aksReservedMemory is AKS' formula for Kubernetes 1.29+: 20 MiB per pod plus
// 50 MiB, at most 25% of the node's memory.
func aksReservedMemory(memoryMiB int64, maxPods int) int64 {
	return min(50+20*int64(maxPods), memoryMiB/4)
}

// Overhead is what the kubelet keeps back on a node of this shape with the
// cloud's defaults; providers start from it when a node class changes max
// pods or reservations.
func Overhead(cloud string, vcpu int, memoryMiB int64, maxPods int) cloudprovider.Overhead {
	return overhead(cloud, vcpu, memoryMiB, maxPods)
}
