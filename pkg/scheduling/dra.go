package scheduling

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/dynamic-resource-allocation/cel"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// DriverNvidiaGPU is the NVIDIA DRA driver: it publishes a machine's GPUs
// (or, in MIG mode, their MIG devices) with attributes in this domain.
const DriverNvidiaGPU = "gpu.nvidia.com"

// NVIDIA DRA driver device types (the "type" attribute).
const (
	DeviceTypeGPU = "gpu"
	DeviceTypeMIG = "mig"
)

var migMemory = regexp.MustCompile(`\.([0-9]+)gb$`)

// Devices returns the devices the vendor's DRA driver would publish on a
// machine of type it in a pool with the given GPU sharing, before the
// machine exists, so claims can be planned like extended resources. It
// follows the NVIDIA DRA driver: one "gpu" device per GPU, named gpu-N, or,
// when the pool's MIG profile fits the GPU, that profile's "mig" devices.
// Attributes are those the catalog knows (type, productName, brand,
// architecture, cudaComputeCapability, profile) and capacity "memory".
// Per-machine facts (uuid, pcieBusID, driver versions) are not known before
// launch; selectors on them match no planned machine. Other vendors' GPUs
// publish nothing here: their DRA drivers are not modelled yet.
func Devices(it *cloudprovider.InstanceType, sharing *v1.GPUSharing) (driver string, devices []resourceapi.Device) {
	g := it.GPU
	if g == nil || g.Manufacturer != "nvidia" || g.Count <= 0 {
		return "", nil
	}
	attrs := func(typ string) map[resourceapi.QualifiedName]resourceapi.DeviceAttribute {
		a := map[resourceapi.QualifiedName]resourceapi.DeviceAttribute{
			"type":  {StringValue: &typ},
			"brand": {StringValue: strPtr("Nvidia")},
		}
		if g.ProductName != "" {
			a["productName"] = resourceapi.DeviceAttribute{StringValue: strPtr(g.ProductName)}
		}
		if g.Architecture != "" {
			a["architecture"] = resourceapi.DeviceAttribute{StringValue: strPtr(g.Architecture)}
		}
		if g.ComputeCapability != "" {
			a["cudaComputeCapability"] = resourceapi.DeviceAttribute{VersionValue: strPtr(semver(g.ComputeCapability))}
		}
		return a
	}
	if sharing != nil && sharing.MIGProfile != "" && g.MIGProfiles[sharing.MIGProfile] > 0 {
		per := g.MIGProfiles[sharing.MIGProfile]
		for gpu := range g.Count {
			for i := range per {
				a := attrs(DeviceTypeMIG)
				a["profile"] = resourceapi.DeviceAttribute{StringValue: strPtr(sharing.MIGProfile)}
				d := resourceapi.Device{Name: fmt.Sprintf("gpu-%d-mig-%s-%d", gpu, strings.ReplaceAll(sharing.MIGProfile, ".", "-"), i), Attributes: a}
				if m := migMemory.FindStringSubmatch(sharing.MIGProfile); m != nil {
					gb, _ := strconv.ParseInt(m[1], 10, 64)
					d.Capacity = map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
						"memory": {Value: *resource.NewQuantity(gb<<30, resource.BinarySI)},
					}
				}
				devices = append(devices, d)
			}
		}
		return DriverNvidiaGPU, devices
	}
	for i := range g.Count {
		devices = append(devices, resourceapi.Device{
			Name:       fmt.Sprintf("gpu-%d", i),
			Attributes: attrs(DeviceTypeGPU),
			Capacity: map[resourceapi.QualifiedName]resourceapi.DeviceCapacity{
				"memory": {Value: *resource.NewQuantity(g.MemoryMiB<<20, resource.BinarySI)},
			},
		})
	}
	return DriverNvidiaGPU, devices
}

func strPtr(s string) *string { return &s }

