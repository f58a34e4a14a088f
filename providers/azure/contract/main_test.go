// Package contract runs the Azure provider and the AKSNodeClass controller
// with the real armcompute and armnetwork clients against the SDK's own fake
// servers (providers/azure/azuretest), and the Retail Prices client against
// an httptest server: every request goes through the SDK's pipeline,
// pagers and long-running-operation pollers.
package contract

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/providers/azure"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure/azuretest"
	"github.com/stowage-k8s/stowage/providers/azure/controllers/nodeclass"
)

const (
	cluster   = "contract"
	apiServer = "https://stowage-aks-dns-0123.hcp.eastus.azmk8s.io:443"
	caBundle  = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
	token     = "abcdef.0123456789abcdef"
)

// env is one test's Azure, Kubernetes API and provider.
type env struct {
	ctx      context.Context
	cloud    *azuretest.Cloud
	clients  *azure.Clients
	kube     client.Client
	clock    *clocktesting.FakeClock
	provider *azure.Provider
	ctrl     *nodeclass.Controller
	registry *prometheus.Registry
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, azv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func newEnv(t *testing.T, mutate ...func(*azure.Options)) *env {
	t.Helper()
	cloud, err := azuretest.New(azuretest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := cloud.Clients()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{
		ctx:      log.IntoContext(context.Background(), testr.New(t)),
		cloud:    cloud,
		clients:  clients,
		kube:     fake.NewClientBuilder().WithScheme(newScheme(t)).WithStatusSubresource(&azv1.AKSNodeClass{}).Build(),
		clock:    clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)),
		registry: prometheus.NewRegistry(),
	}
	e.ctrl = nodeclass.NewController(nodeclass.Deps{
		Client: e.kube, Images: clients.GalleryImages, Subnets: clients.Subnets, ReservationGroups: clients.ReservationGroups,
		PPGs: clients.PPGs, Location: cloud.Location(), Clock: e.clock,
		ServerVersion: func(context.Context) (string, error) { return "v1.33.2", nil },
	})
	e.provider = e.newProvider(t, mutate...)
	return e
}

// newProvider builds a provider on the env's Azure, as a restarted
// controller would.
func (e *env) newProvider(t *testing.T, mutate ...func(*azure.Options)) *azure.Provider {
	t.Helper()
	opts := azure.Options{
		ClusterName: cluster, SubscriptionID: e.cloud.SubscriptionID(), ResourceGroup: e.cloud.ResourceGroup(), Location: e.cloud.Location(),
		VMs: e.clients.VMs, NICs: e.clients.NICs, Disks: e.clients.Disks, SKUs: e.clients.SKUs, PPGs: e.clients.PPGs,
		Reservations: e.clients.Reservations, Prices: e.clients.Prices, Kube: e.kube, Clock: e.clock, Registerer: e.registry,
		APIServer: apiServer, CABundle: caBundle, BootstrapToken: token, PollFrequency: time.Millisecond,
	}
	for _, m := range mutate {
		m(&opts)
	}
	p, err := azure.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// nodeClass creates an AKSNodeClass in the cluster's subnet, with the API
// server's defaults, and resolves it with the real controller.
func (e *env) nodeClass(t *testing.T, name string, mutate ...func(*azv1.AKSNodeClass)) *azv1.AKSNodeClass {
	t.Helper()
	nc := &azv1.AKSNodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: azv1.AKSNodeClassSpec{
			Image:    azv1.ImageSelector{Family: azv1.ImageFamilyUbuntu2204},
			SubnetID: e.cloud.SubnetID(),
			OSDisk:   azv1.OSDisk{SizeGiB: 128, Type: azv1.OSDiskPremiumLRS},
			GPU:      azv1.GPUSettings{Driver: azv1.GPUDriverImage},
			Tags:     map[string]string{"team": "ml"},
		},
	}
	for _, m := range mutate {
		m(nc)
	}
	if err := e.kube.Create(e.ctx, nc); err != nil {
		t.Fatal(err)
	}
	return e.reconcile(t, name)
}

// reconcile runs the node class controller once and returns the result.
func (e *env) reconcile(t *testing.T, name string) *azv1.AKSNodeClass {
	t.Helper()
	nc := &azv1.AKSNodeClass{}
	if err := e.kube.Get(e.ctx, client.ObjectKey{Name: name}, nc); err != nil {
		t.Fatal(err)
	}
	_, _ = e.ctrl.Reconcile(e.ctx, nc)
	if err := e.kube.Get(e.ctx, client.ObjectKey{Name: name}, nc); err != nil {
		t.Fatal(err)
	}
	return nc
}

func ready(nc *azv1.AKSNodeClass) bool {
	return conditions.IsTrue(nc.Status.Conditions, azv1.ConditionReady)
}

func offering(size, zone, capacityType string) v1.OfferingChoice {
	return v1.OfferingChoice{InstanceType: size, Zone: zone, CapacityType: capacityType}
}

// claim is a NodeClaim of pool "gpu" for node class nc.
func claim(name, nc string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid"),
			Labels: map[string]string{v1.LabelNodePool: "gpu", "team": "ml"}},
		Spec: v1.NodeClaimSpec{
			Offerings:    offerings,
			NodeClassRef: &v1.NodeClassReference{Group: azv1.Group, Kind: azv1.Kind, Name: nc},
			Taints:       []corev1.Taint{{Key: "nvidia.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}},
			Resources:    v1.ResourceRequirements{Requests: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("1")}},
		},
	}
}

// pool is a NodePool referencing node class nc.
func pool(nc string) *v1.NodePool {
	return &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
		Spec: v1.NodeClaimTemplateSpec{NodeClassRef: &v1.NodeClassReference{Group: azv1.Group, Kind: azv1.Kind, Name: nc}}}}}
}

// vmsOf are the VMs whose nodeclaim tag names claim.
func (e *env) vmsOf(claim string) []azuretest.VM {
	var out []azuretest.VM
	for _, vm := range e.cloud.VMs() {
		if vm.Tags[azure.TagNodeClaim] == claim {
			out = append(out, vm)
		}
	}
	return out
}

func condition(nc *azv1.AKSNodeClass, t string) *metav1.Condition {
	return conditions.Get(nc.Status.Conditions, t)
}

func clientKey(name string) client.ObjectKey { return client.ObjectKey{Name: name} }
