//go:build unix

package helm

import (
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/gcp/gcetest"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// TestInstallGCPIntoControlPlane installs the chart with values-gcp.yaml and
// runs the real binary with the Deployment's environment (which alone picks
// --cloud-provider gcp) and the chart's RBAC, pointed at the fake Compute
// Engine: the controller must become ready and resolve a GCENodeClass.
func TestInstallGCPIntoControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local control plane")
	}
	srv := gcetest.Start(gcetest.Options{})
	t.Cleanup(srv.Close)
	srv.Seed()
	cp := controlplane.StartT(t, controlplane.Options{})
	out, err := helm(t, "install", "stowage", chart, "-f", chart+"/values-gcp.yaml",
		"--set", "clusterName="+srv.Cluster, "--set", "region="+srv.Region, "--set", "gcp.project="+srv.Project,
		"--kubeconfig", cp.KubeconfigPath, "--namespace", releaseNamespace, "--create-namespace")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	ctx := context.Background()
	c := cp.Client
	if err := gcpv1.AddToScheme(c.Scheme()); err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: "stowage"}, &d); err != nil {
		t.Fatalf("reading the chart's Deployment: %v", err)
	}
	container := d.Spec.Template.Spec.Containers[0]
	env := chartEnv(container)
	if !containsString(env, "STOWAGE_CLOUD_PROVIDER=gcp") {
		t.Fatalf("the chart's environment does not select gcp: %v", env)
	}
	bin := buildStowage(t)
	kubeconfig := impersonatingKubeconfig(t, cp.KubeconfigPath, releaseNamespace, d.Spec.Template.Spec.ServiceAccountName)
	healthAddr, metricsAddr := freeAddr(t), freeAddr(t)
	args := append(append([]string(nil), container.Args...),
		"--kubeconfig", kubeconfig,
		"--leader-election-namespace", releaseNamespace,
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", healthAddr,
	)
	ctrl := startController(t, bin, args, append(env, "STOWAGE_GCP_ENDPOINT="+srv.URL))
	eventually(t, ctrl, "/readyz to return 200", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, "http://"+healthAddr+"/readyz")
	})
	if lines := ctrl.grep(`"cloudProvider":"gcp"`); len(lines) == 0 {
		t.Errorf("the controller did not log that it runs the gcp provider")
	}
	nc := &gcpv1.GCENodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: gcpv1.GCENodeClassSpec{ServiceAccount: "gke-nodes@" + srv.Project + ".iam.gserviceaccount.com"}}
	if err := c.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	eventually(t, ctrl, "the GCENodeClass Ready under the chart's RBAC", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
			return false, err
		}
		return conditions.IsTrue(nc.Status.Conditions, gcpv1.ConditionReady), nil
	})
	eventually(t, ctrl, "/metrics to say prices come from the Billing API", func(ctx context.Context) (bool, error) {
		families, err := scrape(ctx, "http://"+metricsAddr+"/metrics")
		if err != nil {
			return false, err
		}
		v, ok := sample(families, "stowage_gcp_price_source", map[string]string{"source": "api"})
		return ok && v > 0, nil
	})
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
