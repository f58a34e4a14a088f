package main

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/spf13/pflag"

	"github.com/stowage-k8s/stowage/providers/aws/mototest"
)

// TestAWSCatalogFromEndpoint lists the catalog live from moto. The Price
// List API is not served there, so prices fall back to the static catalog.
func TestAWSCatalogFromEndpoint(t *testing.T) {
	moto, err := mototest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(moto.Stop)
	out, err := run(t, "catalog", "--cloud", "aws", "--region", "us-east-1", "--endpoint", moto.Endpoint, "--gpu", "-o", "json")
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
	p5, ok := found["p5.48xlarge"]
	if !ok {
		t.Fatalf("p5.48xlarge missing from %d live GPU rows", len(rows))
	}
	if p5.GPU == nil || p5.GPU.Name != "h100" || p5.GPU.Count != 8 || p5.OnDemandPerHour == nil || *p5.OnDemandPerHour <= 0 {
		t.Errorf("p5.48xlarge row = %+v", p5)
	}
	if _, ok := found["m5.large"]; ok {
		t.Error("--gpu listed m5.large")
	}
}

func TestAWSControllerOptionsNeedRegion(t *testing.T) {
	if _, err := awsOperatorOptions(context.Background(), "test", awsFlags{}); err == nil {
		t.Fatal("want an error naming --aws-region")
	}
	opts, err := awsOperatorOptions(context.Background(), "test", awsFlags{region: "us-east-1", endpoint: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 2 {
		t.Errorf("got %d operator options, want the provider and the EC2NodeClass controller", len(opts))
	}
}

func TestAWSFlags(t *testing.T) {
	fs := pflag.NewFlagSet("controller", pflag.ContinueOnError)
	var f awsFlags
	addAWSFlags(fs, &f)
	if err := fs.Parse([]string{"--aws-region=eu-west-1", "--aws-interruption-queue=https://sqs.eu-west-1.amazonaws.com/1/q",
		"--aws-cluster-endpoint=https://k8s", "--aws-cluster-ca-bundle=Q0E=", "--aws-cluster-cidr=10.100.0.0/16"}); err != nil {
		t.Fatal(err)
	}
	want := awsFlags{region: "eu-west-1", interruptionQueue: "https://sqs.eu-west-1.amazonaws.com/1/q",
		clusterEndpoint: "https://k8s", clusterCABundle: "Q0E=", clusterCIDR: "10.100.0.0/16"}
	if f != want {
		t.Errorf("flags = %+v, want %+v", f, want)
	}
}
