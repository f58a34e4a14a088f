// Package cost turns the cluster's running machines into dollars per hour:
// by NodePool, by capacity type, attributed to namespaces by their share of
// requested resources, and the price of GPUs nobody requests. The arithmetic
// (Attribute) is pure; the Controller keeps the stowage_cost_* gauges fresh
// and `stowage cost` prints a Report.
package cost

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// PriceModel splits one machine's hourly price into a GPU part and a
// CPU/memory part, since a cloud bill has one line per machine, not per
// resource. The CPU/memory part of a machine is valued at these reference
// rates (general-purpose on-demand prices per vCPU and per GiB), capped at the
// machine's own price; the rest of a GPU machine's price is the GPU part.
// A machine without GPUs has no GPU part: its whole price is split between CPU
// and memory in the ratio of their reference values. docs/metrics.md
// documents the model with a worked example.
type PriceModel struct {
	// CPUPerCoreHour is the reference price of one vCPU for one hour, in US dollars.
	CPUPerCoreHour float64
	// MemoryPerGiBHour is the reference price of one GiB of memory for one hour.
	MemoryPerGiBHour float64
}

// DefaultPriceModel uses the per-vCPU and per-GiB rates that reproduce
// general-purpose on-demand prices on the three clouds to within about 10%
// (e.g. AWS m7i.xlarge, 4 vCPU and 16 GiB: $0.1936 by the model, $0.2016
// in the built-in us-east-1 price book).
var DefaultPriceModel = PriceModel{CPUPerCoreHour: 0.0316, MemoryPerGiBHour: 0.0042}

// parts is one machine's price split by resource.
type parts struct {
	gpu, cpu, memory float64
}

// split divides price between GPUs, CPU and memory for a machine with the
// given capacity. hasGPU says whether any GPU-like resource is present.
func (m PriceModel) split(price float64, capacity corev1.ResourceList, hasGPU bool) parts {
	cores := capacity.Cpu().AsApproximateFloat64()
	gib := capacity.Memory().AsApproximateFloat64() / (1 << 30)
	cpuRef := cores * m.CPUPerCoreHour
	memRef := gib * m.MemoryPerGiBHour
	ref := cpuRef + memRef
	if ref <= 0 {
		if hasGPU {
			return parts{gpu: price}
		}
		// Nothing to weigh by: charge it all as CPU so it is still attributed.
		return parts{cpu: price}
	}
	nonGPU := price
	if hasGPU && ref < price {
		nonGPU = ref
	}
	return parts{
		gpu:    price - nonGPU,
		cpu:    nonGPU * cpuRef / ref,
		memory: nonGPU * memRef / ref,
	}
}

// splitAt splits price like split, but for a machine that costs less than
// its on-demand equivalent (spot, a discount) it splits the on-demand price
// and scales the parts down to price: a spot GPU machine cheaper than its
// CPU/memory reference value still pays mostly for its GPUs, as it does
// on-demand, rather than having no GPU part at all.
func (m PriceModel) splitAt(price, onDemand float64, capacity corev1.ResourceList, hasGPU bool) parts {
	if !hasGPU || price <= 0 || onDemand <= price {
		return m.split(price, capacity, hasGPU)
	}
	p := m.split(onDemand, capacity, hasGPU)
	scale := price / onDemand
	return parts{gpu: p.gpu * scale, cpu: p.cpu * scale, memory: p.memory * scale}
}

// gpuResources are the accelerator resources a machine advertises; MIG
// slices (nvidia.com/mig-<profile>) are found by prefix.
var gpuResources = map[corev1.ResourceName]bool{
	v1.ResourceNvidiaGPU: true,
	v1.ResourceAMDGPU:    true,
	v1.ResourceAWSNeuron: true,
	"habana.ai/gaudi":    true,
}

func isGPUResource(name corev1.ResourceName) bool {
	return gpuResources[name] || strings.HasPrefix(string(name), v1.ResourceMIGPrefix) || isDRAGPUResource(name)
}
