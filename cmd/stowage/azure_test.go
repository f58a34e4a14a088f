package main

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/stowage-k8s/stowage/providers/azure/azuretest"
)

func catalogRowsOf(t *testing.T, out string) map[string]catalogRow {
	t.Helper()
	var rows []catalogRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("output is not JSON rows: %v\n%s", err, out)
	}
	found := map[string]catalogRow{}
	for _, r := range rows {
		found[r.Name] = r
	}
	return found
}

// TestAzureCatalogOffline lists the built-in GPU sizes with prices.
func TestAzureCatalogOffline(t *testing.T) {
	out, err := run(t, "catalog", "--catalog", "azure/eastus", "--gpu", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	rows := catalogRowsOf(t, out)
	for size, gpu := range map[string]string{"Standard_NC4as_T4_v3": "t4", "Standard_NV36ads_A10_v5": "a10", "Standard_NC24ads_A100_v4": "a100",
		"Standard_ND96isr_H100_v5": "h100", "Standard_ND96isr_H200_v5": "h200", "Standard_NV6ads_A10_v5": "a10"} {
		r, ok := rows[size]
		if !ok || r.GPU == nil || r.GPU.Name != gpu || r.OnDemandPerHour == nil || *r.OnDemandPerHour <= 0 {
			t.Errorf("%s = %+v, want a %s row with a price", size, r, gpu)
		}
	}
	if _, ok := rows["Standard_D4s_v5"]; ok {
		t.Error("--gpu listed a CPU size")
	}
}

// TestAzureCatalogFromEndpoint lists the catalog live: Resource SKUs and
// Retail Prices served over HTTP by the in-process Azure.
func TestAzureCatalogFromEndpoint(t *testing.T) {
	cloud, err := azuretest.New(azuretest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cloud.SetPrice("Standard_NC4as_T4_v3", 0.5, 0.12)
	srv := httptest.NewServer(cloud.Handler())
	t.Cleanup(srv.Close)
	t.Setenv("AZURE_SUBSCRIPTION_ID", "")
	if _, err := run(t, "catalog", "--cloud", "azure", "--region", "eastus", "--endpoint", srv.URL); err == nil || !strings.Contains(err.Error(), "AZURE_SUBSCRIPTION_ID") {
		t.Errorf("without a subscription: %v, want an error naming AZURE_SUBSCRIPTION_ID", err)
	}
	t.Setenv("AZURE_SUBSCRIPTION_ID", cloud.SubscriptionID())
	out, err := run(t, "catalog", "--cloud", "azure", "--region", "eastus", "--endpoint", srv.URL, "--gpu", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	rows := catalogRowsOf(t, out)
	t4, ok := rows["Standard_NC4as_T4_v3"]
	if !ok || t4.OnDemandPerHour == nil || *t4.OnDemandPerHour != 0.5 || t4.SpotPerHour == nil || *t4.SpotPerHour != 0.12 {
		t.Errorf("NC4as_T4_v3 = %+v, want the live prices 0.5 and 0.12", t4)
	}
	if _, ok := rows["Standard_NC6s_v3"]; ok {
		t.Error("a size restricted for the subscription was listed")
	}
	if cloud.Calls("ResourceSKUs.List") == 0 || cloud.Calls("RetailPrices.Get") == 0 {
		t.Error("the live listing did not read Resource SKUs and Retail Prices")
	}
}

func TestAzureControllerOptionsNeedSettings(t *testing.T) {
	full := azureFlags{region: "eastus", subscriptionID: "sub", resourceGroup: "MC_rg", endpoint: "http://127.0.0.1:1",
		clusterEndpoint: "https://aks:443", clusterCABundle: "Q0E=", bootstrapToken: "abcdef.0123456789abcdef"}
	for flag, unset := range map[string]func(*azureFlags){
		"--azure-region": func(f *azureFlags) { f.region = "" }, "--azure-subscription-id": func(f *azureFlags) { f.subscriptionID = "" },
		"--azure-resource-group": func(f *azureFlags) { f.resourceGroup = "" }, "--azure-bootstrap-token": func(f *azureFlags) { f.bootstrapToken = "" },
		"--azure-cluster-endpoint": func(f *azureFlags) { f.clusterEndpoint = "" }, "--azure-cluster-ca-bundle": func(f *azureFlags) { f.clusterCABundle = "" },
	} {
		f := full
		unset(&f)
		if _, err := azureOperatorOptions(context.Background(), f, true); err == nil || !strings.Contains(err.Error(), flag) {
			t.Errorf("without %s: %v, want an error naming it", flag, err)
		}
	}
	opts, err := azureOperatorOptions(context.Background(), full, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 3 {
		t.Errorf("got %d operator options, want the provider, the AKSNodeClass controller and the interruption source", len(opts))
	}
	// --interruption=false: no source to feed nothing with.
	if opts, err = azureOperatorOptions(context.Background(), full, false); err != nil || len(opts) != 2 {
		t.Errorf("with interruption off: %d operator options (%v), want the provider and the AKSNodeClass controller", len(opts), err)
	}
}

func TestAzureFlags(t *testing.T) {
	fs := pflag.NewFlagSet("controller", pflag.ContinueOnError)
	var f azureFlags
	addAzureFlags(fs, &f)
	if err := fs.Parse([]string{"--azure-region=westeurope", "--azure-subscription-id=sub", "--azure-resource-group=MC_rg",
		"--azure-cluster-endpoint=https://aks:443", "--azure-cluster-ca-bundle=Q0E=", "--azure-bootstrap-token=abcdef.0123456789abcdef",
		"--azure-kubelet-identity=/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/k",
		"--azure-vm-poll-interval=2m"}); err != nil {
		t.Fatal(err)
	}
	want := azureFlags{region: "westeurope", subscriptionID: "sub", resourceGroup: "MC_rg", clusterEndpoint: "https://aks:443",
		clusterCABundle: "Q0E=", bootstrapToken: "abcdef.0123456789abcdef", clusterDNS: "10.0.0.10",
		kubeletIdentity: "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/k", vmPollInterval: 2 * time.Minute}
	if f != want {
		t.Errorf("flags = %+v, want %+v", f, want)
	}
}
