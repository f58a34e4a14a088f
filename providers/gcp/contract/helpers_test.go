// Package contract runs the GCP provider with the real cloud.google.com/go
// REST clients against gcetest's fake Compute Engine, GKE and Billing
// server on loopback.
package contract

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/gcp/gcetest"
)

type env struct {
	srv      *gcetest.Server
	clients  *gcpprovider.Clients
	kube     client.Client
	clock    *clocktesting.FakeClock
	provider *gcpprovider.Provider
	nc       *gcpv1.GCENodeClass
}

// readyNodeClass is a GCENodeClass as the nodeclass controller leaves it.
func readyNodeClass(srv *gcetest.Server) *gcpv1.GCENodeClass {
	return &gcpv1.GCENodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: gcpv1.GCENodeClassSpec{
			ServiceAccount: "stowage-nodes@stowage-test.iam.gserviceaccount.com",
			Image:          gcpv1.Image{Type: gcpv1.ImageCOS},
			BootDisk:       gcpv1.BootDisk{Type: "pd-balanced", SizeGiB: 100},
			GPUDriver:      gcpv1.GPUDriverDefault,
			Reservations:   gcpv1.Reservations{Consume: gcpv1.ReservationsAny},
			Placement:      gcpv1.PlacementPolicy{Type: gcpv1.PlacementCompact},
			NetworkTags:    []string{"gpu-nodes"},
		},
		Status: gcpv1.GCENodeClassStatus{
			Image:             "https://www.googleapis.com/compute/v1/projects/" + gcetest.ImageProject + "/global/images/" + gcetest.ImageCOS,
			ImageName:         gcetest.ImageCOS,
			Subnetwork:        srv.ComputeURL() + "/regions/" + srv.Region + "/subnetworks/default",
			BootstrapTemplate: srv.ComputeURL() + "/global/instanceTemplates/" + gcetest.TemplateName,
			Conditions:        []metav1.Condition{{Type: gcpv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready"}},
		},
	}
}

func start(t *testing.T, mutate ...func(*gcpprovider.Options)) *env {
	t.Helper()
	clk := clocktesting.NewFakeClock(time.Now())
	srv := gcetest.Start(gcetest.Options{Clock: clk})
	t.Cleanup(srv.Close)
	srv.Seed()
	clients, err := gcpprovider.NewClients(context.Background(), gcpprovider.ClientConfig{Endpoint: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(clients.Close)
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, gcpv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	nc := readyNodeClass(srv)
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(nc).WithStatusSubresource(nc).Build()
	opts := gcpprovider.Options{ClusterName: "contract", Project: srv.Project, Region: srv.Region, Clients: clients, Kube: kube, Clock: clk}
	for _, m := range mutate {
		m(&opts)
	}
	p, err := gcpprovider.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, clients: clients, kube: kube, clock: clk, provider: p, nc: nc}
}

func claim(name string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid"), Labels: map[string]string{v1.LabelNodePool: "gpu"}},
		Spec: v1.NodeClaimSpec{
			Offerings:    offerings,
			NodeClassRef: &v1.NodeClassReference{Group: gcpv1.Group, Kind: gcpv1.Kind, Name: "default"},
		},
	}
}

func offering(instanceType, zone, capacityType string) v1.OfferingChoice {
	return v1.OfferingChoice{InstanceType: instanceType, Zone: zone, CapacityType: capacityType}
}

func taint(key string) corev1.Taint {
	return corev1.Taint{Key: key, Value: "present", Effect: corev1.TaintEffectNoSchedule}
}

func clientKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

// gaugeOf returns the price-source gauge for source from reg.
func gaugeOf(t *testing.T, reg *prometheus.Registry, source string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "stowage_gcp_price_source" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == source {
					g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
					g.Set(m.GetGauge().GetValue())
					return g
				}
			}
		}
	}
	t.Fatalf("no stowage_gcp_price_source{source=%q}", source)
	return nil
}
