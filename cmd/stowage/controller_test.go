package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stowage-k8s/stowage/pkg/operator"
)

const testKubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:6443
contexts:
- name: local
  context:
    cluster: local
    user: local
current-context: local
users:
- name: local
  user:
    token: test
`

// Both ways of finding the cluster must end with the flags' rate limits;
// --kubeconfig once left client-go's 5/s and made a scale-out take minutes.
func TestRestConfigAppliesClientLimits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(testKubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	opts := operator.DefaultOptions()
	opts.KubeClientQPS = 123
	opts.KubeClientBurst = 456
	for name, flag := range map[string]string{"--kubeconfig": path, "$KUBECONFIG": ""} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", path)
			cfg, err := restConfig(flag, opts)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.QPS != 123 || cfg.Burst != 456 || cfg.RateLimiter != nil {
				t.Errorf("QPS, Burst, RateLimiter = %g, %d, %v; want 123, 456, nil", cfg.QPS, cfg.Burst, cfg.RateLimiter)
			}
			if cfg.Host != "https://127.0.0.1:6443" {
				t.Errorf("Host = %q, want the kubeconfig's server", cfg.Host)
			}
		})
	}
}

// Issue 10 #9: an install that forgets the cloud must not start the fake one.
func TestControllerRequiresCloudProvider(t *testing.T) {
	t.Setenv("STOWAGE_CLOUD_PROVIDER", "")
	root := newRootCommand()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"controller", "--kubeconfig", "/nonexistent"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "--cloud-provider is required") {
		t.Fatalf("stowage controller without --cloud-provider: %v, want --cloud-provider is required", err)
	}
}

// A mistyped provider is named with the real choices, not pointed at the
// fake cloud (the only other one registered).
func TestControllerNamesTheProviders(t *testing.T) {
	t.Setenv("STOWAGE_CLOUD_PROVIDER", "")
	root := newRootCommand()
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	root.SetArgs([]string{"controller", "--kubeconfig", "/nonexistent", "--cloud-provider", "AWS", "--cluster-name", "c"})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "want aws, gcp or azure") {
		t.Fatalf("stowage controller --cloud-provider AWS: %v, want the real providers named", err)
	}
}
