package main

import (
	"fmt"
	"slices"
	"sort"

	"github.com/stowage-k8s/stowage/pricing/internal/format"
)

// Sources of the GCP GPU choices the upstream price file lacks.
const (
	gcpGPUDate      = "2026-12-04"
	gcpGPURatesFrom = "Google Cloud \"VM instance pricing\" (N1 predefined vCPU 0.031611 and memory 0.004237 US$/h; Spot 0.006655 and 0.000892) " +
		"and \"GPU pricing\" (T4 0.35, V100 2.48, P4 0.60 US$/GPU-hour; Spot 0.14, 0.992, 0.24) for us-central1, as published in 2025-2026; " +
		"ASSUMPTION: transcribed by hand, not fetched by a tool. Machine price = vCPUs x vCPU rate + GiB x memory rate + GPUs x GPU rate"
	gcpGPUZonesFrom = "Google Cloud \"GPU regions and zones\" page as of 2026: n1 in all four zones, T4 in a, b, c, f; V100 in a, b, c; P4 in a, c; " +
		"A3 Mega in a, c; A3 Ultra and A4 in b. ASSUMPTION: live providers read acceleratorTypes.aggregatedList"
	gcpBigGPUFrom = "ESTIMATE: on-demand prices of a3-megagpu-8g (8 x H100 Mega), a3-ultragpu-8g (8 x H200) and a4-highgpu-8g (8 x B200) " +
		"from Google Cloud's accelerator-optimized pricing page and launch announcements (about 11.55, 10.60 and 13.29 US$ per GPU-hour); " +
		"not verified. These sell mainly through reservations and Flex-start, so no spot price is given"
)

// n1 shapes that take attached GPUs: vCPUs -> GiB of memory.
var gcpN1 = map[string]map[int]int64{
	"standard": {4: 15, 8: 30, 16: 60, 32: 120, 64: 240, 96: 360},
	"highmem":  {4: 26, 8: 52, 16: 104, 32: 208, 64: 416, 96: 624},
}

type gcpAttach struct {
	accel, name  string
	memMiB       int64
	onDemand     float64
	spot         float64
	zones        []string
	maxVCPUByGPU map[int]int
}

// gcpAttachable are the GPUs Compute Engine attaches to n1 machines, with
// the most vCPUs allowed per GPU count (GPU documentation, "GPU models").
var gcpAttachable = []gcpAttach{
	{"nvidia-tesla-t4", "t4", 16384, 0.35, 0.14, []string{"us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"}, map[int]int{1: 48, 2: 48, 4: 96}},
	{"nvidia-tesla-v100", "v100", 16384, 2.48, 0.992, []string{"us-central1-a", "us-central1-b", "us-central1-c"}, map[int]int{1: 12, 2: 24, 4: 48, 8: 96}},
	{"nvidia-tesla-p4", "p4", 8192, 0.60, 0.24, []string{"us-central1-a", "us-central1-c"}, map[int]int{1: 24, 2: 48, 4: 96}},
}

const (
	n1VCPU, n1RAM         = 0.031611, 0.004237
	n1SpotVCPU, n1SpotRAM = 0.006655, 0.000892
)

// addGCPGPUChoices adds n1 machines, n1 machines with attached GPUs (named
// like the provider names them: n1-standard-8-t4x1) and the A3 Mega, A3
// Ultra and A4 machines, replacing rows of the same name.
func addGCPGPUChoices(f *format.File) {
	f.Sources = slices.DeleteFunc(f.Sources, func(s format.Source) bool {
		return s.ID == "gcp-gpu-rates" || s.ID == "gcp-gpu-zones" || s.ID == "gcp-big-gpu-estimate"
	})
	f.Sources = append(f.Sources,
		format.Source{ID: "gcp-gpu-rates", What: "n1 and attached-GPU on-demand and spot prices", From: gcpGPURatesFrom, Date: gcpGPUDate},
		format.Source{ID: "gcp-gpu-zones", What: "zones of n1 GPUs, A3 Mega, A3 Ultra and A4, ASSUMPTION", From: gcpGPUZonesFrom, Date: gcpGPUDate},
		format.Source{ID: "gcp-big-gpu-estimate", What: "on-demand prices of a3-megagpu-8g, a3-ultragpu-8g, a4-highgpu-8g, ESTIMATE", From: gcpBigGPUFrom, Date: gcpGPUDate},
	)
	var add []format.Type
	for _, shapeName := range []string{"standard", "highmem"} {
		for vcpu, gib := range gcpN1[shapeName] {
			base := format.Type{Name: fmt.Sprintf("n1-%s-%d", shapeName, vcpu), Family: "n1", VCPU: vcpu, MemoryMiB: gib * 1024, Arch: "amd64",
				CurrentGeneration: true, Zones: gcpZonesAll, OnDemandSource: "gcp-gpu-rates", SpotSource: "gcp-gpu-rates"}
			base.OnDemand = round6(float64(vcpu)*n1VCPU + float64(gib)*n1RAM)
			base.Spot = round6(float64(vcpu)*n1SpotVCPU + float64(gib)*n1SpotRAM)
			add = append(add, base)
			for _, a := range gcpAttachable {
				for _, n := range []int{1, 2, 4, 8} {
					if maxCPU, ok := a.maxVCPUByGPU[n]; !ok || vcpu > maxCPU {
						continue
					}
					t := base
					t.Name = fmt.Sprintf("%s-%sx%d", base.Name, a.name, n)
					t.GPU = &format.GPU{Manufacturer: "nvidia", Name: a.name, Count: n, MemoryMiB: a.memMiB}
					t.Zones = a.zones
					t.OnDemand = round6(base.OnDemand + float64(n)*a.onDemand)
					t.Spot = round6(base.Spot + float64(n)*a.spot)
					add = append(add, t)
				}
			}
		}
	}
	big := func(name string, vcpu int, gib int64, gpu string, mem int64, od float64, zones ...string) format.Type {
		return format.Type{Name: name, Family: name[:2], VCPU: vcpu, MemoryMiB: gib * 1024, Arch: "amd64", CurrentGeneration: true,
			GPU: &format.GPU{Manufacturer: "nvidia", Name: gpu, Count: 8, MemoryMiB: mem}, Zones: zones, OnDemand: od, OnDemandSource: "gcp-big-gpu-estimate"}
	}
	add = append(add,
		big("a3-megagpu-8g", 208, 1872, "h100", 81920, 92.40, "us-central1-a", "us-central1-c"),
		big("a3-ultragpu-8g", 224, 2952, "h200", 144384, 84.80, "us-central1-b"),
		big("a4-highgpu-8g", 224, 3968, "b200", 183359, 106.32, "us-central1-b"),
	)
	names := map[string]bool{}
	for _, t := range add {
		names[t.Name] = true
	}
	f.Types = append(slices.DeleteFunc(f.Types, func(t format.Type) bool { return names[t.Name] }), add...)
	sort.Slice(f.Types, func(i, j int) bool { return f.Types[i].Name < f.Types[j].Name })
}
