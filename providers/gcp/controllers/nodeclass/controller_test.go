package nodeclass_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/gcp/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/gcp/gcetest"
)

func setup(t *testing.T, nc *gcpv1.GCENodeClass) (*gcetest.Server, client.Client, *nodeclass.Controller) {
	t.Helper()
	srv := gcetest.Start(gcetest.Options{})
	t.Cleanup(srv.Close)
	srv.Seed()
	clients, err := gcpprovider.NewClients(context.Background(), gcpprovider.ClientConfig{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clients.Close)
	s := runtime.NewScheme()
	if err := gcpv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientBuilder().WithScheme(s).WithObjects(nc).WithStatusSubresource(nc).Build()
	c := nodeclass.NewController(nodeclass.Deps{Client: kube, Clients: clients, Project: srv.Project, Region: srv.Region, Cluster: srv.Cluster})
	return srv, kube, c
}

func reconcile(t *testing.T, kube client.Client, c *nodeclass.Controller, name string) (*gcpv1.GCENodeClass, error) {
	t.Helper()
	nc := &gcpv1.GCENodeClass{}
	if err := kube.Get(context.Background(), client.ObjectKey{Name: name}, nc); err != nil {
		t.Fatal(err)
	}
	_, err := c.Reconcile(context.Background(), nc)
	got := &gcpv1.GCENodeClass{}
	if gerr := kube.Get(context.Background(), client.ObjectKey{Name: name}, got); gerr != nil {
		t.Fatal(gerr)
	}
	return got, err
}

func class(mutate ...func(*gcpv1.GCENodeClass)) *gcpv1.GCENodeClass {
	nc := &gcpv1.GCENodeClass{ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: gcpv1.GCENodeClassSpec{ServiceAccount: "nodes@p.iam.gserviceaccount.com", Image: gcpv1.Image{Type: gcpv1.ImageCOS}}}
	for _, m := range mutate {
		m(nc)
	}
	return nc
}

func TestResolvesLatestImageSubnetworkAndBootstrap(t *testing.T) {
	srv, kube, c := setup(t, class())
	got, err := reconcile(t, kube, c, "default")
	if err != nil {
		t.Fatal(err)
	}
	if !conditions.IsTrue(got.Status.Conditions, gcpv1.ConditionReady) {
		t.Fatalf("not Ready: %+v", got.Status.Conditions)
	}
	if got.Status.ImageName != gcetest.ImageCOS || !strings.HasSuffix(got.Status.Subnetwork, "/subnetworks/default") ||
		!strings.HasSuffix(got.Status.BootstrapTemplate, "/"+gcetest.TemplateName) || got.Status.ClusterVersion != gcetest.ClusterVersion {
		t.Errorf("status = %+v", got.Status)
	}
	// An upgrade moves "latest for the cluster's version" to the new image.
	srv.SetClusterVersion("1.31.1-gke.1000")
	srv.AddImage(gcetest.ImageProject, "gke-1311-gke1000-cos-117-1-2-c-pre", "2026-12-01T00:00:00Z")
	got, err = reconcile(t, kube, c, "default")
	if err != nil || got.Status.ImageName != "gke-1311-gke1000-cos-117-1-2-c-pre" || got.Status.ClusterVersion != "1.31.1-gke.1000" {
		t.Errorf("after the upgrade image = %s, version %s (%v)", got.Status.ImageName, got.Status.ClusterVersion, err)
	}
}

func TestUbuntuAndPinnedImages(t *testing.T) {
	_, kube, c := setup(t, class(func(nc *gcpv1.GCENodeClass) { nc.Spec.Image.Type = gcpv1.ImageUbuntu }))
	if got, _ := reconcile(t, kube, c, "default"); got.Status.ImageName != gcetest.ImageUbuntu {
		t.Errorf("ubuntu image = %q", got.Status.ImageName)
	}
	_, kube, c = setup(t, class(func(nc *gcpv1.GCENodeClass) { nc.Spec.Image.Name = gcetest.ImageCOSOlder }))
	if got, _ := reconcile(t, kube, c, "default"); got.Status.ImageName != gcetest.ImageCOSOlder {
		t.Errorf("pinned image = %q", got.Status.ImageName)
	}
}

func TestMissingSubnetworkAndImageSayWhy(t *testing.T) {
	_, kube, c := setup(t, class(func(nc *gcpv1.GCENodeClass) {
		nc.Spec.Subnetwork = "gpu-subnet"
		nc.Spec.Image.Name = "gke-does-not-exist"
	}))
	got, err := reconcile(t, kube, c, "default")
	if err != nil {
		t.Fatalf("missing resources are not API errors: %v", err)
	}
	sub := conditions.Get(got.Status.Conditions, gcpv1.ConditionSubnetworkReady)
	if sub == nil || sub.Status != metav1.ConditionFalse || sub.Reason != nodeclass.ReasonNotFound || !strings.Contains(sub.Message, "subnetwork gpu-subnet not found") {
		t.Errorf("SubnetworkReady = %+v", sub)
	}
	img := conditions.Get(got.Status.Conditions, gcpv1.ConditionImageReady)
	if img == nil || img.Status != metav1.ConditionFalse || img.Reason != nodeclass.ReasonNotFound || !strings.Contains(img.Message, "gke-does-not-exist") {
		t.Errorf("ImageReady = %+v", img)
	}
	ready := conditions.Get(got.Status.Conditions, gcpv1.ConditionReady)
	if ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, "gpu-subnet") {
		t.Errorf("Ready = %+v", ready)
	}
	if got.Status.Subnetwork != "" || got.Status.Image != "" {
		t.Errorf("status keeps unresolved values: %+v", got.Status)
	}
}

