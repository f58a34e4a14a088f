package operator

import (
	"context"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func TestNewRefusesUnknownProvider(t *testing.T) {
	o := DefaultOptions()
	o.CloudProvider = "aws"
	noop := func(context.Context, ProviderDeps) (cloudprovider.CloudProvider, error) { return nil, nil }
	_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, o,
		WithProvider("fake", noop), WithProvider("gcp", noop))
	want := `--cloud-provider "aws" is not available; available: fake, gcp`
	if err == nil || err.Error() != want {
		t.Fatalf("New() error = %v, want %q", err, want)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	o := DefaultOptions()
	o.CloudProvider = "fake"
	o.LogFormat = "xml"
	_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, o)
	if err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Fatalf("New() error = %v, want one naming --log-format", err)
	}
}

func TestNewRefusesNoProvider(t *testing.T) {
	noop := func(context.Context, ProviderDeps) (cloudprovider.CloudProvider, error) { return nil, nil }
	_, err := New(context.Background(), &rest.Config{Host: "https://127.0.0.1:1"}, DefaultOptions(), WithProvider("fake", noop))
	if err == nil || !strings.Contains(err.Error(), "--cloud-provider is required") {
		t.Fatalf("New() without a provider: %v, want --cloud-provider is required", err)
	}
}
