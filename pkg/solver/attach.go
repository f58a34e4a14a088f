package solver

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// unlimitedAttach stands for an attach limit nobody knows: the kube-scheduler
// enforces none there either.
const unlimitedAttach = 1 << 30

// withAttachLimits returns the snapshot with each pending pod's claims
// counted as requests of their CSI driver's attach-limit resource
// (cloudprovider.AttachLimitResource), so the packing never plans more volumes
// onto a machine than it can attach, and a function that maps a plan of
// that snapshot back to the caller's pods and instance types. A node's
// limit is what its CSI driver reports (CSINode), else what its instance
// type's catalog says, else none; the claims its pods already attach are
// taken off it. Snapshots without Volumes or pending claims pass through.
func withAttachLimits(snap *Snapshot) (*Snapshot, func(*Plan) *Plan) {
	identity := func(p *Plan) *Plan { return p }
	if snap.Volumes == nil {
		return snap, identity
	}
	out := *snap
	out.Pods = make([]*corev1.Pod, len(snap.Pods))
	originals := map[*corev1.Pod]*corev1.Pod{}
	used := map[corev1.ResourceName]bool{}
	for i, pod := range snap.Pods {
		out.Pods[i] = pod
		if !scheduling.AttachesVolumes(pod) {
			continue
		}
		counts := map[corev1.ResourceName]int64{}
		for _, a := range snap.Volumes.Attachments(pod) {
			counts[a.Resource]++
		}
		if len(counts) == 0 {
			continue
		}
		extra := make(corev1.ResourceList, len(counts))
		for r, n := range counts {
			extra[r] = *resource.NewQuantity(n, resource.DecimalSI)
			used[r] = true
		}
		cp := *pod
		cp.Spec.Overhead = withExtra(pod.Spec.Overhead, extra)
		out.Pods[i] = &cp
		originals[&cp] = pod
	}
	if len(used) == 0 {
		return snap, identity
	}

	var original map[*cloudprovider.InstanceType]*cloudprovider.InstanceType
	out.NodePools, original = extendTypes(snap.NodePools, func(it *cloudprovider.InstanceType) corev1.ResourceList {
		return unknownLimits(it.Capacity, used)
	})
	typeOf := typesByPool(snap.NodePools)
	out.Nodes = make([]*Node, len(snap.Nodes))
	for i, n := range snap.Nodes {
		cp := *n
		cp.Allocatable = nodeAttachRoom(snap.Volumes, n, typeOf[n.Labels[v1.LabelNodePool]][n.Labels[v1.LabelInstanceType]], used)
		out.Nodes[i] = &cp
	}

	restore := func(p *Plan) *Plan {
		mapBack(p, originals, original, cloudprovider.IsAttachLimitResource)
		return p
	}
	return &out, restore
}

// unknownLimits returns the resources of used that capacity does not limit,
// each at unlimitedAttach.
func unknownLimits(capacity corev1.ResourceList, used map[corev1.ResourceName]bool) corev1.ResourceList {
	var out corev1.ResourceList
	for r := range used {
		if _, ok := capacity[r]; ok {
			continue
		}
		if out == nil {
			out = corev1.ResourceList{}
		}
		out[r] = *resource.NewQuantity(unlimitedAttach, resource.DecimalSI)
	}
	return out
}

// nodeAttachRoom returns n's allocatable with, for each driver resource in
// used, the volumes it can still attach: its limit less the distinct claims
// its pods attach already.
func nodeAttachRoom(vols *scheduling.Volumes, n *Node, it *cloudprovider.InstanceType, used map[corev1.ResourceName]bool) corev1.ResourceList {
	attached := map[corev1.ResourceName]map[types.NamespacedName]bool{}
	for _, pod := range n.Pods {
		if !scheduling.AttachesVolumes(pod) {
			continue
		}
		for _, a := range vols.Attachments(pod) {
			if attached[a.Resource] == nil {
				attached[a.Resource] = map[types.NamespacedName]bool{}
			}
			attached[a.Resource][a.Claim] = true
		}
	}
	out := maps.Clone(n.Allocatable)
	if out == nil {
		out = corev1.ResourceList{}
	}
	for r := range used {
		limit := int64(unlimitedAttach)
		if l, ok := vols.NodeLimits[n.Name][r]; ok {
			limit = l
		} else if q, ok := n.Allocatable[r]; ok {
			limit = q.Value()
		} else if it != nil {
			if q, ok := it.Capacity[r]; ok {
				limit = q.Value()
			}
		}
		out[r] = *resource.NewQuantity(max(0, limit-int64(len(attached[r]))), resource.DecimalSI)
	}
	return out
}