func TestMissingNodePoolTemplate(t *testing.T) {
	_, kube, c := setup(t, class(func(nc *gcpv1.GCENodeClass) { nc.Spec.BootstrapNodePool = "no-such-pool" }))
	got, _ := reconcile(t, kube, c, "default")
	b := conditions.Get(got.Status.Conditions, gcpv1.ConditionBootstrapReady)
	if b == nil || b.Status != metav1.ConditionFalse || !strings.Contains(b.Message, "node pool no-such-pool") {
		t.Errorf("BootstrapReady = %+v", b)
	}
}

// A read that fails once the class is resolved (a read-rate quota, an
// outage) keeps it Ready with its values: turned not Ready, every launch of
// the class stopped until the next reconcile. The error is still returned
// for a retry, and a 404 still turns the class not Ready.
func TestAPIErrorKeepsAResolvedClassReady(t *testing.T) {
	srv, kube, c := setup(t, class())
	resolved, err := reconcile(t, kube, c, "default")
	if err != nil || !conditions.IsTrue(resolved.Status.Conditions, gcpv1.ConditionReady) {
		t.Fatalf("first reconcile: %v, conditions %+v", err, resolved.Status.Conditions)
	}
	for name, fail := range map[string][]string{
		"cluster":              {"container.clusters.get"},
		"subnetwork and image": {"compute.subnetworks.get", "compute.images.list"},
		"bootstrap template":   {"compute.instanceTemplates.list"},
	} {
		for _, perm := range fail {
			srv.FailNextWith(perm, http.StatusForbidden, "rateLimitExceeded")
		}
		got, err := reconcile(t, kube, c, "default")
		if err == nil || !strings.Contains(err.Error(), "rateLimitExceeded") {
			t.Errorf("%s: err = %v, want the API error returned for a retry", name, err)
		}
		if !conditions.IsTrue(got.Status.Conditions, gcpv1.ConditionReady) {
			t.Errorf("%s: Ready = %+v after a failed read; want it kept", name, conditions.Get(got.Status.Conditions, gcpv1.ConditionReady))
		}
		if got.Status.Image != resolved.Status.Image || got.Status.Subnetwork != resolved.Status.Subnetwork ||
			got.Status.BootstrapTemplate != resolved.Status.BootstrapTemplate {
			t.Errorf("%s: status = %+v, want the resolved %+v kept", name, got.Status, resolved.Status)
		}
	}

	srv.FailNextWith("compute.subnetworks.get", http.StatusNotFound, "notFound")
	got, err := reconcile(t, kube, c, "default")
	if err != nil {
		t.Errorf("a missing subnetwork is not an API error: %v", err)
	}
	if sub := conditions.Get(got.Status.Conditions, gcpv1.ConditionSubnetworkReady); sub.Status != metav1.ConditionFalse || sub.Reason != nodeclass.ReasonNotFound {
		t.Errorf("SubnetworkReady = %+v, want False/NotFound", sub)
	}
	if conditions.IsTrue(got.Status.Conditions, gcpv1.ConditionReady) || got.Status.Subnetwork != "" {
		t.Errorf("a subnetwork gone left the class Ready with %q", got.Status.Subnetwork)
	}
}
