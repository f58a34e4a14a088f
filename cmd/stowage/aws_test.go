package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

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

func TestAWSControllerOptionsNeedRegionAndJoinSettings(t *testing.T) {
	if _, err := awsOperatorOptions(context.Background(), "test", awsFlags{}); err == nil || !strings.Contains(err.Error(), "--aws-region") {
		t.Fatalf("err = %v, want one naming --aws-region", err)
	}
	_, err := awsOperatorOptions(context.Background(), "prod", awsFlags{region: "us-east-1", endpoint: "http://127.0.0.1:1"})
	for _, want := range []string{"aws eks describe-cluster --name prod", "--aws-cluster-endpoint: missing", "--aws-cluster-ca-bundle: missing", "--aws-cluster-cidr: missing"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %q", err, want)
		}
	}
	opts, err := awsOperatorOptions(context.Background(), "test", awsFlags{region: "us-east-1", endpoint: "http://127.0.0.1:1",
		clusterEndpoint: "https://k8s.example", clusterCABundle: testCABundle(t), clusterCIDR: "10.100.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	if len(opts) != 3 {
		t.Errorf("got %d operator options, want the provider, the EC2NodeClass and the topology controllers", len(opts))
	}
}

// testCABundle is base64 of a self-signed PEM certificate.
func testCABundle(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
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

func TestAWSIAMPolicyCommand(t *testing.T) {
	out, err := run(t, "aws", "iam-policy", "--cluster-name", "prod-eks", "--account", "111122223333", "--region", "eu-west-1",
		"--node-role-arn", "arn:aws:iam::111122223333:role/eks-nodes")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"aws:ResourceTag/stowage.dev/cluster": "prod-eks"`, `"arn:aws:sqs:eu-west-1:111122223333:stowage-prod-eks"`,
		`"arn:aws:iam::111122223333:role/eks-nodes"`} {
		if !strings.Contains(out, want) {
			t.Errorf("policy lacks %s", want)
		}
	}
	if strings.Contains(out, "${") {
		t.Error("rendered policy still has placeholders")
	}
	if _, err := run(t, "aws", "iam-policy", "--cluster-name", "prod-eks"); err == nil || !strings.Contains(err.Error(), "--account") {
		t.Errorf("err = %v, want one naming --account", err)
	}
	tmpl, err := run(t, "aws", "iam-policy", "--template")
	if err != nil || !strings.Contains(tmpl, "${CLUSTER}") {
		t.Errorf("--template = %v, %v; want the placeholders", tmpl[:min(len(tmpl), 40)], err)
	}
}
