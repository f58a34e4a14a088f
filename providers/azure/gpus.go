package azure

import (
	"regexp"
	"strings"
)

// Resource SKUs report how many GPUs a size has but not which model or how
// much memory, so both are read off the size name, as Azure's own size pages
// name them.
type gpuRule struct {
	re        *regexp.Regexp
	name      string // the stowage.dev/gpu-name label
	memoryMiB int64  // per whole GPU
	// wholeAtVCPU is the vCPU count of a family's smallest whole-GPU size;
	// smaller sizes get a slice of one GPU (vCPUs / wholeAtVCPU of it).
	wholeAtVCPU int
}

var gpuRules = []gpuRule{
	{re: regexp.MustCompile(`^Standard_NC\d+as_T4_v3$`), name: "t4", memoryMiB: 16 << 10},
	{re: regexp.MustCompile(`^Standard_NV\d+adm?s_A10_v5$`), name: "a10", memoryMiB: 24 << 10, wholeAtVCPU: 36},
	{re: regexp.MustCompile(`^Standard_NC\d+ads_A100_v4$`), name: "a100", memoryMiB: 80 << 10},
	{re: regexp.MustCompile(`^Standard_ND96asr_v4$`), name: "a100", memoryMiB: 40 << 10},
	{re: regexp.MustCompile(`^Standard_ND\d+amsr_A100_v4$`), name: "a100", memoryMiB: 80 << 10},
	{re: regexp.MustCompile(`^Standard_NC\d+adi?s_H100_v5$`), name: "h100-nvl", memoryMiB: 94 << 10},
	{re: regexp.MustCompile(`^Standard_ND\d+isr_H100_v5$`), name: "h100", memoryMiB: 80 << 10},
	{re: regexp.MustCompile(`^Standard_ND\d+isr_H200_v5$`), name: "h200", memoryMiB: 141 << 10},
	{re: regexp.MustCompile(`^Standard_NC\d+s_v3$`), name: "v100", memoryMiB: 16 << 10},
	{re: regexp.MustCompile(`^Standard_ND\d+rs_v2$`), name: "v100", memoryMiB: 32 << 10},
}

// skuGPU is a size's accelerators as the catalog carries them.
type skuGPU struct {
	Manufacturer string `json:"manufacturer"`
	Name         string `json:"name"`
	Count        int    `json:"count"`
	MemoryMiB    int64  `json:"memoryMiB"`
}

// gpuOf returns the GPUs of a size, or nil and known=false for a GPU size
// whose model Stowage does not know (such sizes are left out of the catalog
// rather than offered with wrong labels). skuGPUs is the SKU's GPUs
// capability; fractional sizes may report 0 or 1.
func gpuOf(size string, vcpu, skuGPUs int) (g *skuGPU, known bool) {
	for _, r := range gpuRules {
		if !r.re.MatchString(size) {
			continue
		}
		if r.wholeAtVCPU > 0 && vcpu < r.wholeAtVCPU {
			// A slice of one GPU: the node sees one device with part of the memory.
			return &skuGPU{Manufacturer: "nvidia", Name: r.name, Count: 1, MemoryMiB: r.memoryMiB * int64(vcpu) / int64(r.wholeAtVCPU)}, true
		}
		return &skuGPU{Manufacturer: "nvidia", Name: r.name, Count: max(skuGPUs, 1), MemoryMiB: r.memoryMiB}, true
	}
	return nil, skuGPUs == 0
}

// placementCapable reports sizes offered into a proximity placement group for
// multi-node training: the NC and ND GPU series.
func placementCapable(size string) bool {
	s := strings.TrimPrefix(size, "Standard_")
	return strings.HasPrefix(s, "NC") || strings.HasPrefix(s, "ND")
}

// sizeFamily is a size's name without its vCPU count: Standard_NC24ads_A100_v4
// is NCads_A100_v4. It is the stowage.dev/instance-family label.
func sizeFamily(size string) string {
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
