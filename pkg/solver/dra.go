package solver

import (
	"context"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// withDevices returns the snapshot with pods' ResourceClaims turned into
// synthetic extended resources (see scheduling.DevicePlan), so the packing
// below plans them like any other resource, and a function that maps a
// plan of that snapshot back to the caller's pods and instance types.
// Snapshots without claims pass through untouched.
func withDevices(ctx context.Context, snap *Snapshot) (*Snapshot, func(*Plan) *Plan, error) {
	identity := func(p *Plan) *Plan { return p }
	if snap.DRA == nil || !usesClaims(snap) {
		return snap, identity, nil
	}
	typeOf := typesByPool(snap.NodePools)
	sharing := map[string]*v1.GPUSharing{}
	var types []scheduling.DeviceType
	for _, np := range snap.NodePools {
		if np == nil || np.NodePool == nil {
			continue
		}
		for _, it := range np.InstanceTypes {
			types = append(types, scheduling.DeviceType{Type: it, Sharing: np.Spec.Template.Spec.GPU})
		}
		sharing[np.Name] = np.Spec.Template.Spec.GPU
	}
	nodes := make([]scheduling.DeviceNode, len(snap.Nodes))
	for i, n := range snap.Nodes {
		pool := n.Labels[v1.LabelNodePool]
		nodes[i] = scheduling.DeviceNode{Name: n.Name, Labels: n.Labels, Pods: n.Pods,
			Type: typeOf[pool][n.Labels[v1.LabelInstanceType]], Sharing: sharing[pool]}
	}
	dp, err := snap.DRA.Plan(ctx, snap.Pods, nodes, types)
	if err != nil {
		return nil, nil, fmt.Errorf("planning resource claims: %w", err)
	}

	out := *snap
	out.Pods = dp.Pending
	out.Nodes = make([]*Node, len(snap.Nodes))
	for i, n := range snap.Nodes {
		cp := *n
		cp.Pods = dp.NodePods[i]
		if len(dp.NodeCapacity[i]) > 0 {
			cp.Allocatable = withExtra(n.Allocatable, dp.NodeCapacity[i])
		}
		out.Nodes[i] = &cp
	}
	ti := 0
	var original map[*cloudprovider.InstanceType]*cloudprovider.InstanceType
	out.NodePools, original = extendTypes(snap.NodePools, func(*cloudprovider.InstanceType) corev1.ResourceList {
		// Called in pool and type order, the order TypeCapacity is in.
		extra := dp.TypeCapacity[ti]
		ti++
		return extra
	})

	restore := func(p *Plan) *Plan {
		for i := range p.Unschedulable {
			u := &p.Unschedulable[i]
			u.Reason = dp.Describe(u.Pod, u.Reason)
		}
		mapBack(p, dp.Originals, original, scheduling.IsDeviceResource)
		var unplaceable []Unschedulable
		for pod, why := range dp.Unplaceable {
			unplaceable = append(unplaceable, Unschedulable{Pod: pod, Reason: why})
		}
		sort.Slice(unplaceable, func(i, j int) bool {
			a, b := unplaceable[i].Pod, unplaceable[j].Pod
			return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
		})
		p.Unschedulable = append(p.Unschedulable, unplaceable...)
		return p
	}
	return &out, restore, nil
}

func usesClaims(snap *Snapshot) bool {
	if scheduling.UsesResourceClaims(snap.Pods) {
		return true
	}
	for _, n := range snap.Nodes {
		if scheduling.UsesResourceClaims(n.Pods) {
			return true
		}
	}
	return false
}

// typesByPool indexes each pool's instance types by name.
func typesByPool(pools []*NodePool) map[string]map[string]*cloudprovider.InstanceType {
	out := make(map[string]map[string]*cloudprovider.InstanceType, len(pools))
	for _, np := range pools {
		if np == nil || np.NodePool == nil {
			continue
		}
		byName := make(map[string]*cloudprovider.InstanceType, len(np.InstanceTypes))
		for _, it := range np.InstanceTypes {
			byName[it.Name] = it
		}
		out[np.Name] = byName
	}
	return out
}

// extendTypes returns copies of pools whose instance types carry the extra
// capacity extra gives them (types it gives none stay shared), and a map
// from each copied type to the pool's, for mapBack.
func extendTypes(pools []*NodePool, extra func(*cloudprovider.InstanceType) corev1.ResourceList) (
	[]*NodePool, map[*cloudprovider.InstanceType]*cloudprovider.InstanceType) {
	original := map[*cloudprovider.InstanceType]*cloudprovider.InstanceType{}
	out := make([]*NodePool, len(pools))
	for i, np := range pools {
		if np == nil || np.NodePool == nil {
			out[i] = np
			continue
		}
		cp := *np
		cp.InstanceTypes = make([]*cloudprovider.InstanceType, len(np.InstanceTypes))
		for j, it := range np.InstanceTypes {
			cp.InstanceTypes[j] = it
			if e := extra(it); len(e) > 0 {
				c := *it
				c.Capacity = withExtra(it.Capacity, e)
				cp.InstanceTypes[j] = &c
				original[&c] = it
			}
		}
		out[i] = &cp
	}
	return out, original
}

// mapBack rewrites a plan of a transformed snapshot in the caller's terms:
// pod copies become the pods they were made from, instance type copies the
// pool's, and the synthetic resources leave the new nodes' requests.
func mapBack(p *Plan, pods map[*corev1.Pod]*corev1.Pod, types map[*cloudprovider.InstanceType]*cloudprovider.InstanceType,
	synthetic func(corev1.ResourceName) bool) {
	orig := func(pod *corev1.Pod) *corev1.Pod {
		if o, ok := pods[pod]; ok {
			return o
		}
		return pod
	}
	for i := range p.Bindings {
		p.Bindings[i].Pod = orig(p.Bindings[i].Pod)
	}
	for _, n := range p.NewNodes {
		for i, pod := range n.Pods {
			n.Pods[i] = orig(pod)
		}
		for i, c := range n.Choices {
			if o, ok := types[c.InstanceType]; ok {
				n.Choices[i].InstanceType = o
			}
		}
		for name := range n.Requests {
			if synthetic(name) {
				delete(n.Requests, name)
			}
		}
	}
	for i := range p.Unschedulable {
		p.Unschedulable[i].Pod = orig(p.Unschedulable[i].Pod)
	}
}

func withExtra(base, extra corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}
