package scheduling

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// EffectiveCapacity returns what a machine of type it advertises when it
// belongs to a pool with the given GPU sharing (nil for none), and its
// allocatable (capacity less kubelet and system overhead):
//   - timeSlicingReplicas r: nvidia.com/gpu becomes count × r;
//   - migProfile p on a GPU that supports p: nvidia.com/gpu is replaced by
//     nvidia.com/mig-p = count × instances-per-GPU. GPUs without that profile
//     keep advertising whole GPUs.
//
// The controllers use it for NodeClaim capacity, the solver for packing.
func EffectiveCapacity(it *cloudprovider.InstanceType, sharing *v1.GPUSharing) (capacity, allocatable corev1.ResourceList) {
	capacity = it.Capacity.DeepCopy()
	if sharing != nil && it.GPU != nil && it.GPU.Manufacturer == "nvidia" {
		gpus, ok := capacity[v1.ResourceNvidiaGPU]
		switch {
		case !ok:
		case sharing.MIGProfile != "" && it.GPU.MIGProfiles[sharing.MIGProfile] > 0:
			delete(capacity, v1.ResourceNvidiaGPU)
			n := gpus.Value() * int64(it.GPU.MIGProfiles[sharing.MIGProfile])
			capacity[corev1.ResourceName(v1.ResourceMIGPrefix+sharing.MIGProfile)] = *resource.NewQuantity(n, resource.DecimalSI)
		case sharing.TimeSlicingReplicas != nil && *sharing.TimeSlicingReplicas > 1:
			capacity[v1.ResourceNvidiaGPU] = *resource.NewQuantity(gpus.Value()*int64(*sharing.TimeSlicingReplicas), resource.DecimalSI)
		}
	}
	overhead := it.Overhead.Total()
	allocatable = make(corev1.ResourceList, len(capacity))
	for k, v := range capacity {
		q := v.DeepCopy()
		if o, ok := overhead[k]; ok {
			q.Sub(o)
			if q.Sign() < 0 {
				q.Set(0)
			}
		}
		allocatable[k] = q
	}
	return capacity, allocatable
}

// NodeLabels are the labels a new machine of type it from a pool gets, before
// its offering (zone, capacity type) is known: the type's labels, the pool's
// template labels and the pool name.
func NodeLabels(it *cloudprovider.InstanceType, pool *v1.NodePool) map[string]string {
	out := make(map[string]string, len(it.Labels)+len(pool.Spec.Template.ObjectMeta.Labels)+1)
	for k, v := range pool.Spec.Template.ObjectMeta.Labels {
		out[k] = v
	}
	for k, v := range it.Labels {
		out[k] = v
	}
	out[v1.LabelNodePool] = pool.Name
	return out
}

// DaemonSets is what the DaemonSet pods that would run on a node with these
// labels (or requirements) and taints take there: the sum of their requests,
// and the host ports they bind (as HostPorts, sorted), which no other pod
// binding one of them can share. A daemon runs there if the node admits its
// node selector and required node affinity and it tolerates the taints.
func DaemonSets(daemons []*corev1.Pod, node Requirements, taints []corev1.Taint) (overhead Resources, ports []string) {
	for _, d := range daemons {
		if !daemonRuns(d, node, taints) {
			continue
		}
		overhead = overhead.Add(PodRequests(d))
		ports = append(ports, HostPorts(d)...)
	}
	slices.Sort(ports)
	return overhead, slices.Compact(ports)
}

// daemonRuns reports whether a DaemonSet pod would run on a node with these
// requirements and taints.
func daemonRuns(d *corev1.Pod, node Requirements, taints []corev1.Taint) bool {
	if Tolerates(d.Spec.Tolerations, taints) != nil {
		return false
	}
	pc, err := NewPodConstraints(d)
	if err != nil {
		return false // a daemon the API server accepted but we cannot read runs nowhere we plan for
	}
	for _, alt := range pc.NodeRequirements {
		if node.Admits(alt) == nil {
			return true
		}
	}
	return false
}
