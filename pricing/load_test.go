package pricing_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

func mustLoad(t testing.TB, name string) *pricing.Catalog {
	t.Helper()
	c, err := pricing.Load(name)
	if err != nil {
		t.Fatalf("Load(%q): %v", name, err)
	}
	return c
}

func TestLoadCounts(t *testing.T) {
	tests := []struct {
		name      string
		cloud     string
		region    string
		zones     int
		minTypes  int
		minGPUTys int
	}{
		{"aws/us-east-1", "aws", "us-east-1", 6, 1000, 70},
		{"gcp/us-central1", "gcp", "us-central1", 4, 100, 20},
		{"azure/eastus", "azure", "eastus", 3, 40, 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, tt.name)
			gpus := 0
			for _, it := range c.InstanceTypes {
				if it.GPU != nil {
					gpus++
				}
			}
			got := fmt.Sprintf("%s %s zones=%d", c.Cloud, c.Region, len(c.Zones))
			want := fmt.Sprintf("%s %s zones=%d", tt.cloud, tt.region, tt.zones)
			if got != want {
				t.Errorf("catalog = %s, want %s", got, want)
			}
			if len(c.InstanceTypes) < tt.minTypes {
				t.Errorf("%d instance types, want at least %d", len(c.InstanceTypes), tt.minTypes)
			}
			if gpus < tt.minGPUTys {
				t.Errorf("%d GPU instance types, want at least %d", gpus, tt.minGPUTys)
			}
		})
	}
	if got, want := pricing.Names(), []string{"aws/us-east-1", "gcp/us-central1", "azure/eastus"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

// summary is the part of an instance type the spot checks compare.
type summary struct {
	VCPU      int64
	MemoryMiB int64
	GPU       string // "manufacturer/name x count memoryMiB"
	Resource  int64  // GPU device-plugin resource in Capacity
	OnDemand  float64
	Spot      float64
	Zones     int
}

func summarize(it *cloudprovider.InstanceType) summary {
	s := summary{
		VCPU:      it.Capacity.Cpu().Value(),
		MemoryMiB: it.Capacity.Memory().Value() >> 20,
	}
	if g := it.GPU; g != nil {
		s.GPU = fmt.Sprintf("%s/%s x%d %dMiB", g.Manufacturer, g.Name, g.Count, g.MemoryMiB)
		res, _ := pricing.GPUResourceName(g.Manufacturer)
		q := it.Capacity[res]
		s.Resource = q.Value()
	}
	zones := map[string]bool{}
	for _, o := range it.Offerings {
		zones[o.Zone] = true
		switch o.CapacityType {
		case v1.CapacityTypeOnDemand:
			s.OnDemand = o.PricePerHour
		case v1.CapacityTypeSpot:
			s.Spot = o.PricePerHour
		}
	}
	s.Zones = len(zones)
	return s
}

func TestSpotChecks(t *testing.T) {
	tests := []struct {
		catalog, name string
		want          summary
	}{
		{"aws/us-east-1", "p5.48xlarge", summary{192, 2048 << 10, "nvidia/h100 x8 81920MiB", 8, 55.04, 19.49, 6}},
		{"aws/us-east-1", "g5.xlarge", summary{4, 16 << 10, "nvidia/a10g x1 22888MiB", 1, 1.006, 0.509, 5}},
		{"aws/us-east-1", "p5en.48xlarge", summary{192, 2048 << 10, "nvidia/h200 x8 144384MiB", 8, 63.296, 27.07, 2}},
		{"aws/us-east-1", "p4d.24xlarge", summary{96, 1152 << 10, "nvidia/a100 x8 40960MiB", 8, 21.957642, 14.231, 4}},
		{"aws/us-east-1", "trn1.32xlarge", summary{128, 512 << 10, "aws/trainium x16 32768MiB", 16, 21.5, 10.75, 3}},
		{"aws/us-east-1", "m5.large", summary{2, 8 << 10, "", 0, 0.096, 0.0384, 5}},
		{"gcp/us-central1", "a3-highgpu-8g", summary{208, 1872 << 10, "nvidia/h100 x8 81920MiB", 8, 88.49, 50.61, 3}},
		{"gcp/us-central1", "a2-megagpu-16g", summary{96, 1360 << 10, "nvidia/a100 x16 40960MiB", 16, 55.739504, 29.25568, 4}},
		{"gcp/us-central1", "g2-standard-4", summary{4, 16 << 10, "nvidia/l4 x1 24576MiB", 1, 0.707, 0.397, 3}},
		{"gcp/us-central1", "n2-standard-8", summary{8, 32 << 10, "", 0, 0.388472, 0.18424, 4}},
		{"azure/eastus", "Standard_ND96isr_H100_v5", summary{96, 1900 << 10, "nvidia/h100 x8 81920MiB", 8, 98.32, 24.58, 2}},
		{"azure/eastus", "Standard_NC24ads_A100_v4", summary{24, 220 << 10, "nvidia/a100 x1 81920MiB", 1, 3.673, 0.73, 3}},
		{"azure/eastus", "Standard_D4s_v5", summary{4, 16 << 10, "", 0, 0.192, 0.048, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.catalog+"/"+tt.name, func(t *testing.T) {
			it, ok := pricing.Lookup(mustLoad(t, tt.catalog), tt.name)
			if !ok {
				t.Fatalf("%s not in %s", tt.name, tt.catalog)
			}
			if diff := cmp.Diff(tt.want, summarize(it)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

// TestInvariants holds every type of every catalog to what the solver relies on.
func TestInvariants(t *testing.T) {
	for _, name := range pricing.Names() {
		t.Run(name, func(t *testing.T) {
			c := mustLoad(t, name)
			for _, it := range c.InstanceTypes {
				for _, err := range checkType(c, it) {
					t.Errorf("%s: %v", it.Name, err)
				}
			}
		})
	}
}

func checkType(c *pricing.Catalog, it *cloudprovider.InstanceType) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if len(it.Offerings) == 0 {
		fail("no offerings")
	}
	onDemand := map[string]float64{}
	for _, o := range it.Offerings {
		if !slices.Contains(c.Zones, o.Zone) {
			fail("offering zone %q not in catalog zones", o.Zone)
		}
		if o.PricePerHour <= 0 || !o.Available {
			fail("offering %s: price %v available %v", o.ID(it.Name), o.PricePerHour, o.Available)
		}
		if o.CapacityType == v1.CapacityTypeOnDemand {
			onDemand[o.Zone] = o.PricePerHour
		}
	}
	for _, o := range it.Offerings {
		if o.CapacityType == v1.CapacityTypeSpot && o.PricePerHour >= onDemand[o.Zone] {
			fail("spot %v not below on-demand %v in %s", o.PricePerHour, onDemand[o.Zone], o.Zone)
		}
	}
	for _, key := range []string{v1.LabelInstanceType, v1.LabelArch, v1.LabelOS, v1.LabelInstanceFamily, v1.LabelInstanceCPU, v1.LabelInstanceMemory} {
		if it.Labels[key] == "" {
			fail("label %s missing", key)
		}
	}
	if it.Labels[v1.LabelInstanceType] != it.Name || it.Labels[v1.LabelOS] != "linux" {
		fail("labels %v", it.Labels)
	}
	if cpu := it.Labels[v1.LabelInstanceCPU]; cpu != strconv.FormatInt(it.Capacity.Cpu().Value(), 10) {
		fail("cpu label %s disagrees with capacity %s", cpu, it.Capacity.Cpu())
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods, corev1.ResourceEphemeralStorage} {
		if q, ok := it.Capacity[r]; !ok || q.Sign() <= 0 {
			fail("capacity %s = %v", r, q.String())
		}
	}
	alloc := it.Allocatable()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q := alloc[r]; q.Sign() <= 0 {
			fail("allocatable %s = %s", r, q.String())
		}
	}
	if g := it.GPU; g != nil {
		res, ok := pricing.GPUResourceName(g.Manufacturer)
		if q := it.Capacity[res]; !ok || q.Value() != int64(g.Count) || g.Count <= 0 {
			fail("gpu capacity %s = %s, gpu count %d", res, q.String(), g.Count)
		}
		if g.Name != strings.ToLower(g.Name) || it.Labels[v1.LabelGPUName] != g.Name {
			fail("gpu name %q label %q", g.Name, it.Labels[v1.LabelGPUName])
		}
		if it.Labels[v1.LabelGPUCount] != strconv.Itoa(g.Count) || it.Labels[v1.LabelGPUMemory] != strconv.FormatInt(g.MemoryMiB, 10) || it.Labels[v1.LabelGPUManufacturer] != g.Manufacturer {
			fail("gpu labels %v disagree with %+v", it.Labels, *g)
		}
		if _, ok := pricing.GPUInfo(g.Name, g.MemoryMiB); !ok {
			fail("gpu %q missing from the facts table", g.Name)
		}
	} else if it.Labels[v1.LabelGPUName] != "" {
		fail("gpu labels on a type without GPUs")
	}
	return errs
}

func TestSources(t *testing.T) {
	for _, name := range pricing.Names() {
		t.Run(name, func(t *testing.T) {
			c := mustLoad(t, name)
			var what []string
			for _, s := range c.Sources {
				if s.From == "" {
					t.Errorf("source %q has no origin", s.What)
				}
				if _, err := time.Parse(time.DateOnly, s.Date); err != nil {
					t.Errorf("source %q date: %v", s.What, err)
				}
				what = append(what, s.What)
			}
			all := strings.Join(what, "; ")
			for _, want := range []string{"specs", "zones", "on-demand", "spot"} {
				if !strings.Contains(all, want) {
					t.Errorf("no source for %s in %q", want, all)
				}
			}
		})
	}
}

func TestLoadReturnsIndependentCopies(t *testing.T) {
	a := mustLoad(t, "aws/us-east-1")
	b := mustLoad(t, "aws/us-east-1")
	itA, _ := pricing.Lookup(a, "p5.48xlarge")
	itB, _ := pricing.Lookup(b, "p5.48xlarge")
	before := summarize(itB)
	wantMIG := itB.GPU.MIGProfiles["1g.10gb"]

	// Mutate everything a caller plausibly touches.
	itA.Offerings[0].Available = false
	itA.Offerings[0].PricePerHour = 0
	itA.Offerings = itA.Offerings[:1]
	itA.Labels[v1.LabelGPUName] = "changed"
	itA.Capacity[corev1.ResourceCPU] = resource.MustParse("1")
	q := itA.Overhead.KubeReserved[corev1.ResourceCPU]
	q.Add(resource.MustParse("10"))
	itA.Overhead.KubeReserved[corev1.ResourceCPU] = q
	itA.GPU.Count = 1
	itA.GPU.MIGProfiles["1g.10gb"] = 99
	a.Zones[0] = "changed"
	a.InstanceTypes = a.InstanceTypes[:1]

	for _, c := range []*pricing.Catalog{b, mustLoad(t, "aws/us-east-1")} {
		it, _ := pricing.Lookup(c, "p5.48xlarge")
		if diff := cmp.Diff(before, summarize(it)); diff != "" {
			t.Errorf("p5.48xlarge changed by another copy's mutation (-before +after):\n%s", diff)
		}
		if !it.Offerings[0].Available || it.Labels[v1.LabelGPUName] != "h100" || it.GPU.MIGProfiles["1g.10gb"] != wantMIG {
			t.Errorf("p5.48xlarge shares state with another copy: %+v %v %v", it.Offerings[0], it.Labels, it.GPU.MIGProfiles)
		}
		if kr := it.Overhead.KubeReserved[corev1.ResourceCPU]; kr.MilliValue() > 1000 {
			t.Errorf("kube-reserved cpu %s shares state with another copy", kr.String())
		}
		if c.Zones[0] != "us-east-1a" || len(c.InstanceTypes) < 1000 {
			t.Errorf("catalog shares zones or types with another copy: %v, %d types", c.Zones, len(c.InstanceTypes))
		}
	}
}

func TestLoadUnknown(t *testing.T) {
	_, err := pricing.Load("aws/mars-north-1")
	if !errors.Is(err, pricing.ErrUnknownCatalog) || !strings.Contains(err.Error(), "aws/mars-north-1") {
		t.Errorf("Load(unknown) = %v, want ErrUnknownCatalog naming the catalog", err)
	}
}

func TestMIGProfilesFilled(t *testing.T) {
	tests := []struct {
		catalog, name string
		want          map[string]int // a subset of the profiles
	}{
		{"aws/us-east-1", "p4d.24xlarge", map[string]int{"1g.5gb": 7, "2g.10gb": 3, "3g.20gb": 2, "4g.20gb": 1, "7g.40gb": 1}},
		{"aws/us-east-1", "p4de.24xlarge", map[string]int{"1g.10gb": 7, "2g.20gb": 3, "3g.40gb": 2, "7g.80gb": 1}},
		{"aws/us-east-1", "p5.48xlarge", map[string]int{"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "7g.80gb": 1}},
		{"aws/us-east-1", "p5en.48xlarge", map[string]int{"1g.18gb": 7, "7g.141gb": 1}},
		{"aws/us-east-1", "g5.xlarge", nil},
		{"gcp/us-central1", "a2-ultragpu-8g", map[string]int{"1g.10gb": 7, "7g.80gb": 1}},
		{"azure/eastus", "NC40ads_H100_v5", map[string]int{"1g.12gb": 7, "7g.94gb": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it, ok := pricing.Lookup(mustLoad(t, tt.catalog), tt.name)
			if !ok || it.GPU == nil {
				t.Fatalf("%s: no GPU type %s", tt.catalog, tt.name)
			}
			got := map[string]int{}
			for p := range tt.want {
				if n, ok := it.GPU.MIGProfiles[p]; ok {
					got[p] = n
				}
			}
			if tt.want == nil {
				got = it.GPU.MIGProfiles
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("MIG profiles (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	azure := mustLoad(t, "azure/eastus")
	aws := mustLoad(t, "aws/us-east-1")
	tests := []struct {
		c    *pricing.Catalog
		name string
		want string
	}{
		{azure, "Standard_ND96isr_H100_v5", "Standard_ND96isr_H100_v5"},
		{azure, "ND96isr_H100_v5", "Standard_ND96isr_H100_v5"},
		{azure, "nd96isr_h100_v5", ""},
		{aws, "g5.xlarge", "g5.xlarge"},
		{aws, "Standard_g5.xlarge", ""},
		{nil, "g5.xlarge", ""},
	}
	for _, tt := range tests {
		it, ok := pricing.Lookup(tt.c, tt.name)
		got := ""
		if ok {
			got = it.Name
		}
		if got != tt.want {
			t.Errorf("Lookup(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}

	o, ok := pricing.LookupOffering(aws, cloudprovider.OfferingID{InstanceType: "p5.48xlarge", Zone: "us-east-1c", CapacityType: v1.CapacityTypeSpot})
	if !ok || o.PricePerHour != 19.49 {
		t.Errorf("LookupOffering(p5.48xlarge spot us-east-1c) = %+v, %v", o, ok)
	}
	if _, ok := pricing.LookupOffering(aws, cloudprovider.OfferingID{InstanceType: "p5en.48xlarge", Zone: "us-east-1b", CapacityType: v1.CapacityTypeOnDemand}); ok {
		t.Errorf("p5en.48xlarge is not sold in us-east-1b, yet an offering was found")
	}
}

func BenchmarkLoad(b *testing.B) {
	for _, name := range pricing.Names() {
		b.Run(name, func(b *testing.B) {
			mustLoad(b, name) // parse outside the timer
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pricing.Load(name); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestFractionalGPUsAreLabelled(t *testing.T) {
	for catalog, sizes := range map[string]map[string]bool{
		"aws/us-east-1": {"g6f.large": true, "g6f.4xlarge": true, "g5.xlarge": false, "g4dn.12xlarge": false, "p5.48xlarge": false},
		"azure/eastus": {"Standard_NV6ads_A10_v5": true, "Standard_NV12ads_A10_v5": true, "Standard_NV18ads_A10_v5": true,
			"Standard_NV36ads_A10_v5": false, "Standard_NC4as_T4_v3": false, "Standard_ND96isr_H200_v5": false},
	} {
		cat, err := pricing.Load(catalog)
		if err != nil {
			t.Fatal(err)
		}
		for name, want := range sizes {
			it, ok := pricing.Lookup(cat, name)
			if !ok {
				t.Fatalf("%s missing from %s", name, catalog)
			}
			if got := it.Labels[v1.LabelGPUFractional] == "true"; got != want {
				t.Errorf("%s: fractional label = %v, want %v", name, got, want)
			}
		}
	}
}

// TestAWSTrainingFacts: the built-in AWS catalog says which types take EFA
// interfaces and cluster placement groups, as DescribeInstanceTypes does.
func TestAWSTrainingFacts(t *testing.T) {
	c, err := pricing.Load("aws/us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		efa       int64
		placement bool
	}{
		{"p5.48xlarge", 32, true},
		{"p5en.48xlarge", 16, true},
		{"p4d.24xlarge", 4, true},
		{"g5.xlarge", 0, true},
		{"t3.micro", 0, false}, // burstable types cannot join a cluster placement group
	}
	for _, tt := range tests {
		it, ok := pricing.Lookup(c, tt.name)
		if !ok {
			t.Fatalf("%s missing", tt.name)
		}
		q := it.Capacity[pricing.ResourceEFA]
		if q.Value() != tt.efa || it.Placement != tt.placement {
			t.Errorf("%s: efa %d placement %v, want %d %v", tt.name, q.Value(), it.Placement, tt.efa, tt.placement)
		}
	}
	// DeepCopy keeps them.
	if it, _ := pricing.Lookup(c.DeepCopy(), "p5.48xlarge"); !it.Placement {
		t.Error("DeepCopy dropped Placement")
	}
}

func TestAttachLimits(t *testing.T) {
	gcp := mustLoad(t, "gcp/us-central1")
	pd := cloudprovider.AttachLimitResource("pd.csi.storage.gke.io")
	for name, want := range map[string]int64{"e2-standard-16": 127, "a3-highgpu-8g": 127} {
		it, ok := pricing.Lookup(gcp, name)
		if !ok {
			t.Fatalf("gcp/us-central1 has no %s", name)
		}
		if q, ok := it.Capacity[pd]; !ok || q.Value() != want {
			t.Errorf("%s: capacity %s = %v, want %d", name, pd, it.Capacity[pd], want)
		}
	}

	doc := func(cloud, name string, volumes int) []byte {
		return []byte(fmt.Sprintf(`{"cloud":%q,"region":"r","zones":["us-east-1a"],
"sources":[{"id":"s","what":"specs","from":"test","date":"2026-12-05"}],
"types":[{"name":%q,"family":"f","vcpu":2,"memoryMiB":8192,"arch":"amd64","currentGeneration":true,
"zones":["us-east-1a"],"onDemand":0.096,"onDemandSource":"s","volumes":%d}]}`, cloud, name, volumes))
	}
	ebs := cloudprovider.AttachLimitResource("ebs.csi.aws.com")
	c, err := pricing.Parse("test.json", doc("aws", "m5.large", 25))
	if err != nil {
		t.Fatal(err)
	}
	if q := c.InstanceTypes[0].Capacity[ebs]; q.Value() != 25 {
		t.Errorf("volumes 25: capacity %s = %v, want 25", ebs, q.String())
	}
	c, err = pricing.Parse("test.json", doc("aws", "m5.large", 0))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.InstanceTypes[0].Capacity[ebs]; ok {
		t.Errorf("volumes unset on AWS: capacity has %s, want it absent (no limit known)", ebs)
	}
	if _, err := pricing.Parse("test.json", doc("aws", "m5.large", -1)); err == nil || !strings.Contains(err.Error(), "m5.large") {
		t.Errorf("volumes -1: err = %v, want an error naming the type", err)
	}
	c, err = pricing.Parse("test.json", doc("gcp", "e2-micro", 0))
	if err != nil {
		t.Fatal(err)
	}
	if q := c.InstanceTypes[0].Capacity[pd]; q.Value() != 15 {
		t.Errorf("gcp shared-core e2-micro: capacity %s = %v, want 15", pd, q.String())
	}
}
