package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/spf13/pflag"

	"github.com/stowage-k8s/stowage/providers/gcp/gcetest"
)

// TestGCPCatalogFromEndpoint lists the catalog live from the fake Compute
// Engine and Billing server, with the real clients.
func TestGCPCatalogFromEndpoint(t *testing.T) {
	srv := gcetest.Start(gcetest.Options{})
	t.Cleanup(srv.Close)
	srv.Seed()
	t.Setenv(gcpProjectEnv[0], srv.Project)
	out, err := run(t, "catalog", "--cloud", "gcp", "--region", "us-central1", "--endpoint", srv.URL, "--gpu", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []catalogRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("output is not JSON rows: %v", err)
	}
	found := map[string]catalogRow{}
	for _, r := range rows {
		found[r.Name] = r
	}
	for name, want := range map[string]struct {
		gpu   string
		count int
	}{"n1-standard-4-t4x1": {"t4", 1}, "g2-standard-4": {"l4", 1}, "a3-megagpu-8g": {"h100", 8}} {
		r, ok := found[name]
		if !ok || r.GPU == nil || r.GPU.Name != want.gpu || r.GPU.Count != want.count || r.OnDemandPerHour == nil || *r.OnDemandPerHour <= 0 {
			t.Errorf("%s row = %+v, want %d x %s with a price", name, r, want.count, want.gpu)
		}
	}
	if _, ok := found["e2-standard-4"]; ok {
		t.Error("--gpu listed e2-standard-4")
	}
}

func TestGCPCatalogNeedsProjectForEndpoint(t *testing.T) {
	for _, env := range gcpProjectEnv {
		t.Setenv(env, "")
	}
	if _, err := run(t, "catalog", "--cloud", "gcp", "--region", "us-central1", "--endpoint", "http://127.0.0.1:1"); err == nil {
		t.Fatal("want an error naming the project variable")
	}
}

// TestGCPBuiltinCatalogHasAttachedGPUs is the offline listing the docs show.
func TestGCPBuiltinCatalogHasAttachedGPUs(t *testing.T) {
	out, err := run(t, "catalog", "--catalog", "gcp/us-central1", "--gpu", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rows []catalogRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	found := map[string]catalogRow{}
	for _, r := range rows {
		found[r.Name] = r
	}
	for _, name := range []string{"n1-standard-8-t4x1", "n1-standard-8-v100x1", "n1-standard-16-p4x2", "g2-standard-4",
		"a3-megagpu-8g", "a3-ultragpu-8g", "a4-highgpu-8g"} {
		if r, ok := found[name]; !ok || r.OnDemandPerHour == nil || r.GPU == nil {
			t.Errorf("built-in gcp catalog lacks %s with a price and GPU (%+v)", name, r)
		}
	}
}

func TestGCPControllerOptions(t *testing.T) {
	onGCP := ""
	defer func(f func(context.Context) string) { metadataProject = f }(metadataProject)
	metadataProject = func(context.Context) string { return onGCP }
	if _, err := gcpOperatorOptions(context.Background(), "test", gcpFlags{region: "us-central1"}); err == nil {
		t.Fatal("want an error naming --gcp-project")
	}
	if _, err := gcpOperatorOptions(context.Background(), "test", gcpFlags{project: "p"}); err == nil {
		t.Fatal("want an error naming --gcp-region")
	}
	onGCP = "from-metadata"
	if _, err := gcpOperatorOptions(context.Background(), "test", gcpFlags{region: "us-central1", endpoint: "http://127.0.0.1:1"}); err != nil {
		t.Fatalf("on Google Cloud the project comes from the metadata server: %v", err)
	}
	opts, err := gcpOperatorOptions(context.Background(), "test", gcpFlags{project: "p", region: "us-central1", endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 2 {
		t.Errorf("got %d operator options, want the provider and the GCENodeClass controller", len(opts))
	}
	opts, err = gcpOperatorOptions(context.Background(), "test", gcpFlags{project: "p", region: "us-central1", endpoint: "http://127.0.0.1:1", approveCSRs: true})
	if err != nil || len(opts) != 3 {
		t.Errorf("with --gcp-approve-kubelet-csrs got %d options (%v), want the CSR approver too", len(opts), err)
	}
}

func TestGCPFlags(t *testing.T) {
	fs := pflag.NewFlagSet("controller", pflag.ContinueOnError)
	var f gcpFlags
	addGCPFlags(fs, &f)
	if err := fs.Parse([]string{"--gcp-project=ml-prod", "--gcp-region=us-central1", "--gcp-cluster=train", "--gcp-location=us-central1-a",
		"--gcp-endpoint=http://127.0.0.1:9", "--gcp-approve-kubelet-csrs"}); err != nil {
		t.Fatal(err)
	}
	want := gcpFlags{project: "ml-prod", region: "us-central1", cluster: "train", location: "us-central1-a", endpoint: "http://127.0.0.1:9", approveCSRs: true}
	if f != want {
		t.Errorf("flags = %+v, want %+v", f, want)
	}
}
