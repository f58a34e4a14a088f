package pricing

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// GPUModel is what the built-in facts table knows about one accelerator model.
type GPUModel struct {
	Manufacturer string // lower case: nvidia, amd, aws, habana
	Name         string // lower case, as in the stowage.dev/gpu-name label
	MemoryMiB    int64  // nominal memory per device
	// MIGProfiles maps each MIG profile to how many instances of it one GPU
	// splits into; nil when the model has no MIG.
	MIGProfiles map[string]int
	// ProductName, Architecture and ComputeCapability are what the
	// vendor's DRA driver publishes about a device (NVIDIA only so far):
	// e.g. "NVIDIA L40S", "Ada Lovelace", "8.9".
	ProductName       string
	Architecture      string
	ComputeCapability string
}

// ResourceHabanaGaudi is the device plugin resource of Habana Gaudi accelerators.
const ResourceHabanaGaudi corev1.ResourceName = "habana.ai/gaudi"

// GPUResourceName is the extended resource a manufacturer's device plugin
// advertises, e.g. nvidia.com/gpu.
func GPUResourceName(manufacturer string) (corev1.ResourceName, bool) {
	switch manufacturer {
	case "nvidia":
		return v1.ResourceNvidiaGPU, true
	case "amd":
		return v1.ResourceAMDGPU, true
	case "aws":
		return v1.ResourceAWSNeuron, true
	case "habana":
		return ResourceHabanaGaudi, true
	}
	return "", false
}

// GPUInfo looks up a model by its label name ("a100"). Models sold with
// several memory sizes resolve to the one closest to memoryMiB; memoryMiB <= 0
// picks the smallest. The result is a copy the caller may modify.
func GPUInfo(name string, memoryMiB int64) (GPUModel, bool) {
	models, err := gpuFacts()
	if err != nil {
		return GPUModel{}, false
	}
	var best *GPUModel
	for i := range models {
		m := &models[i]
		if m.Name != name {
			continue
		}
		if best == nil || memoryMiB > 0 && absDiff(m.MemoryMiB, memoryMiB) < absDiff(best.MemoryMiB, memoryMiB) {
			best = m
		}
	}
	if best == nil {
		return GPUModel{}, false
	}
	out := *best
	out.MIGProfiles = maps.Clone(best.MIGProfiles)
	return out, true
}

// GPUModels lists every model in the facts table.
func GPUModels() ([]GPUModel, error) {
	models, err := gpuFacts()
	if err != nil {
		return nil, err
	}
	out := make([]GPUModel, len(models))
	for i, m := range models {
		out[i] = m
		out[i].MIGProfiles = maps.Clone(m.MIGProfiles)
	}
	return out, nil
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// productNameOverride is a board a cloud sells under another product name
// than the model's usual one (Azure's NC A100 v4 is the PCIe A100).
type productNameOverride struct {
	Cloud       string `json:"cloud"`
	TypePrefix  string `json:"typePrefix"`
	Name        string `json:"name"`
	ProductName string `json:"productName"`
}

type gpuTable struct {
	models    []GPUModel
	overrides []productNameOverride
}

var gpuTableOnce = sync.OnceValues(func() (*gpuTable, error) {
	return parseGPUTable(gpusFile, gpusJSON)
})

func gpuFacts() ([]GPUModel, error) {
	t, err := gpuTableOnce()
	if err != nil {
		return nil, err
	}
	return t.models, nil
}

// ProductName is the product name a DRA driver reports for model m on a
// machine of instanceType in cloud: the model's, unless the cloud sells
// that type with another board.
func ProductName(cloud, instanceType string, m GPUModel) string {
	t, err := gpuTableOnce()
	if err != nil {
		return m.ProductName
	}
	for _, o := range t.overrides {
		if o.Cloud == cloud && o.Name == m.Name && strings.HasPrefix(instanceType, o.TypePrefix) {
			return o.ProductName
		}
	}
	return m.ProductName
}

func parseGPUFacts(file string, data []byte) ([]GPUModel, error) {
	t, err := parseGPUTable(file, data)
	if err != nil {
		return nil, err
	}
	return t.models, nil
}

func parseGPUTable(file string, data []byte) (*gpuTable, error) {
	var in struct {
		Sources      []struct{ ID, What, From, Date string }
		ProductNames []productNameOverride `json:"productNames"`
		Models       []struct {
			Manufacturer      string         `json:"manufacturer"`
			Name              string         `json:"name"`
			MemoryMiB         int64          `json:"memoryMiB"`
			MIG               map[string]int `json:"mig"`
			ProductName       string         `json:"productName"`
			Architecture      string         `json:"architecture"`
			ComputeCapability string         `json:"computeCapability"`
		} `json:"models"`
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(in.Sources) == 0 {
		return nil, fmt.Errorf("%s: sources must not be empty", file)
	}
	for i, s := range in.Sources {
		if _, err := time.Parse(time.DateOnly, s.Date); err != nil || s.What == "" || s.From == "" {
			return nil, fmt.Errorf("%s: sources[%d] (%s): what, from and a YYYY-MM-DD date are required", file, i, s.ID)
		}
	}
	out := make([]GPUModel, 0, len(in.Models))
	for i, m := range in.Models {
		if m.Name == "" || m.MemoryMiB <= 0 {
			return nil, fmt.Errorf("%s: models[%d] (%s): name and positive memoryMiB are required", file, i, m.Name)
		}
		if _, ok := GPUResourceName(m.Manufacturer); !ok {
			return nil, fmt.Errorf("%s: models[%d] (%s): unknown manufacturer %q", file, i, m.Name, m.Manufacturer)
		}
		for p, n := range m.MIG {
			if n <= 0 {
				return nil, fmt.Errorf("%s: models[%d] (%s): mig profile %s must split into at least one instance", file, i, m.Name, p)
			}
		}
		if m.Manufacturer == "nvidia" && (m.ProductName == "" || m.Architecture == "" || !computeCapability.MatchString(m.ComputeCapability)) {
			return nil, fmt.Errorf("%s: models[%d] (%s): productName, architecture and a computeCapability such as \"8.9\" are required for NVIDIA models", file, i, m.Name)
		}
		out = append(out, GPUModel{Manufacturer: m.Manufacturer, Name: m.Name, MemoryMiB: m.MemoryMiB, MIGProfiles: m.MIG,
			ProductName: m.ProductName, Architecture: m.Architecture, ComputeCapability: m.ComputeCapability})
	}
	for i, o := range in.ProductNames {
		if o.Cloud == "" || o.TypePrefix == "" || o.Name == "" || o.ProductName == "" {
			return nil, fmt.Errorf("%s: productNames[%d]: cloud, typePrefix, name and productName are required", file, i)
		}
	}
	return &gpuTable{models: out, overrides: in.ProductNames}, nil
}

var computeCapability = regexp.MustCompile(`^[0-9]+\.[0-9]+$`)
