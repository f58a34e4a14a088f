package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/stowage-k8s/stowage/pricing/internal/format"
)

const (
	gcpPricesFrom = "github.com/cloudpilot-ai/karpenter-provider-gcp, pkg/providers/pricing/initial-prices.json at commit 373e2baa9665c864d29ae686dfadbc0dd97d8bb8 (prices[\"us-central1\"], from the Cloud Billing Catalog API)"
	gcpPricesDate = "2026-08-03"
)

var gcpZonesAll = []string{"us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"}

// gcpFamilyZones is where each family is sold in us-central1. An ASSUMPTION
// from Google's public regions/zones and GPU-locations pages (mid-2026),
// except a2-highgpu, cross-checked against skypilot-org/skypilot-catalog
// catalogs/v8/gcp/vms.csv. Live providers replace it with AggregatedList.
var gcpFamilyZones = map[string][]string{
	"m3":          {"us-central1-a", "us-central1-b", "us-central1-c"},
	"g2":          {"us-central1-a", "us-central1-b", "us-central1-c"},
	"a2-ultragpu": {"us-central1-a", "us-central1-c"},
	"a3":          {"us-central1-a", "us-central1-b", "us-central1-c"},
}

// gcpMemPerVCPU is GiB per vCPU by family and shape, from the machine-family docs.
var gcpMemPerVCPU = map[string]map[string]int64{
	"e2":  {"standard": 4, "highmem": 8, "highcpu": 1},
	"n2":  {"standard": 4, "highmem": 8, "highcpu": 1},
	"n2d": {"standard": 4, "highmem": 8, "highcpu": 1},
	"c3":  {"standard": 4, "highmem": 8, "highcpu": 2},
	"c2d": {"standard": 4, "highmem": 8, "highcpu": 2},
}

type gcpShape struct {
	vcpu   int
	memGiB int64
	gpus   int
}

// Fixed shapes that follow no per-vCPU rule.
var gcpFixed = map[string]gcpShape{
	"m3-megamem-64":   {64, 976, 0},
	"m3-megamem-128":  {128, 1952, 0},
	"m3-ultramem-32":  {32, 976, 0},
	"m3-ultramem-64":  {64, 1952, 0},
	"m3-ultramem-128": {128, 3904, 0},
	"g2-standard-4":   {4, 16, 1},
	"g2-standard-8":   {8, 32, 1},
	"g2-standard-12":  {12, 48, 1},
	"g2-standard-16":  {16, 64, 1},
	"g2-standard-24":  {24, 96, 2},
	"g2-standard-32":  {32, 128, 1},
	"g2-standard-48":  {48, 192, 4},
	"g2-standard-96":  {96, 384, 8},
	"a2-megagpu-16g":  {96, 1360, 16},
}

// Per-GPU shapes of the accelerator-optimized families ("a3-highgpu-Ng").
var gcpPerGPU = map[string]struct {
	vcpu   int
	memGiB int64
	gpu    format.GPU
}{
	"a2-highgpu":  {12, 85, format.GPU{Manufacturer: "nvidia", Name: "a100", MemoryMiB: 40 * 1024}},
	"a2-ultragpu": {12, 170, format.GPU{Manufacturer: "nvidia", Name: "a100", MemoryMiB: 80 * 1024}},
	"a3-highgpu":  {26, 234, format.GPU{Manufacturer: "nvidia", Name: "h100", MemoryMiB: 80 * 1024}},
}

var gcpL4 = format.GPU{Manufacturer: "nvidia", Name: "l4", MemoryMiB: 24 * 1024}

// gcpNote are cloud-apis.md's representative (on-demand, spot) prices.
var gcpNote = map[string][2]float64{
	"g2-standard-4": {0.707, 0.397}, "g2-standard-48": {4.002, 2.250}, "g2-standard-96": {8.003, 4.499},
	"a2-highgpu-1g": {3.673, 1.928}, "a2-highgpu-8g": {29.387, 15.424}, "a2-ultragpu-8g": {40.550, 22.076},
	"a3-highgpu-1g": {11.061, 6.326}, "a3-highgpu-8g": {88.49, 50.61},
}

