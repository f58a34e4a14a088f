package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stowage-k8s/stowage/pricing/internal/format"
)

func TestGCPType(t *testing.T) {
	tests := []struct {
		name string
		want *format.Type // nil: not in the catalog
	}{
		{"n2-standard-8", &format.Type{Name: "n2-standard-8", Family: "n2", VCPU: 8, MemoryMiB: 32 << 10, Arch: "amd64", CurrentGeneration: true, Zones: gcpZonesAll}},
		{"c3-highcpu-22", &format.Type{Name: "c3-highcpu-22", Family: "c3", VCPU: 22, MemoryMiB: 44 << 10, Arch: "amd64", CurrentGeneration: true, Zones: gcpZonesAll}},
		{"c3-standard-8-lssd", &format.Type{Name: "c3-standard-8-lssd", Family: "c3", VCPU: 8, MemoryMiB: 32 << 10, Arch: "amd64", CurrentGeneration: true, Zones: gcpZonesAll}},
		{"a3-highgpu-8g", &format.Type{Name: "a3-highgpu-8g", Family: "a3", VCPU: 208, MemoryMiB: 1872 << 10, Arch: "amd64", CurrentGeneration: true,
			Zones: gcpFamilyZones["a3"], GPU: &format.GPU{Manufacturer: "nvidia", Name: "h100", Count: 8, MemoryMiB: 80 << 10}}},
		{"a2-ultragpu-2g", &format.Type{Name: "a2-ultragpu-2g", Family: "a2", VCPU: 24, MemoryMiB: 340 << 10, Arch: "amd64", CurrentGeneration: true,
			Zones: gcpFamilyZones["a2-ultragpu"], GPU: &format.GPU{Manufacturer: "nvidia", Name: "a100", Count: 2, MemoryMiB: 80 << 10}}},
		{"g2-standard-24", &format.Type{Name: "g2-standard-24", Family: "g2", VCPU: 24, MemoryMiB: 96 << 10, Arch: "amd64", CurrentGeneration: true,
			Zones: gcpFamilyZones["g2"], GPU: &format.GPU{Manufacturer: "nvidia", Name: "l4", Count: 2, MemoryMiB: 24 << 10}}},
		{"e2-medium", nil},
		{"c3-standard-192-metal", nil},
		{"n4-standard-8", nil},
		{"a3-highgpu-xg", nil},
	}
	for _, tt := range tests {
		got, ok := gcpType(tt.name)
		if tt.want == nil {
			if ok {
				t.Errorf("gcpType(%q) = %+v, want it left out", tt.name, got)
			}
			continue
		}
		if diff := cmp.Diff(*tt.want, got); diff != "" || !ok {
			t.Errorf("gcpType(%q) ok=%v (-want +got):\n%s", tt.name, ok, diff)
		}
	}
}

func TestAWSMaxPods(t *testing.T) {
	mk := func(vcpu, enis, ips, defaultCard int, cards ...[2]int) motoType {
		var m motoType
		m.VCpuInfo.DefaultVCpus = vcpu
		m.NetworkInfo.MaximumNetworkInterfaces = enis
		m.NetworkInfo.Ipv4AddressesPerInterface = ips
		m.NetworkInfo.DefaultNetworkCardIndex = defaultCard
		for _, c := range cards {
			m.NetworkInfo.NetworkCards = append(m.NetworkInfo.NetworkCards, struct{ NetworkCardIndex, MaximumNetworkInterfaces int }{c[0], c[1]})
		}
		return m
	}
	tests := []struct {
		name string
		m    motoType
		want int
	}{
		{"t3.micro", mk(2, 2, 2, 0, [2]int{0, 2}), 4},
		{"m5.large", mk(2, 3, 10, 0, [2]int{0, 3}), 29},
		{"m5.4xlarge capped under 30 vCPU", mk(16, 8, 30, 0, [2]int{0, 8}), 110},
		{"p5.48xlarge uses the default card only", mk(192, 64, 50, 0, [2]int{0, 2}, [2]int{1, 2}), 100},
		{"p4d.24xlarge capped at 250", mk(96, 60, 50, 0, [2]int{0, 15}, [2]int{1, 15}), 250},
		{"no network data", mk(4, 0, 0, 0), 110},
	}
	for _, tt := range tests {
		if got := awsMaxPods(tt.m); got != tt.want {
			t.Errorf("%s: max pods %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestReadAWSPrices(t *testing.T) {
	prices := "package pricing\nvar X = map[string]map[ec2types.InstanceType]float64{\n\t\"eu-west-1\": {\n\t\t\"m5.large\": 0.107000,\n\t},\n\t\"us-east-1\": {\n"
	want := map[string]float64{}
	for i := range 600 {
		name := "x" + string(rune('a'+i%26)) + ".size" + string(rune('a'+i/26))
		prices += "\t\t\"" + name + "\": 0.5, "
		want[name] = 0.5
	}
	prices += "\"m5.large\": 0.096000, \"free.nano\": 0.000000,\n\t},\n\t\"us-west-2\": {\n\t\t\"m5.large\": 0.096000,\n\t},\n}\n"
	want["m5.large"] = 0.096
	path := filepath.Join(t.TempDir(), "p.go")
	if err := os.WriteFile(path, []byte(prices), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readAWSPrices(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prices (-want +got):\n%s", diff)
	}

	if err := os.WriteFile(path, []byte("package pricing\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readAWSPrices(path); err == nil {
		t.Errorf("readAWSPrices of a file without us-east-1 succeeded")
	}
}

func TestAzureFamilyMedians(t *testing.T) {
	prices := map[string]float64{
		"Standard_D2as_v5": 0.178, "Standard_D4as_v5": 0.172, "Standard_D8as_v5": 0.344,
		"Standard_D16as_v5": 0.688, "Standard_D96as_v5": 8.544,
		"Standard_NC4as_T4_v3": 0.526, // GPU sizes have no per-vCPU rate
	}
	got := azureFamilyMedians(prices)
	if diff := cmp.Diff(map[string]float64{"Das_v5": 0.043}, got); diff != "" {
		t.Errorf("medians (-want +got):\n%s", diff)
	}
}

func TestAzureFamily(t *testing.T) {
	for size, want := range map[string]string{
		"Standard_NC24ads_A100_v4": "NCads_A100_v4", "Standard_D16s_v5": "Ds_v5", "Standard_ND96isr_H200_v5": "NDisr_H200_v5",
		"Standard_NV6ads_A10_v5": "NVads_A10_v5", "Standard_F2s_v2": "Fs_v2",
	} {
		if got := azureFamily(size); got != want {
			t.Errorf("azureFamily(%s) = %s, want %s", size, got, want)
		}
	}
}
