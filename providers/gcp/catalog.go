package gcp

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// accelerator is what Stowage knows about one Compute Engine accelerator
// type: the API returns only its name, so model and memory come from here.
type accelerator struct {
	Name      string // GPU model label value: t4, l4, h100
	MemoryMiB int64
	// SKU is the Billing Catalog description stem, e.g. "Nvidia Tesla T4".
	SKU string
	// Attach lists the GPU counts an n1 machine may take, with the most
	// vCPUs allowed for each; nil for GPUs that come built into a family.
	Attach map[int]int
}

// accelerators maps accelerator type names to their facts. GPU memory is
// the device's nominal size; the sizes match pricing/data/gpus.json so the
// MIG profiles are found.
var accelerators = map[string]accelerator{
	"nvidia-tesla-t4":       {Name: "t4", MemoryMiB: 16384, SKU: "Nvidia Tesla T4", Attach: map[int]int{1: 48, 2: 48, 4: 96}},
	"nvidia-tesla-v100":     {Name: "v100", MemoryMiB: 16384, SKU: "Nvidia Tesla V100", Attach: map[int]int{1: 12, 2: 24, 4: 48, 8: 96}},
	"nvidia-tesla-p4":       {Name: "p4", MemoryMiB: 8192, SKU: "Nvidia Tesla P4", Attach: map[int]int{1: 24, 2: 48, 4: 96}},
	"nvidia-tesla-p100":     {Name: "p100", MemoryMiB: 16384, SKU: "Nvidia Tesla P100", Attach: map[int]int{1: 16, 2: 32, 4: 64}},
	"nvidia-l4":             {Name: "l4", MemoryMiB: 24576, SKU: "Nvidia L4"},
	"nvidia-tesla-a100":     {Name: "a100", MemoryMiB: 40960, SKU: "Nvidia Tesla A100"},
	"nvidia-a100-80gb":      {Name: "a100", MemoryMiB: 81920, SKU: "Nvidia Tesla A100 80GB"},
	"nvidia-h100-80gb":      {Name: "h100", MemoryMiB: 81920, SKU: "Nvidia H100 80GB"},
	"nvidia-h100-mega-80gb": {Name: "h100", MemoryMiB: 81920, SKU: "Nvidia H100 80GB Mega"},
	"nvidia-h200-141gb":     {Name: "h200", MemoryMiB: 144384, SKU: "Nvidia H200 141GB"},
	"nvidia-b200":           {Name: "b200", MemoryMiB: 183359, SKU: "Nvidia B200"},
}

// attachedName is the instance type Stowage offers for an n1 machine with
// attached GPUs: n1-standard-8-t4x1. It is a valid label value, so pools can
// select it like any other type.
func attachedName(machineType, accel string, count int) string {
	return fmt.Sprintf("%s-%sx%d", machineType, accelerators[accel].Name, count)
}

var attachedPattern = regexp.MustCompile(`^(n1-[a-z]+-[0-9]+)-([a-z0-9]+)x([0-9]+)$`)

// splitType returns the Compute Engine machine type, attached accelerator
// type and count of a Stowage instance type name.
func splitType(name string) (machineType, accel string, count int) {
	m := attachedPattern.FindStringSubmatch(name)
	if m == nil {
		return name, "", 0
	}
	for k, a := range accelerators {
		if a.Name == m[2] && a.Attach != nil {
			n, _ := strconv.Atoi(m[3])
			return m[1], k, n
		}
	}
	return name, "", 0
}

// placementFamilies are the machine families compact placement policies
// apply to (and that multi-node training needs them for).
var placementFamilies = []string{"a2", "a3", "a4"}

func familyOf(machineType string) string {
	f, _, _ := strings.Cut(machineType, "-")
	return f
}

// shape is one offered instance type as the catalog describes it.
type shape struct {
	Name        string // Stowage's name (n1-standard-8-t4x1 for attached GPUs)
	MachineType string
	Family      string
	VCPU        int
	MemoryMiB   int64
	Arch        string
	Accel       string // accelerator type, built-in or attached
	GPUs        int    // sum over the machine's accelerator entries
	Attached    bool
	Zones       []string
}