func buildGCP(o options) (*format.File, error) {
	var in struct {
		Prices map[string]struct {
			OnDemand map[string]float64 `json:"on_demand"`
			Spot     map[string]float64 `json:"spot"`
		} `json:"prices"`
	}
	if err := readJSON(o.gcpPrices, &in); err != nil {
		return nil, err
	}
	region, ok := in.Prices["us-central1"]
	if !ok {
		return nil, fmt.Errorf("%s: no us-central1 prices", o.gcpPrices)
	}
	f := &format.File{
		Cloud:  "gcp",
		Region: "us-central1",
		Zones:  gcpZonesAll,
		Sources: []format.Source{
			{ID: "gcp-specs", What: "specs", From: "Google Cloud machine-family documentation (general-purpose, compute-, memory- and accelerator-optimized: vCPUs, memory, attached GPUs per machine type)", Date: o.today},
			{ID: "gcp-zones", What: "zones, ASSUMPTION", From: "Google Cloud regions/zones and GPU locations pages as of mid-2026: general-purpose families in all four zones; m3, g2, a3 in a-c; a2-ultragpu in a and c", Date: o.today},
			{ID: "cloudpilot-gcp", What: "on-demand and spot prices", From: gcpPricesFrom, Date: gcpPricesDate},
			{ID: "cloud-apis-note", What: "on-demand and spot prices of the representative GPU types", From: cloudNotesFrom, Date: cloudNotesDate},
		},
	}
	for name, od := range region.OnDemand {
		t, ok := gcpType(name)
		if !ok {
			continue
		}
		t.OnDemand, t.OnDemandSource = round6(od), "cloudpilot-gcp"
		if sp := region.Spot[name]; sp > 0 && sp < od {
			t.Spot, t.SpotSource = round6(sp), "cloudpilot-gcp"
		}
		if p, ok := gcpNote[name]; ok {
			t.OnDemand, t.Spot = p[0], p[1]
			t.OnDemandSource, t.SpotSource = "cloud-apis-note", "cloud-apis-note"
		}
		f.Types = append(f.Types, t)
	}
	addGCPGPUChoices(f)
	return f, nil
}

// gcpType derives a machine type's shape from its name, or false for types
// outside the catalog's families (and shared-core or bare-metal types).
func gcpType(name string) (format.Type, bool) {
	parts := strings.Split(name, "-")
	if len(parts) < 3 {
		return format.Type{}, false // e2-micro, e2-small, e2-medium: shared core
	}
	family, shape := parts[0], parts[1]
	t := format.Type{Name: name, Family: family, Arch: "amd64", CurrentGeneration: true, Zones: gcpZonesAll}
	if z, ok := gcpFamilyZones[family]; ok {
		t.Zones = z
	}
	if z, ok := gcpFamilyZones[family+"-"+shape]; ok {
		t.Zones = z
	}
	if s, ok := gcpFixed[name]; ok {
		t.VCPU, t.MemoryMiB = s.vcpu, s.memGiB*1024
		if s.gpus > 0 {
			g := gcpL4
			if family == "a2" {
				g = gcpPerGPU["a2-highgpu"].gpu
			}
			g.Count = s.gpus
			t.GPU = &g
		}
		return t, true
	}
	if p, ok := gcpPerGPU[family+"-"+shape]; ok && len(parts) == 3 && strings.HasSuffix(parts[2], "g") {
		n, err := strconv.Atoi(strings.TrimSuffix(parts[2], "g"))
		if err != nil || n <= 0 {
			return format.Type{}, false
		}
		g := p.gpu
		g.Count = n
		t.VCPU, t.MemoryMiB, t.GPU = p.vcpu*n, p.memGiB*1024*int64(n), &g
		return t, true
	}
	perVCPU, ok := gcpMemPerVCPU[family][shape]
	if !ok {
		return format.Type{}, false
	}
	if len(parts) == 4 && parts[3] != "lssd" || len(parts) > 4 {
		return format.Type{}, false // -metal and other variants
	}
	n, err := strconv.Atoi(parts[2])
	if err != nil || n <= 0 {
		return format.Type{}, false
	}
	t.VCPU, t.MemoryMiB = n, perVCPU*int64(n)*1024
	return t, true
}
