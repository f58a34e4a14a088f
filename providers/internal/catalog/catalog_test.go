package catalog

import (
	"testing"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

func TestStaticLoad(t *testing.T) {
	tests := map[string]struct {
		configured, regional, def string
		wantRegion                string // "" wants an error
		wantDefaulted             bool
	}{
		"region's own":          {regional: "aws/us-east-1", def: "aws/us-east-1", wantRegion: "us-east-1"},
		"region without one":    {regional: "gcp/europe-west4", def: "gcp/us-central1", wantRegion: "us-central1", wantDefaulted: true},
		"configured":            {configured: "azure/eastus", regional: "azure/westeurope", def: "azure/eastus", wantRegion: "eastus"},
		"configured must exist": {configured: "aws/nowhere-1", regional: "aws/us-east-1", def: "aws/us-east-1"},
		"default missing":       {regional: "aws/nowhere-1", def: "aws/nowhere-2", wantDefaulted: true},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			defaulted := 0
			var prepared []bool
			s := Static{Configured: tt.configured, Regional: tt.regional, Default: tt.def,
				Defaulted: func(logr.Logger) { defaulted++ },
				Prepare:   func(_ *pricing.Catalog, d bool) { prepared = append(prepared, d) }}
			c, err := s.Load(logr.Discard())
			switch {
			case tt.wantRegion == "" && (err == nil || s.Catalog() != nil):
				t.Errorf("Load = %v, %v; want an error and no catalog", c, err)
			case tt.wantRegion != "" && (err != nil || c.Region != tt.wantRegion || s.Catalog() != c):
				t.Errorf("Load = %v, %v; want %s's catalog, kept", c, err, tt.wantRegion)
			}
			if tt.wantRegion != "" {
				// Kept: neither loaded nor prepared again.
				if again, err := s.Load(logr.Discard()); again != c || err != nil {
					t.Errorf("second Load = %p, %v; want the kept %p", again, err, c)
				}
				if diff := cmp.Diff([]bool{tt.wantDefaulted}, prepared); diff != "" {
					t.Errorf("Prepare calls (-want +got):\n%s", diff)
				}
			}
			if (defaulted == 1) != tt.wantDefaulted || defaulted > 1 {
				t.Errorf("Defaulted called %d times; want once: %v", defaulted, tt.wantDefaulted)
			}
		})
	}
}

func TestStaticBeforeLoad(t *testing.T) {
	s := Static{Regional: "aws/us-east-1"}
	if _, ok := s.Price(cloudprovider.OfferingID{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand}); ok {
		t.Error("an unloaded catalog has prices")
	}
	if s.FallbackSources() != nil {
		t.Error("an unloaded catalog has sources")
	}
}

func TestPriceSourcesUpdate(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := NewPriceSources(reg, "aws", "Pricing API")
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		counts      map[PriceSource]int
		wantChanged bool
	}{
		{map[PriceSource]int{}, true}, // the first update always reports
		{map[PriceSource]int{PriceSourceStatic: 0}, false},
		{map[PriceSource]int{PriceSourceAPI: 3, PriceSourceStatic: 1}, true},
		{map[PriceSource]int{PriceSourceAPI: 3, PriceSourceStatic: 1}, false},
	}
	for i, s := range steps {
		if got := g.Update(s.counts); got != s.wantChanged {
			t.Errorf("step %d: Update = %v, want %v", i, got, s.wantChanged)
		}
	}
	// A second provider in the process shares the registered gauge.
	again, err := NewPriceSources(reg, "aws", "Pricing API")
	if err != nil {
		t.Fatal(err)
	}
	m := &dto.Metric{}
	if err := again.WithLabelValues("api").Write(m); err != nil || m.GetGauge().GetValue() != 3 {
		t.Errorf("shared gauge api = %v (%v), want 3", m.GetGauge().GetValue(), err)
	}
	// One that clashes (other help text) is an error.
	if _, err := NewPriceSources(reg, "aws", "another API"); err == nil {
		t.Error("a clashing gauge registered without error")
	}
}

func TestInstanceTypes(t *testing.T) {
	if its, err := InstanceTypes("empty", pricing.File{Cloud: "aws"}); its != nil || err != nil {
		t.Errorf("empty file = %v, %v; want none", its, err)
	}
	f := pricing.File{Cloud: "aws", Region: "us-east-1", Sources: []pricing.FileSource{{ID: "t", What: "specs", From: "test", Date: "2025-01-01"}},
		Types: []pricing.FileType{
			{Name: "m5.large", Family: "m5", VCPU: 2, MemoryMiB: 8192, Arch: "amd64", CurrentGeneration: true,
				Zones: []string{"us-east-1b", "us-east-1a"}, OnDemand: 1, OnDemandSource: "t"},
			{Name: "m5.xlarge", Family: "m5", VCPU: 4, MemoryMiB: 16384, Arch: "amd64", CurrentGeneration: true,
				Zones: []string{"us-east-1c"}, OnDemand: 1, OnDemandSource: "t"},
		}}
	its, err := InstanceTypes("test file", f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, it := range its {
		names = append(names, it.Name)
		if len(it.Offerings) != 0 {
			t.Errorf("%s has offerings %v, want none", it.Name, it.Offerings)
		}
	}
	if diff := cmp.Diff([]string{"m5.large", "m5.xlarge"}, names); diff != "" {
		t.Errorf("types (-want +got):\n%s", diff)
	}
}
