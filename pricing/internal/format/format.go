// Package format is the on-disk shape of a built-in catalog file: the JSON the
// generator writes under pricing/data and the loader embeds. Keeping it apart
// lets the generator and the loader share one definition and one validator.
package format

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// File is one cloud region's catalog.
type File struct {
	Cloud  string   `json:"cloud"`
	Region string   `json:"region"`
	Zones  []string `json:"zones"`
	// Sources are referenced by ID from each type's price source fields, so
	// every number in the file can be traced to where it came from.
	Sources []Source `json:"sources"`
	Types   []Type   `json:"types,omitempty"`
}

// Source is the provenance of one part of the file.
type Source struct {
	ID   string `json:"id"`
	What string `json:"what"`
	From string `json:"from"`
	Date string `json:"date"` // YYYY-MM-DD
}

// Type is one instance type.
type Type struct {
	Name      string `json:"name"`
	Family    string `json:"family"`
	VCPU      int    `json:"vcpu"`
	MemoryMiB int64  `json:"memoryMiB"`
	Arch      string `json:"arch"` // amd64 or arm64
	GPU       *GPU   `json:"gpu,omitempty"`
	// MaxPods is the kubelet's max-pods for this type; 0 means the cloud's default.
	MaxPods int    `json:"maxPods,omitempty"`
	Network string `json:"network,omitempty"`
	// Volumes is how many data volumes a machine can attach through the
	// cloud's block-storage CSI driver, besides its boot disk; 0 means not
	// known here (GCP has a rule by machine type, see pricing).
	Volumes int `json:"volumes,omitempty"`
	// EFA is how many Elastic Fabric Adapter interfaces the type takes (AWS).
	EFA int `json:"efa,omitempty"`
	// Placement: machines of the type can share one tight placement domain
	// (an AWS cluster placement group).
	Placement         bool     `json:"placement,omitempty"`
	CurrentGeneration bool     `json:"currentGeneration"`
	Zones             []string `json:"zones"`
	// OnDemand and Spot are US$ per hour; Spot 0 means not sold as spot.
	OnDemand       float64 `json:"onDemand"`
	Spot           float64 `json:"spot,omitempty"`
	OnDemandSource string  `json:"onDemandSource"`
	SpotSource     string  `json:"spotSource,omitempty"`
}

// GPU describes a type's accelerators (GPUs, or AWS Neuron devices with
// manufacturer "aws").
type GPU struct {
	Manufacturer string `json:"manufacturer"` // lower case: nvidia, amd, aws, habana
	Name         string `json:"name"`         // lower case model: h100, a10g, l4
	Count        int    `json:"count"`
	MemoryMiB    int64  `json:"memoryMiB"` // per device
}

// Validate checks the file is self-consistent. file names it in errors.
func (f *File) Validate(file string) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{file}, args...)...))
	}
	if f.Cloud == "" || f.Region == "" {
		bad("cloud and region must be set")
	}
	if len(f.Zones) == 0 {
		bad("zones must not be empty")
	}
	sources := map[string]bool{}
	for i, s := range f.Sources {
		if s.ID == "" || s.What == "" || s.From == "" || !isDate(s.Date) {
			bad("sources[%d] (%q): id, what, from and a YYYY-MM-DD date are required", i, s.ID)
		}
		sources[s.ID] = true
	}
	seen := map[string]bool{}
	for i, t := range f.Types {
		where := fmt.Sprintf("types[%d] (%s)", i, t.Name)
		switch {
		case t.Name == "":
			bad("%s: name is required", where)
		case seen[t.Name]:
			bad("%s: duplicate name", where)
		}
		seen[t.Name] = true
		if t.Family == "" {
			bad("%s: family is required", where)
		}
		if t.VCPU <= 0 || t.MemoryMiB <= 0 {
			bad("%s: vcpu and memoryMiB must be positive", where)
		}
		if t.Arch != "amd64" && t.Arch != "arm64" {
			bad("%s: arch %q is not amd64 or arm64", where, t.Arch)
		}
		if g := t.GPU; g != nil && (g.Count <= 0 || g.MemoryMiB <= 0 || g.Name == "" || g.Manufacturer == "") {
			bad("%s: gpu needs manufacturer, name, and positive count and memoryMiB", where)
		}
		if t.MaxPods < 0 || t.EFA < 0 || t.Volumes < 0 {
			bad("%s: maxPods, efa and volumes must not be negative", where)
		}
		if len(t.Zones) == 0 {
			bad("%s: zones must not be empty", where)
		}
		for _, z := range t.Zones {
			if !slices.Contains(f.Zones, z) {
				bad("%s: zone %q is not one of the file's zones", where, z)
			}
		}
		if t.OnDemand <= 0 {
			bad("%s: onDemand price must be positive", where)
		}
		if !sources[t.OnDemandSource] {
			bad("%s: onDemandSource %q is not a listed source", where, t.OnDemandSource)
		}
		if t.Spot < 0 || (t.Spot != 0 && t.Spot >= t.OnDemand) {
			bad("%s: spot price %v must be below on-demand %v", where, t.Spot, t.OnDemand)
		}
		if t.Spot > 0 && !sources[t.SpotSource] {
			bad("%s: spotSource %q is not a listed source", where, t.SpotSource)
		}
	}
	return errors.Join(errs...)
}

func isDate(s string) bool {
	_, err := time.Parse(time.DateOnly, s)
	return err == nil
}
