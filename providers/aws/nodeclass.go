package aws

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// Kubelet defaults the EKS images use when a node class sets none.
var (
	defaultMemoryAvailable = resource.MustParse("100Mi")
	defaultNodefsAvailable = "10%"
)

// forNodeClass narrows the catalog to what the node class can launch: zones
// with a selected subnet, reservations its selector terms matched, and the
// capacity and overhead its disks and kubelet settings give. Without a node
// class no reservation is offered: a reservation is used only when selected.
func (p *Provider) forNodeClass(its []*cloudprovider.InstanceType, nc *awsv1.EC2NodeClass) []*cloudprovider.InstanceType {
	if nc == nil {
		for _, it := range its {
			it.Offerings = slices.DeleteFunc(it.Offerings, func(o cloudprovider.Offering) bool { return o.CapacityType == v1.CapacityTypeReserved })
		}
		return slices.DeleteFunc(its, func(it *cloudprovider.InstanceType) bool { return len(it.Offerings) == 0 })
	}
	zones := map[string]bool{}
	for _, s := range nc.Status.Subnets {
		zones[s.Zone] = true
	}
	selected := map[string]bool{}
	for _, r := range nc.Status.CapacityReservations {
		selected[r.ID] = true
	}
	ephemeral := rootVolumeSize(nc)
	for _, it := range its {
		it.Offerings = slices.DeleteFunc(it.Offerings, func(o cloudprovider.Offering) bool {
			return !zones[o.Zone] || o.CapacityType == v1.CapacityTypeReserved && !selected[o.ReservationID]
		})
		applyKubelet(it, nc.Spec.Kubelet, ephemeral)
		if nc.Spec.EFA == awsv1.EFADisabled {
			delete(it.Capacity, ResourceEFA)
		}
	}
	return slices.DeleteFunc(its, func(it *cloudprovider.InstanceType) bool { return len(it.Offerings) == 0 })
}

// rootVolumeSize is the volume the kubelet keeps pods and images on: the
// mapping marked rootVolume, else the family's default device.
func rootVolumeSize(nc *awsv1.EC2NodeClass) resource.Quantity {
	vols := volumes(nc)
	pick := -1
	for i, v := range vols {
		if v.RootVolume {
			pick = i
			break
		}
	}
	if pick < 0 {
		want := "/dev/xvda"
		if nc.Family() == awsv1.AMIFamilyBottlerocket {
			want = "/dev/xvdb"
		}
		for i, v := range vols {
			if v.DeviceName == want {
				pick = i
			}
		}
	}
	if pick < 0 {
		return resource.MustParse(defaultVolumeSize)
	}
	q, err := resource.ParseQuantity(vols[pick].EBS.VolumeSize)
	if err != nil {
		return resource.MustParse(defaultVolumeSize)
	}
	return q
}

// applyKubelet sets the pods and ephemeral-storage capacity and the overhead
// a node of this type gets with the node class's kubelet settings, the way
// the kubelet computes allocatable: capacity - kube-reserved -
// system-reserved - hard eviction threshold (the larger of hard and soft, as
// a node under its soft threshold evicts too).
func applyKubelet(it *cloudprovider.InstanceType, k *awsv1.KubeletConfiguration, ephemeral resource.Quantity) {
	pods := it.Capacity.Pods().Value()
	if k != nil && k.MaxPods != nil {
		pods = int64(*k.MaxPods)
	}
	it.Capacity[corev1.ResourcePods] = *resource.NewQuantity(pods, resource.DecimalSI)
	it.Capacity[corev1.ResourceEphemeralStorage] = ephemeral.DeepCopy()

	vcpu := int(it.Capacity.Cpu().Value())
	memMiB := it.Capacity.Memory().Value() >> 20
	base := pricing.Overhead(Name, vcpu, memMiB, int(pods))
	kube := base.KubeReserved
	system := corev1.ResourceList{}
	if k != nil {
		overrideQuantities(kube, k.KubeReserved)
		overrideQuantities(system, k.SystemReserved)
	}
	eviction := corev1.ResourceList{
		corev1.ResourceMemory:           threshold(k, "memory.available", it.Capacity.Memory(), defaultMemoryAvailable.String()),
		corev1.ResourceEphemeralStorage: threshold(k, "nodefs.available", &ephemeral, defaultNodefsAvailable),
	}
	it.Overhead = cloudprovider.Overhead{KubeReserved: kube, SystemReserved: system, EvictionThreshold: eviction}
}

// overrideQuantities replaces entries of l with the node class's values; the
// CRD has already checked they parse.
func overrideQuantities(l corev1.ResourceList, m map[string]awsv1.Quantity) {
	for name, v := range m {
		if q, err := resource.ParseQuantity(string(v)); err == nil {
			l[corev1.ResourceName(name)] = q
		}
	}
}

// threshold is the larger of the hard and soft thresholds for signal, as a
// quantity of capacity; def applies when neither is set.
func threshold(k *awsv1.KubeletConfiguration, signal string, capacity *resource.Quantity, def string) resource.Quantity {
	var values []string
	if k != nil {
		if v, ok := k.EvictionHard[signal]; ok {
			values = append(values, string(v))
		}
		if v, ok := k.EvictionSoft[signal]; ok {
			values = append(values, string(v))
		}
	}
	if len(values) == 0 {
		values = []string{def}
	}
	var out resource.Quantity
	for _, v := range values {
		q := quantityOf(v, capacity)
		if q.Cmp(out) > 0 {
			out = q
		}
	}
	return out
}

// quantityOf reads "500Mi" or "10%" (of capacity).
func quantityOf(v string, capacity *resource.Quantity) resource.Quantity {
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil {
			return resource.Quantity{}
		}
		return *resource.NewQuantity(int64(float64(capacity.Value())*f/100), resource.BinarySI)
	}
	q, err := resource.ParseQuantity(v)
	if err != nil {
		return resource.Quantity{}
	}
	return q
}
