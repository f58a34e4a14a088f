package main

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

func TestCatalogJSON(t *testing.T) {
	out, err := run(t, "catalog", "--cloud", "aws", "--region", "us-east-1", "--gpu", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []catalogRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("output is not JSON rows: %v", err)
	}
	var p5 *catalogRow
	for i := range rows {
		if rows[i].GPU == nil {
			t.Errorf("--gpu listed %s, which has no GPU", rows[i].Name)
		}
		if rows[i].Name == "p5.48xlarge" {
			p5 = &rows[i]
		}
	}
	if p5 == nil {
		t.Fatal("p5.48xlarge missing from the AWS GPU catalog")
	}
	// Compare against the catalog itself rather than hard-coded prices.
	c, err := pricing.Load("aws/us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	it, _ := pricing.Lookup(c, "p5.48xlarge")
	// Overhead, allocatable and every offering are exported, so a harness
	// can rebuild what the solver packs against without Go.
	if diff := cmp.Diff(it.Allocatable(), p5.Allocatable); diff != "" {
		t.Errorf("p5 allocatable (-catalog +json):\n%s", diff)
	}
	if diff := cmp.Diff(it.Overhead.KubeReserved, p5.Overhead.KubeReserved); diff != "" || len(p5.Overhead.KubeReserved) == 0 {
		t.Errorf("p5 kubeReserved (-catalog +json):\n%s", diff)
	}
	if len(p5.Offerings) != len(it.Offerings) {
		t.Errorf("p5 has %d offerings in JSON, %d in the catalog", len(p5.Offerings), len(it.Offerings))
	}
	for _, o := range it.Offerings {
		want := catalogOffering{Zone: o.Zone, CapacityType: o.CapacityType, PricePerHour: o.PricePerHour, Available: o.Available}
		if !slices.Contains(p5.Offerings, want) {
			t.Errorf("offering %+v missing from the JSON", want)
		}
	}
	if p5.GPU.Count != it.GPU.Count || p5.GPU.Name != it.GPU.Name || p5.GPU.MemoryMiB != it.GPU.MemoryMiB {
		t.Errorf("p5 GPU = %+v, want %d×%s %d MiB", p5.GPU, it.GPU.Count, it.GPU.Name, it.GPU.MemoryMiB)
	}
	for _, o := range it.Offerings {
		if o.Available && o.CapacityType == "on-demand" && *p5.OnDemandPerHour > o.PricePerHour {
			t.Errorf("on-demand price %v is not the cheapest zone's (%s has %v)", *p5.OnDemandPerHour, o.Zone, o.PricePerHour)
		}
		if o.Available && o.CapacityType == "spot" && (p5.SpotPerHour == nil || *p5.SpotPerHour > o.PricePerHour) {
			t.Errorf("spot price %v is not the cheapest zone's (%s has %v)", p5.SpotPerHour, o.Zone, o.PricePerHour)
		}
	}
	if diff := cmp.Diff(slices.Sorted(maps.Keys(it.GPU.MIGProfiles)), p5.GPU.MIGProfiles); diff != "" || len(p5.GPU.MIGProfiles) == 0 {
		t.Errorf("p5 MIG profiles (-want +got):\n%s", diff)
	}
}

func TestCatalogTable(t *testing.T) {
	out, err := run(t, "catalog", "--catalog", "gcp/us-central1")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "SPOT $/H") {
		t.Errorf("header = %q", lines[0])
	}
	if !strings.Contains(out, "instance types in gcp/us-central1") {
		t.Errorf("table lacks the summary line:\n%s", out)
	}
}

func TestCatalogSourceHook(t *testing.T) {
	old := catalogSources["aws"]
	t.Cleanup(func() { catalogSources["aws"] = old })
	var gotRegion, gotEndpoint string
	catalogSources["aws"] = func(_ context.Context, region, endpoint string) (*pricing.Catalog, error) {
		gotRegion, gotEndpoint = region, endpoint
		return builtinCatalog("aws", "us-east-1")
	}
	if _, err := run(t, "catalog", "--cloud", "aws", "--region", "eu-west-1", "--endpoint", "http://127.0.0.1:9", "-o", "json"); err != nil {
		t.Fatal(err)
	}
	if gotRegion != "eu-west-1" || gotEndpoint != "http://127.0.0.1:9" {
		t.Errorf("source called with region %q endpoint %q", gotRegion, gotEndpoint)
	}
}

// An offering the cloud does not sell now (Available=false, e.g. a spot pool
// out of capacity in a live listing) is never bought, so it is not the price.
func TestCatalogCheapestSkipsUnavailable(t *testing.T) {
	old := catalogSources["aws"]
	t.Cleanup(func() { catalogSources["aws"] = old })
	catalogSources["aws"] = func(context.Context, string, string) (*pricing.Catalog, error) {
		c, err := builtinCatalog("aws", "us-east-1")
		if err != nil {
			return nil, err
		}
		c = c.DeepCopy()
		it, _ := pricing.Lookup(c, "p5.48xlarge")
		it.Offerings = []cloudprovider.Offering{
			{Zone: "us-east-1a", CapacityType: "on-demand", PricePerHour: 1, Available: false},
			{Zone: "us-east-1b", CapacityType: "on-demand", PricePerHour: 2, Available: true},
			{Zone: "us-east-1a", CapacityType: "spot", PricePerHour: 0.5, Available: false},
		}
		return c, nil
	}
	out, err := run(t, "catalog", "--gpu", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []catalogRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(rows, func(r catalogRow) bool { return r.Name == "p5.48xlarge" })
	if i < 0 {
		t.Fatal("p5.48xlarge missing")
	}
	if p := rows[i].OnDemandPerHour; p == nil || *p != 2 {
		t.Errorf("on-demand price %s, want 2.0000: the $1 offering is unavailable", price(p))
	}
	if p := rows[i].SpotPerHour; p != nil {
		t.Errorf("spot price %s, want none: no spot offering is available", price(p))
	}
	if len(rows[i].Offerings) != 3 {
		t.Errorf("%d offerings listed, want all 3 with their availability", len(rows[i].Offerings))
	}
}
