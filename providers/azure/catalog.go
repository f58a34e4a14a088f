package azure

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// noZone is the zone label AKS gives nodes in regions (or of sizes)
// without availability zones.
const noZone = "0"

// shape is one VM size as Resource SKUs describe it for the location: what
// the machine is, where it is sold, and which features it supports.
type shape struct {
	Name      string
	Family    string // stowage.dev/instance-family: the size name without its vCPU count
	SKUFamily string // Azure's quota family, e.g. standardNCADSA100v4Family
	VCPU      int
	MemoryMiB int64
	Arch      string // amd64 or arm64
	GPU       *skuGPU
	Spot      bool // LowPriorityCapable
	// DataDisks is MaxDataDiskCount: the disks the Azure Disk CSI driver
	// can attach besides the OS disk.
	DataDisks int
	Zones     []string
	// Features the node class may ask for.
	AcceleratedNetworking bool
	EncryptionAtHost      bool
	TrustedLaunch         bool
	EphemeralOSDisk       bool
	CapacityReservation   bool
}

// listShapes lists the location's VM sizes, honouring the restrictions Azure
// puts on this subscription: a size restricted in the location is dropped, a
// size restricted in some zones loses those zones. skipped names GPU sizes
// whose model is unknown and sizes without a Gen2 image.
func listShapes(ctx context.Context, api ResourceSKUsAPI, location string) (shapes []shape, skipped []string, err error) {
	pager := api.NewListPager(&armcompute.ResourceSKUsClientListOptions{Filter: strPtr("location eq '" + location + "'")})
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("listing resource SKUs in %s: %w", location, err)
		}
		for _, s := range page.Value {
			sh, ok, skip := shapeOf(s, location)
			if skip {
				skipped = append(skipped, deref(s.Name))
			}
			if ok {
				shapes = append(shapes, sh)
			}
		}
	}
	sort.Slice(shapes, func(i, j int) bool { return shapes[i].Name < shapes[j].Name })
	return shapes, skipped, nil
}

// shapeOf reads one SKU. ok is false for anything that is not a VM size
// this subscription can launch in the location; skip is true when a VM size
// is left out for a reason worth logging.
func shapeOf(s *armcompute.ResourceSKU, location string) (sh shape, ok, skip bool) {
	if s == nil || !strings.EqualFold(deref(s.ResourceType), "virtualMachines") || deref(s.Name) == "" {
		return shape{}, false, false
	}
	restrictedZones := map[string]bool{}
	for _, r := range s.Restrictions {
		if r == nil || r.Type == nil {
			continue
		}
		switch *r.Type {
		case armcompute.ResourceSKURestrictionsTypeLocation:
			if r.RestrictionInfo == nil || len(r.RestrictionInfo.Locations) == 0 || containsFold(r.RestrictionInfo.Locations, location) {
				return shape{}, false, false
			}
		case armcompute.ResourceSKURestrictionsTypeZone:
			if r.RestrictionInfo != nil {
				for _, z := range r.RestrictionInfo.Zones {
					restrictedZones[deref(z)] = true
				}
			}
		}
	}
	caps := map[string]string{}
	for _, c := range s.Capabilities {
		if c != nil && c.Name != nil && c.Value != nil {
			caps[*c.Name] = *c.Value
		}
	}
	name := *s.Name
	vcpu, _ := strconv.Atoi(caps["vCPUs"])
	memGB, _ := strconv.ParseFloat(caps["MemoryGB"], 64)
	gpus, _ := strconv.Atoi(caps["GPUs"])
	if vcpu <= 0 || memGB <= 0 {
		return shape{}, false, false
	}
	if hv := caps["HyperVGenerations"]; hv != "" && !strings.Contains(hv, "V2") {
		// AKS node images are Generation 2 only.
		return shape{}, false, true
	}
	dataDisks, _ := strconv.Atoi(caps["MaxDataDiskCount"])
	gpu, known := gpuOf(name, vcpu, gpus)
	if !known {
		return shape{}, false, true
	}
	arch := "amd64"
	if strings.EqualFold(caps["CpuArchitectureType"], "Arm64") {
		arch = "arm64"
	}
	sh = shape{
		Name: name, Family: sizeFamily(name), SKUFamily: deref(s.Family),
		VCPU: vcpu, MemoryMiB: int64(math.Round(memGB * 1024)), Arch: arch, GPU: gpu,
		Spot:                  caps["LowPriorityCapable"] == "True",
		DataDisks:             dataDisks,
		AcceleratedNetworking: caps["AcceleratedNetworkingEnabled"] == "True",
		EncryptionAtHost:      caps["EncryptionAtHostSupported"] == "True",
		TrustedLaunch:         caps["TrustedLaunchDisabled"] != "True",
		EphemeralOSDisk:       caps["EphemeralOSDiskSupported"] == "True",
		CapacityReservation:   caps["CapacityReservationSupported"] == "True",
	}
	zoned := false
	for _, li := range s.LocationInfo {
		if li == nil || !strings.EqualFold(deref(li.Location), location) {
			continue
		}
		for _, z := range li.Zones {
			zoned = true
			if z := deref(z); z != "" && !restrictedZones[z] {
				sh.Zones = append(sh.Zones, zoneLabel(location, z))
			}
		}
	}
	if !zoned {
		sh.Zones = []string{noZone}
	}
	sh.Zones = slices.Compact(slices.Sorted(slices.Values(sh.Zones)))
	return sh, len(sh.Zones) > 0, false
}

// zoneLabel is the topology.kubernetes.io/zone AKS gives a node in zone z.
func zoneLabel(location, z string) string { return strings.ToLower(location) + "-" + z }

// azureZone is the Azure zone ("1") of a zone label ("eastus-1"), or "" for
// noZone.
func azureZone(label string) string {
	if label == noZone {
		return ""
	}
	if i := strings.LastIndexByte(label, '-'); i >= 0 {
		return label[i+1:]
	}
	return label
}

// buildInstanceTypes turns shapes into instance types without offerings (the
// price book adds those), for nodes running maxPods pods.
func buildInstanceTypes(location, date string, maxPods int, shapes []shape) ([]*cloudprovider.InstanceType, error) {
	f := pricing.File{Cloud: Name, Region: strings.ToLower(location),
		// The price is a placeholder: offerings and their prices come from the price book.
		Sources: []pricing.FileSource{{ID: "skus", What: "specs", From: "Azure Resource SKUs", Date: date}}}
	for _, s := range shapes {
		f.Types = append(f.Types, pricing.FileType{Name: s.Name, Family: s.Family, VCPU: s.VCPU, MemoryMiB: s.MemoryMiB,
			Arch: s.Arch, GPU: (*pricing.FileGPU)(s.GPU), MaxPods: maxPods, Volumes: max(0, s.DataDisks), CurrentGeneration: true, Zones: s.Zones, OnDemand: 1, OnDemandSource: "skus"})
	}
	its, err := catalog.InstanceTypes("Azure Resource SKUs "+location, f)
	if err != nil {
		return nil, err
	}
	for _, it := range its {
		it.Placement = placementCapable(it.Name)
	}
	return its, nil
}

func strPtr(s string) *string { return &s }

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func containsFold(list []*string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(deref(v), s) {
			return true
		}
	}
	return false
}
