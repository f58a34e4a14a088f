//go:build unix

package helm

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/importer"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// TestInstallIntoControlPlane installs the chart with the fake cloud into a
// real local control plane, then asks the API server's own authorizer what
// the controller's service account may do (the RBAC in the chart is what the
// cluster enforces, not what a reader of the YAML expects), runs the
// controller binary with that service account's rights until a pending pod
// gets a node, and checks the installed CRDs accept what the importer
// writes. The subtests share one control plane: it is the expensive part.
func TestInstallIntoControlPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a local control plane")
	}
	// The chart installs the CRDs; pods only run with all three components.
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true})
	out, err := helm(t, "install", "stowage", chart, "-f", chart+"/values-fake.yaml",
		"--kubeconfig", cp.KubeconfigPath, "--namespace", "stowage", "--create-namespace")
	if err != nil {
		t.Fatalf("helm install: %v\n%s", err, out)
	}
	ctx := context.Background()
	c := cp.Client

	for _, name := range []string{"nodepools.stowage.dev", "nodeclaims.stowage.dev"} {
		var crd apiextensionsv1.CustomResourceDefinition
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &crd); err != nil {
			t.Errorf("CRD %s not installed: %v", name, err)
		}
	}
	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: "stowage", Name: "stowage"}, &d); err != nil {
		t.Fatalf("deployment not installed: %v", err)
	}

	t.Run("rbac", func(t *testing.T) { testChartRBAC(t, c) })
	// Before the importer's NodePools exist, so they cannot take the pod.
	t.Run("controller", func(t *testing.T) { testControllerWithChartRBAC(t, cp) })
	t.Run("importer", func(t *testing.T) { testImportedObjectsValid(t, c) })

	if out, err := helm(t, "uninstall", "stowage", "--kubeconfig", cp.KubeconfigPath, "--namespace", "stowage"); err != nil {
		t.Errorf("helm uninstall: %v\n%s", err, out)
	}
}

// testChartRBAC asks the API server's authorizer what the chart's service
// account may do.
func testChartRBAC(t *testing.T, c client.Client) {
	ctx := context.Background()
	sa := "system:serviceaccount:stowage:stowage"
	tests := []struct {
		attrs authorizationv1.ResourceAttributes
		want  bool
	}{
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Subresource: "eviction", Namespace: "team-a"}, true},
		{authorizationv1.ResourceAttributes{Verb: "delete", Resource: "nodes"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Resource: "pods", Namespace: "team-a"}, true},
		{authorizationv1.ResourceAttributes{Verb: "patch", Group: "stowage.dev", Resource: "nodeclaims", Subresource: "status"}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "stowage"}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "configmaps", Namespace: "stowage-fake-cloud"}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "authentication.k8s.io", Resource: "tokenreviews"}, true},
		{authorizationv1.ResourceAttributes{Verb: "create", Group: "authorization.k8s.io", Resource: "subjectaccessreviews"}, true},
		{authorizationv1.ResourceAttributes{Verb: "update", Group: "coordination.k8s.io", Resource: "leases", Namespace: "kube-system"}, false},
		{authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets", Namespace: "stowage"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "configmaps", Namespace: "team-a"}, false},
		{authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "team-a"}, false},
	}
	for _, tt := range tests {
		a := tt.attrs
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{User: sa, ResourceAttributes: &a}}
		if err := c.Create(ctx, sar); err != nil {
			t.Fatalf("SubjectAccessReview: %v", err)
		}
		if sar.Status.Allowed != tt.want {
			t.Errorf("%s %s/%s/%s in %q: allowed = %v, want %v (%s)", a.Verb, a.Group, a.Resource, a.Subresource, a.Namespace,
				sar.Status.Allowed, tt.want, sar.Status.Reason)
		}
	}

}

// testImportedObjectsValid checks that what `stowage import karpenter`
// produces passes the installed CRDs' validation, CEL rules included.
func testImportedObjectsValid(t *testing.T, c client.Client) {
	ctx := context.Background()
	f, err := os.Open(filepath.Join(repoRoot(t), "pkg/importer/testdata/karpenter-gpu.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := importer.ConvertYAML("karpenter-gpu.yaml", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) == 0 {
		t.Fatal("importer produced no objects")
	}
	for _, obj := range res.Objects {
		if err := c.Create(ctx, obj); err != nil {
			t.Errorf("creating imported %s %s: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
}
