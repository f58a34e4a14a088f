package main

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/stowage-k8s/stowage/pricing/internal/format"
)

const (
	azurePricesFrom = "github.com/Azure/karpenter-provider-azure, pkg/providers/pricing/zz_generated.pricing.go at commit 2b431da153a6a92b705c18046512c60b1631b682 (initialOnDemandPrices[\"eastus\"], from the Azure Retail Prices API)"
	azurePricesDate = "2026-06-18"
	// azureSpotRatio is cloud-apis.md's estimate of eastus spot as a share of on-demand.
	azureSpotRatio = 0.25
)

var azureZonesAll = []string{"eastus-1", "eastus-2", "eastus-3"}

type azureSize struct {
	vcpu   int
	memGiB int64
	gpus   int
	gpu    string // key into azureGPUs
	// gpuMiB overrides the model's memory for a size that gets a slice of
	// one GPU (NVadsA10_v5 below 36 vCPUs).
	gpuMiB int64
}

// GPU models per size name, from cloud-apis.md's table (ResourceSKUs do not
// report them).
var azureGPUs = map[string]format.GPU{
	"t4":       {Manufacturer: "nvidia", Name: "t4", MemoryMiB: 16 * 1024},
	"a10":      {Manufacturer: "nvidia", Name: "a10", MemoryMiB: 24 * 1024},
	"a100-40":  {Manufacturer: "nvidia", Name: "a100", MemoryMiB: 40 * 1024},
	"a100-80":  {Manufacturer: "nvidia", Name: "a100", MemoryMiB: 80 * 1024},
	"h100":     {Manufacturer: "nvidia", Name: "h100", MemoryMiB: 80 * 1024},
	"h100-nvl": {Manufacturer: "nvidia", Name: "h100-nvl", MemoryMiB: 94 * 1024},
	"h200":     {Manufacturer: "nvidia", Name: "h200", MemoryMiB: 141 * 1024},
}

