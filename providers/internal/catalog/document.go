package catalog

import (
	"encoding/json"
	"maps"
	"slices"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// Doc mirrors the file format pricing.Parse reads (pricing/internal/format,
// which providers cannot import). Building live instance types through
// pricing.Parse gives them exactly the labels, capacity, overhead and GPU
// facts the built-in catalog has; Parse rejects unknown fields, so a format
// change fails loudly in tests.
type Doc struct {
	Cloud   string      `json:"cloud"`
	Region  string      `json:"region"`
	Zones   []string    `json:"zones"`
	Sources []DocSource `json:"sources"`
	Types   []DocType   `json:"types"`
}

// DocSource is where one part of a Doc came from.
type DocSource struct {
	ID   string `json:"id"`
	What string `json:"what"`
	From string `json:"from"`
	Date string `json:"date"`
}

// DocType is one instance type of a Doc.
type DocType struct {
	Name              string   `json:"name"`
	Family            string   `json:"family"`
	VCPU              int      `json:"vcpu"`
	MemoryMiB         int64    `json:"memoryMiB"`
	Arch              string   `json:"arch"`
	GPU               *DocGPU  `json:"gpu,omitempty"`
	MaxPods           int      `json:"maxPods,omitempty"`
	Volumes           int      `json:"volumes,omitempty"`
	CurrentGeneration bool     `json:"currentGeneration"`
	Zones             []string `json:"zones"`
	OnDemand          float64  `json:"onDemand"`
	OnDemandSource    string   `json:"onDemandSource"`
}

// DocGPU is a type's accelerators, following pricing's conventions:
// lower-case manufacturer and model, memory per device.
type DocGPU struct {
	Manufacturer string `json:"manufacturer"`
	Name         string `json:"name"`
	Count        int    `json:"count"`
	MemoryMiB    int64  `json:"memoryMiB"`
}

// InstanceTypes parses d as pricing.Parse parses a built-in catalog (source
// names it in errors), with Zones set to the types' zones, and returns the
// types without offerings: the provider's price book adds those. A Doc
// without types gives none.
func (d Doc) InstanceTypes(source string) ([]*cloudprovider.InstanceType, error) {
	if len(d.Types) == 0 {
		return nil, nil
	}
	zones := map[string]bool{}
	for _, t := range d.Types {
		for _, z := range t.Zones {
			zones[z] = true
		}
	}
	d.Zones = slices.Sorted(maps.Keys(zones))
	data, err := json.Marshal(d)
	if err != nil {
		return nil, err
	}
	c, err := pricing.Parse(source, data)
	if err != nil {
		return nil, err
	}
	for _, it := range c.InstanceTypes {
		it.Offerings = nil
	}
	return c.InstanceTypes, nil
}
