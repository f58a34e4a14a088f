package contract

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/azure"
)

func byName(its []*cloudprovider.InstanceType) map[string]*cloudprovider.InstanceType {
	out := map[string]*cloudprovider.InstanceType{}
	for _, it := range its {
		out[it.Name] = it
	}
	return out
}

func priceOf(it *cloudprovider.InstanceType, zone, capacityType string) (float64, bool) {
	for _, o := range it.Offerings {
		if o.Zone == zone && o.CapacityType == capacityType {
			return o.PricePerHour, true
		}
	}
	return 0, false
}

func zonesOf(it *cloudprovider.InstanceType) []string {
	var out []string
	for _, o := range it.Offerings {
		if !slices.Contains(out, o.Zone) {
			out = append(out, o.Zone)
		}
	}
	slices.Sort(out)
	return out
}

// TestCatalogFromResourceSKUsAndRetailPrices lists the location's sizes
// through the real ResourceSKUs pager and prices them from the Retail Prices
// API: restrictions, unknown GPUs and Gen1-only sizes drop out, zones follow
// restrictions, GPU labels come from the size name, and Windows and Low
// Priority meters never price a Linux VM.
func TestCatalogFromResourceSKUsAndRetailPrices(t *testing.T) {
	e := newEnv(t)
	e.cloud.SetPrice("Standard_NC4as_T4_v3", 0.5, 0.12)
	its, err := e.provider.InstanceTypes(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.cloud.SKUFilter(); got != "location eq 'eastus'" {
		t.Errorf("Resource SKUs filter = %q, want the location", got)
	}
	types := byName(its)
	for _, gone := range []string{"Standard_NC6s_v3", "Standard_A2_v2", "Standard_ND96isr_MI300X_v5", "Premium_LRS"} {
		if _, ok := types[gone]; ok {
			t.Errorf("%s is offered; it is restricted, Generation 1, of unknown GPU or not a VM", gone)
		}
	}
	t4 := types["Standard_NC4as_T4_v3"]
	if t4 == nil {
		t.Fatalf("Standard_NC4as_T4_v3 missing from %d types", len(its))
	}
	for k, want := range map[string]string{v1.LabelGPUName: "t4", v1.LabelGPUCount: "1", v1.LabelGPUMemory: "16384",
		v1.LabelGPUManufacturer: "nvidia", v1.LabelInstanceFamily: "NCas_T4_v3", v1.LabelArch: "amd64", v1.LabelInstanceCPU: "4"} {
		if got := t4.Labels[k]; got != want {
			t.Errorf("NC4as_T4_v3 label %s = %q, want %q", k, got, want)
		}
	}
	if od, _ := priceOf(t4, "eastus-1", v1.CapacityTypeOnDemand); od != 0.5 {
		t.Errorf("on-demand price %v, want the Retail Prices Linux meter 0.5 (not Windows)", od)
	}
	if spot, _ := priceOf(t4, "eastus-2", v1.CapacityTypeSpot); spot != 0.12 {
		t.Errorf("spot price %v, want the Spot meter 0.12 (not Low Priority)", spot)
	}
	if disks := t4.Capacity[cloudprovider.AttachLimitResource("disk.csi.azure.com")]; disks.Value() != 8 {
		t.Errorf("NC4as_T4_v3 attaches %s data disks, want MaxDataDiskCount 8", disks.String())
	}
	if !t4.Placement {
		t.Error("NC sizes can share a proximity placement group")
	}
	if got := zonesOf(types["Standard_NC24ads_A100_v4"]); !slices.Equal(got, []string{"eastus-1", "eastus-2"}) {
		t.Errorf("NC24ads_A100_v4 zones = %v, want zone 3 dropped by its restriction", got)
	}
	for size, fractional := range map[string]bool{"Standard_NV6ads_A10_v5": true, "Standard_NV18ads_A10_v5": true, "Standard_NV36ads_A10_v5": false} {
		it := types[size]
		if it == nil {
			t.Fatalf("%s missing", size)
		}
		if got := it.Labels[v1.LabelGPUFractional] == "true"; got != fractional {
			t.Errorf("%s fractional = %v, want %v", size, got, fractional)
		}
		if it.Placement {
			t.Errorf("%s: NV sizes are not offered for placement", size)
		}
	}
	if nv6 := types["Standard_NV6ads_A10_v5"]; nv6.Labels[v1.LabelGPUMemory] != "4096" || nv6.Labels[v1.LabelGPUName] != "a10" {
		t.Errorf("NV6ads_A10_v5 GPU = %s %s MiB, want a10 4096", nv6.Labels[v1.LabelGPUName], nv6.Labels[v1.LabelGPUMemory])
	}
	if h200 := types["Standard_ND96isr_H200_v5"]; h200 == nil || h200.Labels[v1.LabelGPUName] != "h200" || h200.Labels[v1.LabelGPUCount] != "8" {
		t.Errorf("ND96isr_H200_v5 = %+v, want 8 x h200", h200)
	}
	if got := priceSource(t, e, "api"); got == 0 {
		t.Error("stowage_azure_price_source{source=api} is 0 with the Retail Prices API up")
	}
}

// priceSource is the stowage_azure_price_source gauge for source.
func priceSource(t *testing.T, e *env, source string) float64 {
	t.Helper()
	families, err := e.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "stowage_azure_price_source" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no stowage_azure_price_source{source=%q}", source)
	return 0
}

// TestPricesFallBackToStatic keeps serving when the Retail Prices API is
// down (static prices, said by the metric) and when Resource SKUs are down
// before anything was ever fetched (the built-in catalog).
func TestPricesFallBackToStatic(t *testing.T) {
	e := newEnv(t)
	e.cloud.SetPricesDown(true)
	its, err := e.provider.InstanceTypes(e.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t4 := byName(its)["Standard_NC4as_T4_v3"]
	if od, _ := priceOf(t4, "eastus-1", v1.CapacityTypeOnDemand); od != 0.526 {
		t.Errorf("on-demand %v, want the built-in 0.526", od)
	}
	if priceSource(t, e, "static") == 0 || priceSource(t, e, "api") != 0 {
		t.Error("the price-source metric must say every price is static")
	}

	down := newEnv(t)
	down.cloud.SetSKUsDown(true)
	its, err = down.provider.InstanceTypes(down.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := byName(its)["Standard_ND96isr_H100_v5"]; !ok || len(its) < 40 {
		t.Errorf("built-in fallback has %d types", len(its))
	}
}

// TestRetailPricesOverHTTP reads prices from an httptest server through
// the plain HTTP client, following NextPageLink, and refuses a page link to
// another host.
func TestRetailPricesOverHTTP(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(e.cloud.Handler())
	t.Cleanup(srv.Close)
	rp := &azure.RetailPrices{BaseURL: srv.URL, Client: srv.Client()}
	od, spot, err := rp.Prices(e.ctx, "eastus")
	if err != nil {
		t.Fatal(err)
	}
	if od["Standard_ND96isr_H100_v5"] != 98.32 || spot["Standard_NC24ads_A100_v4"] != 0.73 {
		t.Errorf("prices: H100 od %v, A100 spot %v", od["Standard_ND96isr_H100_v5"], spot["Standard_NC24ads_A100_v4"])
	}
	if n := e.cloud.Calls("RetailPrices.Get"); n < 3 {
		t.Errorf("%d pages read; the catalog's meters span several pages of 100", n)
	}
	if _, _, err := rp.Prices(e.ctx, "westus2"); err == nil {
		t.Error("a region the API has no meters for must fail (the fake refuses the filter)")
	}
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"Items":[],"NextPageLink":"http://prices.attacker.invalid/api/retail/prices?$skip=100"}`))
	}))
	t.Cleanup(evil.Close)
	other := &azure.RetailPrices{BaseURL: evil.URL, Client: evil.Client()}
	if _, _, err := other.Prices(e.ctx, "eastus"); err == nil || !strings.Contains(err.Error(), "leaves") {
		t.Errorf("NextPageLink to another host: err = %v, want refused", err)
	}
}

// TestPoolWithoutNodeClassOffersNothing: Azure launches need an AKSNodeClass.
func TestPoolWithoutNodeClassOffersNothing(t *testing.T) {
	e := newEnv(t)
	p := pool("x")
	p.Spec.Template.Spec.NodeClassRef = nil
	if _, err := e.provider.InstanceTypes(e.ctx, p); !errors.Is(err, azure.ErrNodeClassNotReady) || !strings.Contains(err.Error(), "nodeClassRef") {
		t.Errorf("InstanceTypes = %v, want an error naming nodeClassRef", err)
	}
}