// azureFamily is a size's name without its vCPU count (Standard_NC24ads_A100_v4
// is NCads_A100_v4), the same rule the Azure provider applies to live
// Resource SKUs, so NodePools select the same family either way.
func azureFamily(size string) string {
	s := strings.TrimPrefix(size, "Standard_")
	i := strings.IndexFunc(s, func(r rune) bool { return r >= '0' && r <= '9' })
	if i < 0 {
		return s
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	return s[:i] + s[j:]
}

// azureSizes are the sizes in the catalog, from the Azure VM size pages.
// Fractional-GPU NVadsA10_v5 sizes (1/6 to 1/2 of an A10) are one device with
// a slice of the memory; pricing labels them stowage.dev/gpu-fractional.
var azureSizes = func() map[string]azureSize {
	out := map[string]azureSize{}
	for _, n := range []int{2, 4, 8, 16, 32, 48, 64, 96} {
		out[fmt.Sprintf("Standard_D%ds_v5", n)] = azureSize{vcpu: n, memGiB: 4 * int64(n)}
		out[fmt.Sprintf("Standard_D%das_v5", n)] = azureSize{vcpu: n, memGiB: 4 * int64(n)}
	}
	for _, n := range []int{2, 4, 8, 16, 32, 48, 64, 72} {
		out[fmt.Sprintf("Standard_F%ds_v2", n)] = azureSize{vcpu: n, memGiB: 2 * int64(n)}
	}
	for _, n := range []int{2, 4, 8, 16, 20, 32, 48, 64} {
		out[fmt.Sprintf("Standard_E%ds_v5", n)] = azureSize{vcpu: n, memGiB: 8 * int64(n)}
	}
	out["Standard_E96s_v5"] = azureSize{vcpu: 96, memGiB: 672}
	for name, s := range map[string]azureSize{
		"Standard_NC4as_T4_v3":      {4, 28, 1, "t4", 0},
		"Standard_NC8as_T4_v3":      {8, 56, 1, "t4", 0},
		"Standard_NC16as_T4_v3":     {16, 110, 1, "t4", 0},
		"Standard_NC64as_T4_v3":     {64, 440, 4, "t4", 0},
		"Standard_NV6ads_A10_v5":    {6, 55, 1, "a10", 4 * 1024},
		"Standard_NV12ads_A10_v5":   {12, 110, 1, "a10", 8 * 1024},
		"Standard_NV18ads_A10_v5":   {18, 220, 1, "a10", 12 * 1024},
		"Standard_NV36ads_A10_v5":   {36, 440, 1, "a10", 0},
		"Standard_NV36adms_A10_v5":  {36, 880, 1, "a10", 0},
		"Standard_NV72ads_A10_v5":   {72, 880, 2, "a10", 0},
		"Standard_NC24ads_A100_v4":  {24, 220, 1, "a100-80", 0},
		"Standard_NC48ads_A100_v4":  {48, 440, 2, "a100-80", 0},
		"Standard_NC96ads_A100_v4":  {96, 880, 4, "a100-80", 0},
		"Standard_ND96asr_v4":       {96, 900, 8, "a100-40", 0},
		"Standard_ND96amsr_A100_v4": {96, 1900, 8, "a100-80", 0},
		"Standard_ND96isr_H100_v5":  {96, 1900, 8, "h100", 0},
		"Standard_ND96isr_H200_v5":  {96, 1850, 8, "h200", 0},
		"Standard_NC40ads_H100_v5":  {40, 320, 1, "h100-nvl", 0},
		"Standard_NC80adis_H100_v5": {80, 640, 2, "h100-nvl", 0},
	} {
		out[name] = s
	}
	return out
}()

// azureFamilyZones: ASSUMPTION from Azure's products-by-region page (mid-2026);
// CPU families are in all three eastus zones.
var azureFamilyZones = map[string][]string{
	"NDasr_v4":       {"eastus-1", "eastus-2"},
	"NDamsr_A100_v4": {"eastus-1", "eastus-2"},
	"NDisr_H100_v5":  {"eastus-1", "eastus-2"},
	"NDisr_H200_v5":  {"eastus-1", "eastus-2"},
	"NCads_H100_v5":  {"eastus-2", "eastus-3"},
	"NCadis_H100_v5": {"eastus-2", "eastus-3"},
}

// azureNote are cloud-apis.md's representative eastus on-demand prices, and
// the one spot price it reports.
var (
	azureNoteOnDemand = map[string]float64{
		"Standard_NC4as_T4_v3": 0.526, "Standard_NC64as_T4_v3": 4.352, "Standard_NV36ads_A10_v5": 3.20,
		"Standard_NC24ads_A100_v4": 3.673, "Standard_NC96ads_A100_v4": 14.692, "Standard_ND96asr_v4": 27.197,
		"Standard_ND96amsr_A100_v4": 32.77, "Standard_NC40ads_H100_v5": 6.98, "Standard_ND96isr_H100_v5": 98.32,
	}
	azureNoteSpot = map[string]float64{"Standard_NC24ads_A100_v4": 0.73}
)

// azureLaterPrices are eastus prices of sizes the pinned karpenter-azure file
// predates, from a later commit of the same generated file.
var azureLaterPrices = map[string]float64{"Standard_ND96isr_H200_v5": 84.8}

const (
	azureLaterPricesFrom = "github.com/Azure/karpenter-provider-azure, pkg/providers/pricing/zz_generated.pricing.go at commit 352646f599290c3a6d2f9710fb535a7b288f88ed (initialOnDemandPrices[\"eastus\"], from the Azure Retail Prices API)"
	azureLaterPricesDate = "2026-06-18"
)

func buildAzure(o options) (*format.File, error) {
	prices, err := readAzurePrices(o.azurePrices)
	if err != nil {
		return nil, err
	}
	f := &format.File{
		Cloud:  "azure",
		Region: "eastus",
		Zones:  azureZonesAll,
		Sources: []format.Source{
			{ID: "azure-specs", What: "specs", From: "Microsoft Learn Azure VM size pages for Dsv5, Dasv5, Fsv2, Esv5, NCasT4_v3, NVadsA10_v5 (NV6, NV12 and NV18 get 1/6, 1/3 and 1/2 of an A10), NC_A100_v4, ND_A100_v4, NDm_A100_v4, ND_H100_v5, ND_H200_v5, NC_H100_v5; GPU models from cloud-apis.md; families are the size name without its vCPU count", Date: o.today},
			{ID: "azure-zones", What: "zones, ASSUMPTION", From: "Azure products-by-region as of mid-2026: CPU and T4/A10/A100 PCIe sizes in all three eastus zones, ND A100/H100/H200 in zones 1-2, NC H100 in zones 2-3", Date: o.today},
			{ID: "karpenter-azure", What: "on-demand prices", From: azurePricesFrom, Date: azurePricesDate},
			{ID: "karpenter-azure-later", What: "on-demand prices of sizes added after the pinned commit (ND96isr_H200_v5)", From: azureLaterPricesFrom, Date: azureLaterPricesDate},
			{ID: "cloud-apis-note", What: "on-demand prices of the representative GPU sizes, and NC24ads_A100_v4 spot", From: cloudNotesFrom, Date: cloudNotesDate},
			{ID: "estimate-family-rate", What: "on-demand prices, ESTIMATE", From: "family median price per vCPU x vCPUs, for sizes whose karpenter-azure price was out of line with the rest of the family (more than 1.5x off the median per vCPU)", Date: o.today},
			{ID: "estimate-spot-ratio", What: "spot prices, ESTIMATE", From: fmt.Sprintf("on-demand x %.2f (cloud-apis.md: Azure eastus spot is about a quarter of on-demand)", azureSpotRatio), Date: o.today},
		},
	}
	medians := azureFamilyMedians(prices)
	for name, s := range azureSizes {
		family := azureFamily(name)
		od, ok := prices[name]
		source := "karpenter-azure"
		if !ok {
			if od, ok = azureLaterPrices[name]; !ok {
				return nil, fmt.Errorf("%s: no eastus price for %s", o.azurePrices, name)
			}
			source = "karpenter-azure-later"
		}
		t := format.Type{
			Name: name, Family: family, VCPU: s.vcpu, MemoryMiB: s.memGiB * 1024, Arch: "amd64",
			CurrentGeneration: true, Zones: azureZonesAll, OnDemand: od, OnDemandSource: source,
		}
		if z, ok := azureFamilyZones[family]; ok {
			t.Zones = z
		}
		if s.gpus > 0 {
			g := azureGPUs[s.gpu]
			g.Count = s.gpus
			if s.gpuMiB > 0 {
				g.MemoryMiB = s.gpuMiB
			}
			t.GPU = &g
		} else if m := medians[family]; od/float64(s.vcpu) > 1.5*m || od/float64(s.vcpu) < m/1.5 {
			fmt.Fprintf(os.Stderr, "azure: %s price %.4f is out of line with %s (%.4f/vCPU); estimating\n", name, od, family, m)
			t.OnDemand, t.OnDemandSource = round6(m*float64(s.vcpu)), "estimate-family-rate"
		}
		if p, ok := azureNoteOnDemand[name]; ok {
			t.OnDemand, t.OnDemandSource = p, "cloud-apis-note"
		}
		t.Spot, t.SpotSource = round6(t.OnDemand*azureSpotRatio), "estimate-spot-ratio"
		if p, ok := azureNoteSpot[name]; ok {
			t.Spot, t.SpotSource = p, "cloud-apis-note"
		}
		f.Types = append(f.Types, t)
	}
	sort.Slice(f.Types, func(i, j int) bool { return f.Types[i].Name < f.Types[j].Name })
	return f, nil
}

// azureFamilyMedians is each CPU family's median on-demand price per vCPU.
func azureFamilyMedians(prices map[string]float64) map[string]float64 {
	rates := map[string][]float64{}
	for name, s := range azureSizes {
		if p, ok := prices[name]; ok && s.gpus == 0 {
			rates[azureFamily(name)] = append(rates[azureFamily(name)], p/float64(s.vcpu))
		}
	}
	out := map[string]float64{}
	for family, r := range rates {
		slices.Sort(r)
		out[family] = r[len(r)/2]
	}
	return out
}

// readAzurePrices pulls the eastus map out of the Azure provider's generated
// Go file, read as text.
func readAzurePrices(path string) (map[string]float64, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := string(src)
	start := strings.Index(s, `initialOnDemandPrices["eastus"] = map[string]float64{`)
	if start < 0 {
		return nil, fmt.Errorf("%s: no eastus block", path)
	}
	end := strings.Index(s[start:], "\n\t}")
	if end < 0 {
		return nil, fmt.Errorf("%s: eastus block not closed", path)
	}
	out := map[string]float64{}
	for _, m := range regexp.MustCompile(`"(Standard_[A-Za-z0-9_]+)":\s+([0-9.]+)`).FindAllStringSubmatch(s[start:start+end], -1) {
		p, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: price of %s: %w", path, m[1], err)
		}
		out[m[1]] = p
	}
	return out, nil
}
