package cost

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// draGPUDrivers are the DRA drivers whose devices are GPUs: those
// pkg/scheduling models (other vendors' drivers are not modelled yet).
var draGPUDrivers = map[string]bool{scheduling.DriverNvidiaGPU: true}

// draGPUResource names a DRA GPU driver's devices of one type ("gpu",
// "mig") as if they were an extended resource, so GPUs allocated through
// ResourceClaims are priced like those requested as nvidia.com/gpu.
func draGPUResource(driver, deviceType string) corev1.ResourceName {
	return corev1.ResourceName(driver + "/" + deviceType)
}

func isDRAGPUResource(name corev1.ResourceName) bool {
	driver, _, ok := strings.Cut(string(name), "/")
	return ok && draGPUDrivers[driver]
}

type deviceID struct{ driver, pool, device string }

type deviceAt struct {
	node     string
	resource corev1.ResourceName
}

// draGPUs are the GPU devices DRA drivers publish on nodes: how many of each
// type per node, and where each device is.
type draGPUs struct {
	perNode map[string]corev1.ResourceList
	devices map[deviceID]deviceAt
}

// newDRAGPUs indexes the node-local GPU devices of the newest generation of
// each pool (older slices are being replaced and would count devices twice).
func newDRAGPUs(slices []resourceapi.ResourceSlice) draGPUs {
	type poolID struct{ driver, pool string }
	newest := map[poolID]int64{}
	for i := range slices {
		s := &slices[i].Spec
		id := poolID{s.Driver, s.Pool.Name}
		if g, ok := newest[id]; !ok || s.Pool.Generation > g {
			newest[id] = s.Pool.Generation
		}
	}
	out := draGPUs{perNode: map[string]corev1.ResourceList{}, devices: map[deviceID]deviceAt{}}
	for i := range slices {
		s := &slices[i].Spec
		if !draGPUDrivers[s.Driver] || s.NodeName == nil || *s.NodeName == "" || s.Pool.Generation != newest[poolID{s.Driver, s.Pool.Name}] {
			continue
		}
		node := *s.NodeName
		for _, d := range s.Devices {
			typ := scheduling.DeviceTypeGPU
			if a, ok := d.Attributes["type"]; ok && a.StringValue != nil && *a.StringValue != "" {
				typ = *a.StringValue
			}
			res := draGPUResource(s.Driver, typ)
			id := deviceID{s.Driver, s.Pool.Name, d.Name}
			if _, dup := out.devices[id]; dup {
				continue
			}
			out.devices[id] = deviceAt{node: node, resource: res}
			if out.perNode[node] == nil {
				out.perNode[node] = corev1.ResourceList{}
			}
			addTo(out.perNode[node], corev1.ResourceList{res: *resource.NewQuantity(1, resource.DecimalSI)})
		}
	}
	return out
}

// claimed adds to each machine the GPU devices allocated to the claims in
// use (reserved for a pod), as requests of the claim's namespace. Admin
// access does not hold a device, so it is not counted.
func (g draGPUs) claimed(claims []resourceapi.ResourceClaim, byNode map[string]*machine) {
	for i := range claims {
		c := &claims[i]
		if c.Status.Allocation == nil || len(c.Status.ReservedFor) == 0 {
			continue
		}
		for _, r := range c.Status.Allocation.Devices.Results {
			if r.AdminAccess != nil && *r.AdminAccess {
				continue
			}
			at, ok := g.devices[deviceID{r.Driver, r.Pool, r.Device}]
			if !ok {
				continue
			}
			m := byNode[at.node]
			if m == nil {
				continue // a node Stowage does not manage
			}
			req := m.requested[c.Namespace]
			if req == nil {
				req = corev1.ResourceList{}
				m.requested[c.Namespace] = req
			}
			addTo(req, corev1.ResourceList{at.resource: *resource.NewQuantity(1, resource.DecimalSI)})
		}
	}
}