// semver turns a compute capability such as "8.9" into the "8.9.0" form the
// driver publishes as a version attribute.
func semver(s string) string {
	if strings.Count(s, ".") == 1 {
		return s + ".0"
	}
	return s
}

// DeviceMatcher evaluates DeviceClass and claim selectors against devices
// with the CEL library the scheduler's allocator uses, compiling each
// expression once and remembering each answer per identical device.
type DeviceMatcher struct {
	cache *cel.Cache
	mu    sync.Mutex
	memo  map[string]bool
}

// NewDeviceMatcher returns an empty matcher, safe for concurrent use.
func NewDeviceMatcher() *DeviceMatcher {
	return &DeviceMatcher{cache: cel.NewCache(256, cel.Features{EnableConsumableCapacity: true}), memo: map[string]bool{}}
}

// Compile checks that expr is a valid device selector.
func (m *DeviceMatcher) Compile(expr string) error {
	if res := m.cache.GetOrCompile(expr); res.Error != nil {
		return fmt.Errorf("CEL selector %q: %s", expr, res.Error.Detail)
	}
	return nil
}

// Matches reports whether every selector selects the device. A selector
// that fails at runtime (say, it reads an attribute the device lacks)
// selects nothing, so a machine is never bought on a guess.
func (m *DeviceMatcher) Matches(ctx context.Context, driver string, d *resourceapi.Device, selectors []resourceapi.DeviceSelector) (bool, error) {
	if len(selectors) == 0 {
		return true, nil
	}
	sig := deviceSignature(driver, d)
	for _, s := range selectors {
		if s.CEL == nil {
			continue
		}
		key := s.CEL.Expression + "\x00" + sig
		m.mu.Lock()
		ok, seen := m.memo[key]
		m.mu.Unlock()
		if !seen {
			res := m.cache.GetOrCompile(s.CEL.Expression)
			if res.Error != nil {
				return false, fmt.Errorf("CEL selector %q: %s", s.CEL.Expression, res.Error.Detail)
			}
			matched, _, err := res.DeviceMatches(ctx, cel.Device{Driver: driver, Attributes: d.Attributes, Capacity: d.Capacity,
				AllowMultipleAllocations: d.AllowMultipleAllocations})
			if ctxErr := ctx.Err(); ctxErr != nil {
				return false, ctxErr
			}
			ok = matched && err == nil
			m.mu.Lock()
			m.memo[key] = ok
			m.mu.Unlock()
		}
		if !ok {
			return false, nil
		}
	}
	return true, nil
}

// deviceSignature identifies what a selector can see of a device: identical
// devices (every GPU of a machine, every machine of a type) share it.
func deviceSignature(driver string, d *resourceapi.Device) string {
	var b strings.Builder
	b.WriteString(driver)
	keys := make([]string, 0, len(d.Attributes))
	for k := range d.Attributes {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	for _, k := range keys {
		a := d.Attributes[resourceapi.QualifiedName(k)]
		fmt.Fprintf(&b, "|a:%s=%s", k, attributeString(a))
	}
	keys = keys[:0]
	for k := range d.Capacity {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	for _, k := range keys {
		q := d.Capacity[resourceapi.QualifiedName(k)].Value
		fmt.Fprintf(&b, "|c:%s=%s", k, q.String())
	}
	if d.AllowMultipleAllocations != nil && *d.AllowMultipleAllocations {
		b.WriteString("|shared")
	}
	return b.String()
}

func attributeString(a resourceapi.DeviceAttribute) string {
	switch {
	case a.StringValue != nil:
		return "s" + *a.StringValue
	case a.IntValue != nil:
		return "i" + strconv.FormatInt(*a.IntValue, 10)
	case a.BoolValue != nil:
		return "b" + strconv.FormatBool(*a.BoolValue)
	case a.VersionValue != nil:
		return "v" + *a.VersionValue
	}
	return fmt.Sprintf("%v", a)
}
