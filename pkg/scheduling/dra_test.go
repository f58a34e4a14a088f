package scheduling

import (
	"context"
	"testing"

	resourceapi "k8s.io/api/resource/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func gpuType(name, product string, count int, memMiB int64, mig map[string]int) *cloudprovider.InstanceType {
	return &cloudprovider.InstanceType{Name: name, GPU: &cloudprovider.GPU{Manufacturer: "nvidia", Name: name, Count: count, MemoryMiB: memMiB,
		MIGProfiles: mig, ProductName: product, Architecture: "Ampere", ComputeCapability: "8.0"}}
}

func sel(exprs ...string) []resourceapi.DeviceSelector {
	var out []resourceapi.DeviceSelector
	for _, e := range exprs {
		out = append(out, resourceapi.DeviceSelector{CEL: &resourceapi.CELDeviceSelector{Expression: e}})
	}
	return out
}

const (
	gpuClass  = "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'gpu'"
	migClass  = "device.driver == 'gpu.nvidia.com' && device.attributes['gpu.nvidia.com'].type == 'mig'"
	atLeast40 = "device.capacity['gpu.nvidia.com'].memory.compareTo(quantity('40Gi')) >= 0"
)

func TestDevicesFollowTheNvidiaDriver(t *testing.T) {
	a100 := gpuType("p4d.24xlarge", "NVIDIA A100-SXM4-40GB", 8, 40960, map[string]int{"1g.5gb": 7, "3g.20gb": 2})
	driver, devs := Devices(a100, nil)
	if driver != DriverNvidiaGPU || len(devs) != 8 || devs[0].Name != "gpu-0" || devs[7].Name != "gpu-7" {
		t.Fatalf("whole GPUs: driver %q, %d devices", driver, len(devs))
	}
	d := devs[0]
	if *d.Attributes["type"].StringValue != "gpu" || *d.Attributes["productName"].StringValue != "NVIDIA A100-SXM4-40GB" ||
		*d.Attributes["cudaComputeCapability"].VersionValue != "8.0.0" || capString(d, "memory") != "40Gi" {
		t.Errorf("device %s: %v %v", d.Name, d.Attributes, d.Capacity)
	}
	_, devs = Devices(a100, &v1.GPUSharing{MIGProfile: "3g.20gb"})
	if len(devs) != 16 || *devs[0].Attributes["type"].StringValue != "mig" || *devs[0].Attributes["profile"].StringValue != "3g.20gb" ||
		capString(devs[0], "memory") != "20Gi" {
		t.Errorf("MIG devices: %d, first %v %v", len(devs), devs[0].Attributes, devs[0].Capacity)
	}
	if _, devs := Devices(a100, &v1.GPUSharing{MIGProfile: "7g.80gb"}); len(devs) != 8 {
		t.Errorf("a profile the GPU lacks keeps whole GPUs, got %d devices", len(devs))
	}
	if driver, devs := Devices(&cloudprovider.InstanceType{Name: "m5.large"}, nil); driver != "" || devs != nil {
		t.Errorf("CPU type publishes %q %v", driver, devs)
	}
	amd := &cloudprovider.InstanceType{Name: "g4ad", GPU: &cloudprovider.GPU{Manufacturer: "amd", Count: 1}}
	if _, devs := Devices(amd, nil); devs != nil {
		t.Errorf("AMD GPUs are not modelled, got %v", devs)
	}
}

func TestDeviceMatcher(t *testing.T) {
	ctx := context.Background()
	m := NewDeviceMatcher()
	_, t4 := Devices(gpuType("g4dn.xlarge", "Tesla T4", 1, 16384, nil), nil)
	_, l40s := Devices(gpuType("g6e.xlarge", "NVIDIA L40S", 1, 45776, nil), nil)
	_, a100 := Devices(gpuType("p4d.24xlarge", "NVIDIA A100-SXM4-40GB", 8, 40960, nil), nil)
	_, mig := Devices(gpuType("p4d.24xlarge", "NVIDIA A100-SXM4-40GB", 8, 40960, map[string]int{"1g.5gb": 7}), &v1.GPUSharing{MIGProfile: "1g.5gb"})
	tests := []struct {
		name      string
		dev       resourceapi.Device
		selectors []resourceapi.DeviceSelector
		want      bool
	}{
		{"t4 is a gpu", t4[0], sel(gpuClass), true},
		{"t4 has under 40Gi", t4[0], sel(gpuClass, atLeast40), false},
		{"l40s has 40Gi or more", l40s[0], sel(gpuClass, atLeast40), true},
		{"a100 40GB has exactly 40Gi", a100[0], sel(gpuClass, atLeast40), true},
		{"product name", a100[0], sel("device.attributes['gpu.nvidia.com'].productName.startsWith('NVIDIA A100')"), true},
		{"compute capability as a version", l40s[0], sel("device.attributes['gpu.nvidia.com'].cudaComputeCapability.isGreaterThan(semver('7.5.0'))"), true},
		{"a mig device is no gpu", mig[0], sel(gpuClass), false},
		{"mig profile", mig[0], sel(migClass, "device.attributes['gpu.nvidia.com'].profile == '1g.5gb'"), true},
		{"an attribute the device lacks selects nothing", t4[0], sel("device.attributes['gpu.nvidia.com'].uuid == 'GPU-1'"), false},
		{"no selectors select everything", t4[0], nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Matches(ctx, DriverNvidiaGPU, &tt.dev, tt.selectors)
			if err != nil || got != tt.want {
				t.Errorf("Matches = %v, %v; want %v", got, err, tt.want)
			}
			// Memoised answers agree.
			if again, _ := m.Matches(ctx, DriverNvidiaGPU, &tt.dev, tt.selectors); again != got {
				t.Errorf("second answer %v differs", again)
			}
		})
	}
	if err := m.Compile("device.attributes["); err == nil {
		t.Error("a malformed selector compiled")
	}
	if _, err := m.Matches(ctx, DriverNvidiaGPU, &t4[0], sel("1 +")); err == nil {
		t.Error("a malformed selector matched without an error")
	}
}

func capString(d resourceapi.Device, name resourceapi.QualifiedName) string {
	q := d.Capacity[name].Value
	return q.String()
}
