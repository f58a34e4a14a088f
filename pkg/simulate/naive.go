package simulate

import (
	"context"
	"encoding/json"
	"math"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// NaiveCost is what the "one node per pod, whole GPUs" habit costs: every pod
// gets its own machine of the cheapest on-demand type that fits it (with the
// DaemonSets that node runs), from any pool that would take it. A MIG slice or
// time-sliced share is rounded up to whole GPUs. types are the whole catalog:
// a pool that buys only spot still gets an on-demand price here. A pod that no
// on-demand type holds (its pools' types are sold only as spot or reserved
// capacity) is priced at the cheapest offering its pools allow, so every pod
// the plan places is in the baseline too. excluded are the pods no machine of
// any of their pools holds; they add nothing, and the report says so.
func NaiveCost(snap *solver.Snapshot, types []*cloudprovider.InstanceType) (total float64, excluded []*corev1.Pod) {
	type candidate struct {
		it     *cloudprovider.InstanceType
		labels map[string]string
		taints []corev1.Taint
		alloc  corev1.ResourceList
		// daemons is what the node's DaemonSet pods request, including their pod count.
		daemons  corev1.ResourceList
		price    float64
		onDemand bool
		sharing  *v1.GPUSharing
	}
	var cands []candidate
	for _, np := range snap.NodePools {
		allowed := map[cloudprovider.OfferingID]bool{} // offerings the pool itself may buy, by ID
		for _, it := range FilterInstanceTypes(np.NodePool, types, false) {
			for _, o := range it.Offerings {
				allowed[o.ID(it.Name)] = true
			}
		}
		for _, it := range FilterInstanceTypes(np.NodePool, types, true) {
			alloc := it.Allocatable()
			for _, o := range it.Offerings {
				onDemand := o.CapacityType == v1.CapacityTypeOnDemand
				if !o.Available || (!onDemand && !allowed[o.ID(it.Name)]) {
					continue
				}
				labels := nodeLabels(np.NodePool, it, o)
				taints := np.Spec.Template.Spec.Taints
				daemons := daemonSetRequests(snap.DaemonSetPods, labels, taints)
				cands = append(cands, candidate{it: it, labels: labels, taints: taints, alloc: alloc, daemons: daemons, price: o.PricePerHour, onDemand: onDemand,
					sharing: np.Spec.Template.Spec.GPU})
			}
		}
	}
	// Per-pod search is linear in the catalog; caching by request shape keeps
	// 100k-pod scenarios quick since workloads repeat one template many times.
	cache := map[string]float64{}
	for _, p := range snap.Pods {
		key := shapeKey(p) + claimsKey(p)
		best, ok := cache[key]
		if !ok {
			want := wholeGPURequests(p, migProfileOf(p))
			var devicesFit []bool // per candidate, for pods with ResourceClaims
			if snap.DRA != nil && len(p.Spec.ResourceClaims) > 0 {
				devicesFit = claimsFit(snap.DRA, p, len(cands), func(i int) (*cloudprovider.InstanceType, *v1.GPUSharing) {
					return cands[i].it, cands[i].sharing
				})
			}
			// On-demand first; any other offering the pool allows only
			// when no on-demand machine holds the pod.
			for _, onDemand := range []bool{true, false} {
				best = math.Inf(1)
				for i, c := range cands {
					if c.onDemand != onDemand || c.price >= best || !podSelects(p, c.labels) || !tolerates(p, c.taints) ||
						(devicesFit != nil && !devicesFit[i]) {
						continue
					}
					need := addLists(want, c.daemons)
					need[corev1.ResourcePods] = *resource.NewQuantity(need.Pods().Value()+1, resource.DecimalSI)
					if fits(need, c.alloc, c.it) {
						best = c.price
					}
				}
				if !math.IsInf(best, 1) {
					break
				}
			}
			cache[key] = best
		}
		if math.IsInf(best, 1) {
			excluded = append(excluded, p)
			continue
		}
		total += best
	}
	return total, excluded
}

// nodeLabels are the labels a node of it bought as o from np would carry.
func nodeLabels(np *v1.NodePool, it *cloudprovider.InstanceType, o cloudprovider.Offering) map[string]string {
	out := make(map[string]string, len(it.Labels)+len(np.Spec.Template.ObjectMeta.Labels)+3)
	for k, v := range np.Spec.Template.ObjectMeta.Labels {
		out[k] = v
	}
	for k, v := range it.Labels {
		out[k] = v
	}
	out[v1.LabelZone] = o.Zone
	out[v1.LabelCapacityType] = o.CapacityType
	out[v1.LabelNodePool] = np.Name
	return out
}

// shapeKey identifies pods that the naive baseline treats alike: same
// requests, selectors, node affinity and tolerations. It is linear in the
// pod's size: json.Marshal sorts map keys, so equal pods give equal keys,
// where the generated String methods concatenate strings in loops and took
// 16 s for 10 pods of 10,000 tolerations.
func shapeKey(p *corev1.Pod) string {
	// The requests as the scheduler counts them, not the containers'
	// resources: a sidecar and a plain init container of the same size, or
	// pod-level resources, reserve different amounts.
	requests := scheduling.PodRequests(p)
	key := struct {
		Requests     string
		NodeSelector map[string]string
		NodeAffinity *corev1.NodeAffinity
		Tolerations  []corev1.Toleration
	}{Requests: requests.Key(), NodeSelector: p.Spec.NodeSelector, Tolerations: p.Spec.Tolerations}
	if a := p.Spec.Affinity; a != nil {
		key.NodeAffinity = a.NodeAffinity
	}
	raw, _ := json.Marshal(key) // these API types always marshal
	return string(raw)
}

// PodRequests is what the scheduler reserves for a pod, as the solver counts
// it (scheduling.PodRequests): limits standing in for requests a container
// does not set, sidecars beside the containers, the init phase's peak,
// pod-level resources and overhead; without the pod's own "pods" slot.
func PodRequests(p *corev1.Pod) corev1.ResourceList {
	r := scheduling.PodRequests(p)
	r.Fixed[scheduling.SlotPods] = 0
	return r.ToList()
}

// migProfileOf is the MIG profile a pod asks for, if any.
func migProfileOf(p *corev1.Pod) string {
	for k := range PodRequests(p) {
		if strings.HasPrefix(string(k), v1.ResourceMIGPrefix) {
			return strings.TrimPrefix(string(k), v1.ResourceMIGPrefix)
		}
	}
	return ""
}

// wholeGPURequests rewrites a pod's MIG request into whole GPUs: one GPU per
// slice, the habit the naive baseline models. The MIG profile is kept as a
// marker so only MIG-capable types are chosen.
func wholeGPURequests(p *corev1.Pod, migProfile string) corev1.ResourceList {
	req := PodRequests(p)
	if migProfile == "" {
		return req
	}
	name := corev1.ResourceName(v1.ResourceMIGPrefix + migProfile)
	n := req[name]
	delete(req, name)
	gpus := req[v1.ResourceNvidiaGPU]
	gpus.Add(n)
	req[v1.ResourceNvidiaGPU] = gpus
	req[migMarker(migProfile)] = resource.MustParse("1")
	return req
}

func migMarker(profile string) corev1.ResourceName {
	return corev1.ResourceName("mig-capable/" + profile)
}

// daemonSetRequests sums the requests of the DaemonSet pods a node with
// labels and taints would run.
func daemonSetRequests(ds []*corev1.Pod, labels map[string]string, taints []corev1.Taint) corev1.ResourceList {
	out := corev1.ResourceList{}
	n := int64(0)
	for _, p := range ds {
		if podSelects(p, labels) && tolerates(p, taints) {
			out = addLists(out, PodRequests(p))
			n++
		}
	}
	out[corev1.ResourcePods] = *resource.NewQuantity(n, resource.DecimalSI)
	return out
}

// fits reports whether need fits in alloc; a MIG marker fits types whose GPUs
// support the profile.
func fits(need, alloc corev1.ResourceList, it *cloudprovider.InstanceType) bool {
	for k, v := range need {
		if v.IsZero() {
			continue
		}
		if strings.HasPrefix(string(k), "mig-capable/") {
			profile := strings.TrimPrefix(string(k), "mig-capable/")
			if it.GPU == nil || it.GPU.MIGProfiles[profile] == 0 {
				return false
			}
			continue
		}
		have, ok := alloc[k]
		if !ok || v.Cmp(have) > 0 {
			return false
		}
	}
	return true
}

func addLists(a, b corev1.ResourceList) corev1.ResourceList {
	out := make(corev1.ResourceList, len(a)+len(b))
	for k, v := range a {
		out[k] = v.DeepCopy()
	}
	for k, v := range b {
		q := out[k]
		q.Add(v)
		out[k] = q
	}
	return out
}

// claimsKey tells apart pods whose ResourceClaims differ, which shapeKey
// does not read.
func claimsKey(p *corev1.Pod) string {
	if len(p.Spec.ResourceClaims) == 0 {
		return ""
	}
	raw, _ := json.Marshal(p.Spec.ResourceClaims) // API types always marshal
	return "|claims=" + string(raw)
}

// claimsFit reports, per candidate type, whether one machine of it has the
// devices the pod's ResourceClaims ask for. A pod whose claims cannot be
// read fits nowhere.
func claimsFit(d *scheduling.DRA, pod *corev1.Pod, n int, typeOf func(int) (*cloudprovider.InstanceType, *v1.GPUSharing)) []bool {
	types := make([]scheduling.DeviceType, n)
	for i := range types {
		types[i].Type, types[i].Sharing = typeOf(i)
	}
	out := make([]bool, n)
	dp, err := d.Plan(context.Background(), []*corev1.Pod{pod}, nil, types)
	if err != nil || len(dp.Pending) != 1 {
		return out
	}
	want := dp.Pending[0].Spec.Overhead
	for i := range out {
		out[i] = true
		for name, q := range want {
			if !scheduling.IsDeviceResource(name) {
				continue
			}
			if have, ok := dp.TypeCapacity[i][name]; !ok || have.Cmp(q) < 0 {
				out[i] = false
				break
			}
		}
	}
	return out
}
