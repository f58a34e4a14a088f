package contract

import (
	"context"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/gcp/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/gcp/gcetest"
)

// TestPermissionsMatchTheDocs drives every call the controller makes (node
// class resolution, catalog, prices, reservations, launch with placement,
// get, list, delete, policy cleanup, interruption polling) and compares the
// IAM permissions the fake saw with the list in docs/install-gcp.md: a call
// added without documenting its permission, or a documented permission no
// call needs, fails.
func TestPermissionsMatchTheDocs(t *testing.T) {
	e := start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	scheme := runtime.NewScheme()
	if err := gcpv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	latest := readyNodeClass(e.srv)
	latest.Name = "latest"
	pinned := readyNodeClass(e.srv)
	pinned.Name, pinned.Spec.Image.Name = "pinned", gcetest.ImageCOSOlder
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(latest, pinned).WithStatusSubresource(latest, pinned).Build()
	ctrl := nodeclass.NewController(nodeclass.Deps{Client: kube, Clients: e.clients, Project: e.srv.Project, Region: e.srv.Region, Cluster: e.srv.Cluster})
	for _, nc := range []*gcpv1.GCENodeClass{latest, pinned} {
		if _, err := ctrl.Reconcile(ctx, nc); err != nil {
			t.Fatal(err)
		}
	}

	c := claim("iam-0", offering("a2-highgpu-8g", "us-central1-a", v1.CapacityTypeOnDemand))
	c.Spec.Placement = &v1.Placement{Group: "iam"}
	launched, err := e.provider.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.provider.Get(ctx, launched.Status.ProviderID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.provider.List(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := e.provider.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		for range ch {
		}
	}()
	if err := e.provider.Delete(ctx, launched); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(time.Hour)
	if err := e.provider.CleanupPlacementPolicies(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.Calls("compute.zoneOperations.list") == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}

	// The Billing Catalog's public SKU list needs no IAM permission.
	seen := slices.DeleteFunc(e.srv.Permissions(), func(p string) bool { return p == "billing.skus.list" })
	raw, err := os.ReadFile("../../../docs/install-gcp.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile(`(?s)<!-- permissions:start -->(.*)<!-- permissions:end -->`).FindSubmatch(raw)
	if block == nil {
		t.Fatal("docs/install-gcp.md has no permissions:start/end block")
	}
	var documented []string
	for _, line := range strings.Split(string(block[1]), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "- "); ok {
			documented = append(documented, p)
		}
	}
	slices.Sort(documented)
	for _, p := range seen {
		if !slices.Contains(documented, p) {
			t.Errorf("the code needs %s but docs/install-gcp.md does not list it", p)
		}
	}
	for _, p := range documented {
		if !slices.Contains(seen, p) {
			t.Errorf("docs/install-gcp.md lists %s but no call needed it", p)
		}
	}
}