// fetchShapes lists the region's machine types and accelerator types and
// returns one shape per machine type and per allowed n1 + GPU combination,
// each with the zones that sell it.
func fetchShapes(ctx context.Context, c *Clients, project, region string) ([]shape, error) {
	byName := map[string]*shape{}
	var order []string
	it := c.MachineTypes.AggregatedList(ctx, &computepb.AggregatedListMachineTypesRequest{Project: project})
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing machine types: %w", err)
		}
		zone := strings.TrimPrefix(pair.Key, "zones/")
		if !strings.HasPrefix(zone, region+"-") {
			continue
		}
		for _, mt := range pair.Value.GetMachineTypes() {
			if mt.GetIsSharedCpu() || mt.GetDeprecated().GetState() != "" && mt.GetDeprecated().GetState() != "ACTIVE" {
				continue
			}
			s, ok := byName[mt.GetName()]
			if !ok {
				s = shapeOf(mt)
				byName[mt.GetName()] = s
				order = append(order, mt.GetName())
			}
			if !slices.Contains(s.Zones, zone) {
				s.Zones = append(s.Zones, zone)
			}
		}
	}
	accelZones := map[string][]string{}
	at := c.AcceleratorTypes.AggregatedList(ctx, &computepb.AggregatedListAcceleratorTypesRequest{Project: project})
	for {
		pair, err := at.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing accelerator types: %w", err)
		}
		zone := strings.TrimPrefix(pair.Key, "zones/")
		if !strings.HasPrefix(zone, region+"-") {
			continue
		}
		for _, a := range pair.Value.GetAcceleratorTypes() {
			accelZones[a.GetName()] = append(accelZones[a.GetName()], zone)
		}
	}
	out := make([]shape, 0, len(order))
	for _, name := range order {
		s := byName[name]
		slices.Sort(s.Zones)
		out = append(out, *s)
		if s.Family == "n1" {
			out = append(out, attachedShapes(*s, accelZones)...)
		}
	}
	return out, nil
}

func shapeOf(mt *computepb.MachineType) *shape {
	s := &shape{
		Name: mt.GetName(), MachineType: mt.GetName(), Family: familyOf(mt.GetName()),
		VCPU: int(mt.GetGuestCpus()), MemoryMiB: int64(mt.GetMemoryMb()), Arch: "amd64",
	}
	if mt.GetArchitecture() == "ARM64" {
		s.Arch = "arm64"
	}
	for _, a := range mt.GetAccelerators() {
		// Sum the counts: one machine type may list its GPUs in several entries.
		s.Accel = a.GetGuestAcceleratorType()
		s.GPUs += int(a.GetGuestAcceleratorCount())
	}
	return s
}

// attachedShapes are the GPU choices an n1 machine type takes, in the zones
// that sell both the machine and the GPU. Machines under 4 vCPUs are left
// out: too small to feed a GPU.
func attachedShapes(base shape, accelZones map[string][]string) []shape {
	if base.VCPU < 4 {
		return nil
	}
	var out []shape
	for _, accel := range slices.Sorted(func(yield func(string) bool) {
		for k := range accelerators {
			if !yield(k) {
				return
			}
		}
	}) {
		a := accelerators[accel]
		zones := slices.DeleteFunc(slices.Clone(base.Zones), func(z string) bool { return !slices.Contains(accelZones[accel], z) })
		if a.Attach == nil || len(zones) == 0 {
			continue
		}
		for _, n := range []int{1, 2, 4, 8} {
			if maxCPU, ok := a.Attach[n]; !ok || base.VCPU > maxCPU {
				continue
			}
			s := base
			s.Name = attachedName(base.MachineType, accel, n)
			s.Accel, s.GPUs, s.Attached, s.Zones = accel, n, true, zones
			out = append(out, s)
		}
	}
	return out
}

// buildInstanceTypes turns shapes into instance types without offerings.
// Shapes whose accelerator Stowage has no facts for are returned in skipped.
func buildInstanceTypes(region, date string, shapes []shape) (its []*cloudprovider.InstanceType, skipped []string, err error) {
	f := pricing.File{Cloud: Name, Region: region,
		Sources: []pricing.FileSource{{ID: "gce", What: "specs", From: "Compute Engine machineTypes.aggregatedList, acceleratorTypes.aggregatedList", Date: date}}}
	for _, s := range shapes {
		t := pricing.FileType{Name: s.Name, Family: s.Family, VCPU: s.VCPU, MemoryMiB: s.MemoryMiB, Arch: s.Arch,
			CurrentGeneration: true, Zones: s.Zones, OnDemand: 1, OnDemandSource: "gce"}
		if s.GPUs > 0 {
			a, ok := accelerators[s.Accel]
			if !ok {
				skipped = append(skipped, s.Name)
				continue
			}
			t.GPU = &pricing.FileGPU{Manufacturer: "nvidia", Name: a.Name, Count: s.GPUs, MemoryMiB: a.MemoryMiB}
		}
		f.Types = append(f.Types, t)
	}
	its, err = catalog.InstanceTypes("compute machineTypes "+region, f)
	if err != nil {
		return nil, nil, err
	}
	for _, it := range its {
		it.Placement = slices.Contains(placementFamilies, familyOf(it.Name))
	}
	return its, skipped, nil
}
