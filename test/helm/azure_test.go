//go:build unix

package helm

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure/azuretest"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// TestAzureChartStartsController installs the chart with values-azure.yaml
// into a local control plane and runs the real controller binary with the
// Deployment's environment (the bootstrap token resolved from its Secret)
// and the chart's RBAC, against an in-process Azure served over HTTP: it
// starts as --cloud-provider azure, lists the location's VM sizes and
// prices, and resolves an AKSNodeClass to Ready.
func TestAzureChartStartsController(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local control plane")
	}
	cloud, err := azuretest.New(azuretest.Options{ResourceGroup: "MC_prod-rg_prod-aks_eastus"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(cloud.Handler())
	t.Cleanup(srv.Close)

	cp := controlplane.StartT(t, controlplane.Options{})
	ctx := context.Background()
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, azv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: releaseNamespace}}); err != nil {
		t.Fatal(err)
	}
	token := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: releaseNamespace, Name: "stowage-bootstrap-token"},
		StringData: map[string]string{"token": "abcdef.0123456789abcdef"}}
	if err := c.Create(ctx, token); err != nil {
		t.Fatal(err)
	}
	out, err := helm(t, "install", "stowage", chart, "-f", chart+"/values-azure.yaml",
		"--kubeconfig", cp.KubeconfigPath, "--namespace", releaseNamespace)
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: "stowage"}, &d); err != nil {
		t.Fatal(err)
	}
	container := d.Spec.Template.Spec.Containers[0]
	env := chartEnv(container)
	for _, e := range container.Env {
		if ref := e.ValueFrom; ref != nil && ref.SecretKeyRef != nil {
			var s corev1.Secret
			if err := c.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: ref.SecretKeyRef.Name}, &s); err != nil {
				t.Fatalf("env %s names Secret %s: %v", e.Name, ref.SecretKeyRef.Name, err)
			}
			env = append(env, e.Name+"="+string(s.Data[ref.SecretKeyRef.Key]))
		}
	}
	if !strings.Contains(strings.Join(env, " "), "STOWAGE_CLOUD_PROVIDER=azure") ||
		!strings.Contains(strings.Join(env, " "), "STOWAGE_AZURE_BOOTSTRAP_TOKEN=abcdef.0123456789abcdef") {
		t.Fatalf("chart env %v lacks the Azure provider or its bootstrap token", env)
	}
	// Workload Identity's webhook would inject these; the fake endpoint needs no token.
	env = append(env, "STOWAGE_AZURE_ENDPOINT="+srv.URL)

	metricsAddr, healthAddr := freeAddr(t), freeAddr(t)
	args := append(append([]string(nil), container.Args...),
		"--kubeconfig", impersonatingKubeconfig(t, cp.KubeconfigPath, releaseNamespace, d.Spec.Template.Spec.ServiceAccountName),
		"--leader-elect", "--leader-election-namespace", releaseNamespace,
		"--metrics-bind-address", metricsAddr, "--health-probe-bind-address", healthAddr)
	ctrl := startController(t, buildStowage(t), args, env)

	eventually(t, ctrl, "/readyz to return 200", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, "http://"+healthAddr+"/readyz")
	})
	eventually(t, ctrl, "the catalog to be listed from Resource SKUs and Retail Prices", func(context.Context) (bool, error) {
		return cloud.Calls("ResourceSKUs.List") > 0 && len(ctrl.grep(`"prices in use"`)) > 0, nil
	})
	if lines := ctrl.grep(`"prices in use"`); !strings.Contains(lines[0], `"api"`) || strings.Contains(lines[0], `"api":0`) {
		t.Errorf("price source log line %s, want prices from the API", lines[0])
	}
	if lines := ctrl.grep("cloudProvider"); len(lines) == 0 || !strings.Contains(lines[0], `"azure"`) {
		t.Errorf("start-up line %v, want cloudProvider azure", lines)
	}

	// The locally built API server reports no release version, so the
	// kubelet version is pinned rather than taken from it.
	nc := &azv1.AKSNodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: azv1.AKSNodeClassSpec{SubnetID: cloud.SubnetID(), KubernetesVersion: "1.37.2"}}
	if err := c.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctrl, "the AKSNodeClass to become Ready", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
			return false, err
		}
		if r := conditions.Get(nc.Status.Conditions, azv1.ConditionReady); r == nil || r.Status != metav1.ConditionTrue {
			return false, fmt.Errorf("Ready condition %+v", r)
		}
		return true, nil
	})
	if len(nc.Status.Images) == 0 || nc.Status.Images[0].Version != azuretest.LatestImageVersion || nc.Status.KubernetesVersion != "1.37.2" {
		t.Errorf("status = %+v", nc.Status)
	}
}
