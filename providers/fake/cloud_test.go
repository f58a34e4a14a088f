package fake

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

const (
	zoneA = "test-1a"
	zoneB = "test-1b"
)

func rl(pairs ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(pairs); i += 2 {
		out[corev1.ResourceName(pairs[i])] = resource.MustParse(pairs[i+1])
	}
	return out
}

func offerings(spot, onDemand float64, zones ...string) []cloudprovider.Offering {
	var out []cloudprovider.Offering
	for _, z := range zones {
		out = append(out,
			cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, PricePerHour: spot, Available: true},
			cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: onDemand, Available: true})
	}
	return out
}

// testCatalog is small and hand-made so expectations do not move with the
// built-in price data. Prices are illustrative, not quotes.
func testCatalog() *pricing.Catalog {
	return &pricing.Catalog{
		Cloud: "test", Region: "test-1", Zones: []string{zoneA, zoneB},
		InstanceTypes: []*cloudprovider.InstanceType{
			{
				Name:      "m.large",
				Labels:    map[string]string{v1.LabelInstanceType: "m.large", v1.LabelArch: "amd64", v1.LabelOS: "linux"},
				Capacity:  rl("cpu", "2", "memory", "8Gi", "pods", "29"),
				Overhead:  cloudprovider.Overhead{KubeReserved: rl("cpu", "100m", "memory", "512Mi")},
				Offerings: offerings(0.03, 0.10, zoneA, zoneB),
			},
			{
				Name: "g.xlarge",
				Labels: map[string]string{
					v1.LabelInstanceType: "g.xlarge", v1.LabelArch: "amd64", v1.LabelOS: "linux",
					v1.LabelGPUName: "a10g", v1.LabelGPUCount: "1", v1.LabelGPUManufacturer: "nvidia",
				},
				Capacity:  rl("cpu", "4", "memory", "16Gi", "pods", "58", "nvidia.com/gpu", "1"),
				Overhead:  cloudprovider.Overhead{KubeReserved: rl("cpu", "100m", "memory", "1Gi")},
				GPU:       &cloudprovider.GPU{Manufacturer: "nvidia", Name: "a10g", Count: 1, MemoryMiB: 24576},
				Offerings: offerings(0.40, 1.00, zoneA, zoneB),
			},
			{
				Name: "p.24xlarge",
				Labels: map[string]string{
					v1.LabelInstanceType: "p.24xlarge", v1.LabelArch: "amd64", v1.LabelOS: "linux",
					v1.LabelGPUName: "a100", v1.LabelGPUCount: "8", v1.LabelGPUManufacturer: "nvidia",
				},
				Capacity: rl("cpu", "96", "memory", "1152Gi", "pods", "737", "nvidia.com/gpu", "8"),
				GPU: &cloudprovider.GPU{Manufacturer: "nvidia", Name: "a100", Count: 8, MemoryMiB: 40960,
					MIGProfiles: map[string]int{"1g.5gb": 7, "3g.20gb": 2}},
				Offerings: offerings(10, 32, zoneA),
			},
		},
	}
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

type env struct {
	client client.Client
	clock  *clocktesting.FakeClock
	cloud  *Cloud
}

func newEnv(t *testing.T, mutate func(*Options)) *env {
	t.Helper()
	e := &env{
		client: fakeclient.NewClientBuilder().WithScheme(newScheme(t)).Build(),
		clock:  clocktesting.NewFakeClock(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)),
	}
	e.cloud = e.newCloud(t, mutate)
	return e
}

// newCloud is a fresh Cloud on the same cluster: a restarted controller.
func (e *env) newCloud(t *testing.T, mutate func(*Options)) *Cloud {
	t.Helper()
	opts := Options{Client: e.client, Catalog: testCatalog(), ClusterName: "test", Clock: e.clock}
	if mutate != nil {
		mutate(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

func choice(instanceType, zone, capacityType string) v1.OfferingChoice {
	return v1.OfferingChoice{InstanceType: instanceType, Zone: zone, CapacityType: capacityType}
}

func id(instanceType, zone, capacityType string) cloudprovider.OfferingID {
	return cloudprovider.OfferingID{InstanceType: instanceType, Zone: zone, CapacityType: capacityType}
}

func newClaim(name string, choices ...v1.OfferingChoice) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, UID: types.UID("uid-" + name),
			Labels: map[string]string{v1.LabelNodePool: "gpu", "team": "ml"},
		},
		Spec: v1.NodeClaimSpec{Offerings: choices},
	}
}

func (e *env) nodes(t *testing.T) []corev1.Node {
	t.Helper()
	list := &corev1.NodeList{}
	if err := e.client.List(context.Background(), list); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func (e *env) records(t *testing.T) []corev1.ConfigMap {
	t.Helper()
	list := &corev1.ConfigMapList{}
	if err := e.client.List(context.Background(), list, client.InNamespace(Namespace)); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func TestCreateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	claim := newClaim("a", choice("g.xlarge", zoneA, v1.CapacityTypeSpot))
	first, err := e.cloud.Create(ctx, claim)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	// A retry, and a retry by a restarted controller, find the same machine
	// even though its first choice has since run out of capacity.
	e.cloud.InjectInsufficientCapacity(id("g.xlarge", zoneA, v1.CapacityTypeSpot))
	again, err := e.cloud.Create(ctx, claim)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	restarted, err := e.newCloud(t, nil).Create(ctx, claim)
	if err != nil {
		t.Fatalf("Create after restart: %v", err)
	}
	if diff := cmp.Diff(first.Status, again.Status); diff != "" {
		t.Errorf("retried Create differs (-first +retry):\n%s", diff)
	}
	if diff := cmp.Diff(first.Status, restarted.Status); diff != "" {
		t.Errorf("Create after restart differs (-first +restarted):\n%s", diff)
	}
	if n := len(e.records(t)); n != 1 {
		t.Errorf("%d instance records, want 1", n)
	}
	if n := len(e.nodes(t)); n != 1 {
		t.Errorf("%d nodes, want 1", n)
	}
	// A different claim with the same name (new UID) is a new machine.
	other := newClaim("a", choice("m.large", zoneA, v1.CapacityTypeSpot))
	other.UID = "another-uid"
	if got, err := e.cloud.Create(ctx, other); err != nil || got.Status.ProviderID == first.Status.ProviderID {
		t.Errorf("claim with a new UID: providerID %q, err %v; want a new instance", got.Status.ProviderID, err)
	}
}

func TestCreateFallbackOrder(t *testing.T) {
	g := func(zone, ct string) v1.OfferingChoice { return choice("g.xlarge", zone, ct) }
	gid := func(zone, ct string) cloudprovider.OfferingID { return id("g.xlarge", zone, ct) }
	spot, od, rsv := v1.CapacityTypeSpot, v1.CapacityTypeOnDemand, v1.CapacityTypeReserved
	cases := []struct {
		name         string
		choices      []v1.OfferingChoice
		inject       []cloudprovider.OfferingID
		unavailable  []cloudprovider.OfferingID
		reservations []Reservation
		want         cloudprovider.OfferingID // zero when the launch must fail
		wantPrice    string
		wantICE      []cloudprovider.OfferingID
	}{
		{
			name:    "first choice",
			choices: []v1.OfferingChoice{g(zoneA, spot), g(zoneB, spot)},
			want:    gid(zoneA, spot), wantPrice: "0.4",
		},
		{
			name:    "skips injected capacity errors in order",
			choices: []v1.OfferingChoice{g(zoneA, spot), g(zoneB, spot), g(zoneA, od)},
			inject:  []cloudprovider.OfferingID{gid(zoneA, spot), gid(zoneB, spot)},
			want:    gid(zoneA, od), wantPrice: "1",
		},
		{
			name:        "skips offerings in the unavailable cache",
			choices:     []v1.OfferingChoice{g(zoneA, spot), g(zoneB, spot)},
			unavailable: []cloudprovider.OfferingID{gid(zoneA, spot)},
			want:        gid(zoneB, spot), wantPrice: "0.4",
		},
		{
			name:    "offering the cloud does not sell counts as no capacity",
			choices: []v1.OfferingChoice{choice("p.24xlarge", zoneB, spot), g(zoneB, spot)},
			want:    gid(zoneB, spot), wantPrice: "0.4",
		},
		{
			name:         "reserved first when the reservation has room",
			choices:      []v1.OfferingChoice{g(zoneA, rsv), g(zoneA, spot)},
			reservations: []Reservation{{ID: "cr-1", InstanceType: "g.xlarge", Zone: zoneA, Count: 1}},
			want:         gid(zoneA, rsv), wantPrice: "0.0001",
		},
		{
			name:         "reserved in another zone does not match",
			choices:      []v1.OfferingChoice{g(zoneB, rsv), g(zoneA, spot)},
			reservations: []Reservation{{ID: "cr-1", InstanceType: "g.xlarge", Zone: zoneA, Count: 1}},
			want:         gid(zoneA, spot), wantPrice: "0.4",
		},
		{
			name:    "every offering fails: the error names exactly those tried",
			choices: []v1.OfferingChoice{g(zoneA, spot), g(zoneB, od), choice("m.large", zoneA, spot)},
			inject: []cloudprovider.OfferingID{
				gid(zoneA, spot), gid(zoneB, od), id("m.large", zoneA, spot), id("m.large", zoneB, spot),
			},
			wantICE: []cloudprovider.OfferingID{gid(zoneA, spot), gid(zoneB, od), id("m.large", zoneA, spot)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(o *Options) { o.Reservations = tc.reservations })
			e.cloud.InjectInsufficientCapacity(tc.inject...)
			e.cloud.Unavailable().MarkUnavailable(tc.unavailable...)
			got, err := e.cloud.Create(context.Background(), newClaim("c", tc.choices...))
			if tc.wantICE != nil {
				if !cloudprovider.IsInsufficientCapacity(err) {
					t.Fatalf("want InsufficientCapacityError, got %v", err)
				}
				if diff := cmp.Diff(tc.wantICE, cloudprovider.InsufficientCapacityOfferings(err)); diff != "" {
					t.Errorf("offerings named (-want +got):\n%s", diff)
				}
				for _, o := range tc.wantICE {
					if !e.cloud.Unavailable().IsUnavailable(o) {
						t.Errorf("%s not marked unavailable", o)
					}
				}
				if n := len(e.records(t)) + len(e.nodes(t)); n != 0 {
					t.Errorf("failed launch left %d objects", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			gotID := id(got.Status.InstanceType, got.Status.Zone, got.Status.CapacityType)
			if diff := cmp.Diff(tc.want, gotID); diff != "" {
				t.Errorf("launched offering (-want +got):\n%s", diff)
			}
			if got.Status.PricePerHour != tc.wantPrice {
				t.Errorf("price %q, want %q", got.Status.PricePerHour, tc.wantPrice)
			}
			if want := ProviderIDPrefix + tc.want.Zone + "/"; !strings.HasPrefix(got.Status.ProviderID, want) {
				t.Errorf("providerID %q does not start with %q", got.Status.ProviderID, want)
			}
		})
	}
}

func TestUnknownInstanceTypeIsNotACapacityError(t *testing.T) {
	e := newEnv(t, nil)
	claim := newClaim("x", choice("nope.small", zoneA, v1.CapacityTypeSpot), choice("nope.large", zoneB, v1.CapacityTypeSpot))
	_, err := e.cloud.Create(context.Background(), claim)
	if err == nil || cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("want a plain error, got %v", err)
	}
	for _, want := range []string{`spec.offerings[0]: instance type "nope.small"`, `spec.offerings[1]: instance type "nope.large"`, "test/test-1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

func TestRestartKeepsInstances(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	launched, err := e.cloud.Create(ctx, newClaim("a", choice("m.large", zoneB, v1.CapacityTypeOnDemand)))
	if err != nil {
		t.Fatal(err)
	}
	pid := launched.Status.ProviderID

	restarted := e.newCloud(t, nil)
	got, err := restarted.Get(ctx, pid)
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if diff := cmp.Diff(launched.Status, got.Status); diff != "" {
		t.Errorf("Get status (-launched +got):\n%s", diff)
	}
	if got.Name != "a" || got.Labels[v1.LabelNodeClaim] != "a" || got.Labels[v1.LabelNodePool] != "gpu" {
		t.Errorf("Get: name %q labels %v; want the claim's name and nodeclaim/nodepool labels", got.Name, got.Labels)
	}
	list, err := restarted.List(ctx)
	if err != nil || len(list) != 1 || list[0].Status.ProviderID != pid {
		t.Fatalf("List after restart = %d claims, err %v; want the one instance", len(list), err)
	}
	// Another cluster sharing the API server sees nothing.
	if other, err := e.newCloud(t, func(o *Options) { o.ClusterName = "other" }).List(ctx); err != nil || len(other) != 0 {
		t.Errorf("other cluster lists %d instances (err %v), want 0", len(other), err)
	}

	if err := restarted.Delete(ctx, launched); err != nil {
		t.Fatalf("Delete after restart: %v", err)
	}
	if n := len(e.nodes(t)) + len(e.records(t)); n != 0 {
		t.Errorf("Delete left %d objects", n)
	}
	var nf *cloudprovider.NotFoundError
	if _, err := restarted.Get(ctx, pid); !errors.As(err, &nf) || nf.ProviderID != pid {
		t.Errorf("Get after Delete: %v, want NotFoundError for %s", err, pid)
	}
	if err := restarted.Delete(ctx, launched); !cloudprovider.IsNotFound(err) {
		t.Errorf("second Delete: %v, want NotFoundError", err)
	}
}

func TestNodeRegistration(t *testing.T) {
	ctx := context.Background()
	gpuTaint := corev1.Taint{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}
	startup := corev1.Taint{Key: "gpu-operator/initializing", Effect: corev1.TaintEffectNoSchedule}
	unregistered := v1.UnregisteredTaint
	cases := []struct {
		name            string
		choice          v1.OfferingChoice
		gpu             *v1.GPUSharing
		wantAllocatable corev1.ResourceList
		wantLabels      map[string]string
	}{
		{
			name:            "whole gpus",
			choice:          choice("g.xlarge", zoneB, v1.CapacityTypeSpot),
			wantAllocatable: rl("cpu", "3900m", "memory", "15Gi", "pods", "58", "nvidia.com/gpu", "1"),
			wantLabels: map[string]string{
				v1.LabelInstanceType: "g.xlarge", v1.LabelZone: zoneB, v1.LabelRegion: "test-1",
				v1.LabelCapacityType: v1.CapacityTypeSpot, v1.LabelNodePool: "gpu", "team": "ml",
				v1.LabelGPUName: "a10g", v1.LabelGPUCount: "1", v1.LabelGPUManufacturer: "nvidia",
				v1.LabelArch: "amd64", v1.LabelOS: "linux", "example.com/single": "yes",
			},
		},
		{
			name:            "time slicing multiplies gpus",
			choice:          choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand),
			gpu:             &v1.GPUSharing{TimeSlicingReplicas: ptr.To[int32](4)},
			wantAllocatable: rl("cpu", "3900m", "memory", "15Gi", "pods", "58", "nvidia.com/gpu", "4"),
		},
		{
			name:            "mig profile the gpu lacks keeps whole gpus",
			choice:          choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand),
			gpu:             &v1.GPUSharing{MIGProfile: "1g.5gb"},
			wantAllocatable: rl("cpu", "3900m", "memory", "15Gi", "pods", "58", "nvidia.com/gpu", "1"),
		},
		{
			name:            "mig replaces gpus with instances",
			choice:          choice("p.24xlarge", zoneA, v1.CapacityTypeOnDemand),
			gpu:             &v1.GPUSharing{MIGProfile: "1g.5gb"},
			wantAllocatable: rl("cpu", "96", "memory", "1152Gi", "pods", "737", "nvidia.com/mig-1g.5gb", "56"),
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, nil)
			claim := newClaim("n", tc.choice)
			claim.Spec.GPU = tc.gpu
			claim.Spec.Taints = []corev1.Taint{gpuTaint}
			claim.Spec.StartupTaints = []corev1.Taint{startup}
			claim.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
				{Key: "example.com/single", Operator: corev1.NodeSelectorOpIn, Values: []string{"yes"}},
				{Key: "example.com/many", Operator: corev1.NodeSelectorOpIn, Values: []string{"x", "y"}},
			}
			launched, err := e.cloud.Create(ctx, claim)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			nodes := e.nodes(t)
			if len(nodes) != 1 {
				t.Fatalf("%d nodes, want 1 (launch latency is zero)", len(nodes))
			}
			node := nodes[0]
			instanceID := strings.TrimPrefix(launched.Status.ProviderID, ProviderIDPrefix+tc.choice.Zone+"/")
			if node.Name != instanceID || node.Spec.ProviderID != launched.Status.ProviderID {
				t.Errorf("node %q providerID %q; want name %q and the claim's providerID %q",
					node.Name, node.Spec.ProviderID, instanceID, launched.Status.ProviderID)
			}
			if node.Annotations[KwokAnnotation] != KwokAnnotationValue {
				t.Errorf("node annotations %v lack %s=%s", node.Annotations, KwokAnnotation, KwokAnnotationValue)
			}
			if diff := cmp.Diff([]corev1.Taint{unregistered, gpuTaint, startup}, node.Spec.Taints); diff != "" {
				t.Errorf("taints (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAllocatable, node.Status.Allocatable); diff != "" {
				t.Errorf("node allocatable (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAllocatable, launched.Status.Allocatable); diff != "" {
				t.Errorf("claim allocatable (-want +got):\n%s", diff)
			}
			if _, ok := node.Labels["example.com/many"]; ok {
				t.Errorf("multi-valued requirement became a label")
			}
			if node.Labels[v1.LabelHostname] != node.Name {
				t.Errorf("hostname label %q, want %q", node.Labels[v1.LabelHostname], node.Name)
			}
			if tc.wantLabels != nil {
				tc.wantLabels[v1.LabelHostname] = node.Name
				if diff := cmp.Diff(tc.wantLabels, node.Labels); diff != "" {
					t.Errorf("labels (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestDelayedRegistration(t *testing.T) {
	ctx := context.Background()
	registered := make(chan string, 1)
	e := newEnv(t, func(o *Options) { o.LaunchLatency = 2 * time.Second })
	e.cloud.registered = registered

	launched, err := e.cloud.Create(ctx, newClaim("slow", choice("m.large", zoneA, v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.nodes(t)); n != 0 {
		t.Fatalf("node registered before the launch latency passed")
	}
	waitForWaiter(t, e.clock)
	e.clock.Step(time.Second)
	select {
	case id := <-registered:
		t.Fatalf("node %s registered after 1s of a 2s latency", id)
	default:
	}
	e.clock.Step(time.Second)
	id := <-registered
	if nodes := e.nodes(t); len(nodes) != 1 || nodes[0].Name != id || nodes[0].Spec.ProviderID != launched.Status.ProviderID {
		t.Errorf("after the latency: nodes %v, want one for %s", nodes, launched.Status.ProviderID)
	}
}

func TestDeleteCancelsPendingRegistration(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(o *Options) { o.LaunchLatency = time.Minute })
	claim := newClaim("gone", choice("m.large", zoneA, v1.CapacityTypeSpot))
	launched, err := e.cloud.Create(ctx, claim)
	if err != nil {
		t.Fatal(err)
	}
	waitForWaiter(t, e.clock)
	if err := e.cloud.Delete(ctx, launched); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(time.Hour)
	e.cloud.Stop() // waits for the registration goroutine to end
	if n := len(e.nodes(t)); n != 0 {
		t.Errorf("a deleted instance's node registered")
	}
}

func TestRegisterMissingAfterRestart(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	launched, err := e.cloud.Create(ctx, newClaim("a", choice("m.large", zoneA, v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	nodes := e.nodes(t)
	if len(nodes) != 1 {
		t.Fatalf("%d nodes, want 1", len(nodes))
	}
	// The controller crashed before the Node appeared.
	if err := e.client.Delete(ctx, &nodes[0]); err != nil {
		t.Fatal(err)
	}
	if err := e.newCloud(t, nil).RegisterMissing(ctx); err != nil {
		t.Fatalf("RegisterMissing: %v", err)
	}
	if nodes := e.nodes(t); len(nodes) != 1 || nodes[0].Spec.ProviderID != launched.Status.ProviderID {
		t.Errorf("after RegisterMissing: %d nodes; want the instance's node back", len(nodes))
	}
}

func TestInstanceTypes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(o *Options) {
		o.Reservations = []Reservation{{ID: "cr-1", InstanceType: "g.xlarge", Zone: zoneA, Count: 2, PricePerHour: 0.01}}
	})
	if err := e.cloud.SetPrice(id("g.xlarge", zoneB, v1.CapacityTypeSpot), 0.25); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cloud.Create(ctx, newClaim("r", choice("g.xlarge", zoneA, v1.CapacityTypeReserved))); err != nil {
		t.Fatal(err)
	}
	e.cloud.InjectInsufficientCapacity(id("g.xlarge", zoneA, v1.CapacityTypeSpot))
	if _, err := e.cloud.Create(ctx, newClaim("s", choice("g.xlarge", zoneA, v1.CapacityTypeSpot))); !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("want insufficient capacity, got %v", err)
	}
	its, err := e.cloud.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []cloudprovider.Offering
	for _, it := range its {
		if it.Name == "g.xlarge" {
			got = it.Offerings
		}
	}
	want := []cloudprovider.Offering{
		{Zone: zoneA, CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.40, Available: false},
		{Zone: zoneA, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 1.00, Available: true},
		{Zone: zoneB, CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.25, Available: true},
		{Zone: zoneB, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 1.00, Available: true},
		{Zone: zoneA, CapacityType: v1.CapacityTypeReserved, PricePerHour: 0.01, Available: true, ReservationID: "cr-1", ReservedCount: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("g.xlarge offerings (-want +got):\n%s", diff)
	}
	// The catalog itself is not modified.
	its[0].Labels["mutated"] = "yes"
	again, _ := e.cloud.InstanceTypes(ctx, nil)
	if _, ok := again[0].Labels["mutated"]; ok {
		t.Errorf("InstanceTypes returned shared state")
	}
	// Launches use the new price.
	launched, err := e.cloud.Create(ctx, newClaim("p", choice("g.xlarge", zoneB, v1.CapacityTypeSpot)))
	if err != nil || launched.Status.PricePerHour != "0.25" {
		t.Errorf("launched at %q (err %v), want the new price 0.25", launched.Status.PricePerHour, err)
	}
}

func TestInterruptions(t *testing.T) {
	e := newEnv(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	deadline := e.clock.Now().Add(2 * time.Minute)
	if err := e.cloud.Interrupt("fake://test-1a/i-1", cloudprovider.InterruptionSpotReclaim, deadline); err != nil {
		t.Fatal(err)
	}
	events, err := e.cloud.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ev := <-events
	if ev.ProviderID != "fake://test-1a/i-1" || ev.Kind != cloudprovider.InterruptionSpotReclaim || !ev.Deadline.Equal(deadline) {
		t.Errorf("event %+v", ev)
	}
	if err := e.cloud.Interrupt("i-1", cloudprovider.InterruptionSpotReclaim, deadline); err == nil {
		t.Errorf("Interrupt accepted a malformed providerID")
	}
	cancel()
	if _, open := <-events; open {
		t.Errorf("channel still open after ctx was cancelled")
	}
}

func TestNewValidates(t *testing.T) {
	c := fakeclient.NewClientBuilder().Build()
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no client", Options{Catalog: testCatalog()}, "Options.Client"},
		{"bad cluster name", Options{Client: c, Catalog: testCatalog(), ClusterName: "no spaces"}, "Options.ClusterName"},
		{"negative latency", Options{Client: c, Catalog: testCatalog(), LaunchLatency: -1}, "Options.LaunchLatency"},
		{"unknown reserved type", Options{Client: c, Catalog: testCatalog(),
			Reservations: []Reservation{{ID: "cr-1", InstanceType: "x", Zone: zoneA, Count: 1}}}, `Options.Reservations[0] (cr-1): instance type "x"`},
		{"unknown reserved zone", Options{Client: c, Catalog: testCatalog(),
			Reservations: []Reservation{{ID: "cr-1", InstanceType: "m.large", Zone: "mars", Count: 1}}}, `Options.Reservations[0] (cr-1): zone "mars"`},
		{"empty reservation", Options{Client: c, Catalog: testCatalog(),
			Reservations: []Reservation{{ID: "cr-1", InstanceType: "m.large", Zone: zoneA}}}, "Options.Reservations[0] (cr-1): count 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v; want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestParseProviderID(t *testing.T) {
	cases := map[string]string{
		"fake://us-east-1a/i-0abc": "i-0abc",
		"aws:///us-east-1a/i-0abc": "",
		"fake://us-east-1a":        "",
		"fake:///i-0abc":           "",
		"fake://a/b/c":             "",
	}
	for in, want := range cases {
		got, err := parseProviderID(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("parseProviderID(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// waitForWaiter blocks until a registration goroutine waits on the clock,
// so stepping the clock is not lost. It spins on a condition, not on time.
func waitForWaiter(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentLaunches(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, func(o *Options) {
		o.Reservations = []Reservation{{ID: "cr-1", InstanceType: "g.xlarge", Zone: zoneA, Count: 2}}
	})
	same := newClaim("same", choice("m.large", zoneA, v1.CapacityTypeSpot))
	const n = 6
	results := make(chan *v1.NodeClaim, 2*n)
	errs := make(chan error, 2*n)
	for i := range n {
		go func() {
			got, err := e.cloud.Create(ctx, same)
			results <- got
			errs <- err
		}()
		go func() {
			claim := newClaim("r"+string(rune('a'+i)),
				choice("g.xlarge", zoneA, v1.CapacityTypeReserved), choice("g.xlarge", zoneA, v1.CapacityTypeOnDemand))
			got, err := e.cloud.Create(ctx, claim)
			results <- got
			errs <- err
		}()
	}
	providerIDs := map[string]bool{}
	reserved := 0
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Errorf("Create: %v", err)
		}
		got := <-results
		if got == nil {
			continue
		}
		if got.Name == "same" {
			providerIDs[got.Status.ProviderID] = true
		} else if got.Status.CapacityType == v1.CapacityTypeReserved {
			reserved++
		}
	}
	if len(providerIDs) != 1 {
		t.Errorf("concurrent Creates of one claim made %d instances, want 1", len(providerIDs))
	}
	if reserved != 2 {
		t.Errorf("%d launches got the 2-slot reservation, want 2", reserved)
	}
	if got, want := len(e.records(t)), 1+n; got != want {
		t.Errorf("%d instance records, want %d", got, want)
	}
}

func TestSetPriceRejectsUnknownOfferings(t *testing.T) {
	e := newEnv(t, nil)
	for _, oid := range []cloudprovider.OfferingID{
		id("nope", zoneA, v1.CapacityTypeSpot),
		id("p.24xlarge", zoneB, v1.CapacityTypeSpot),
		id("g.xlarge", zoneA, v1.CapacityTypeReserved),
	} {
		if err := e.cloud.SetPrice(oid, 1); err == nil || !strings.Contains(err.Error(), oid.String()) {
			t.Errorf("SetPrice(%s) = %v; want an error naming it", oid, err)
		}
	}
	if err := e.cloud.SetPrice(id("g.xlarge", zoneA, v1.CapacityTypeSpot), -1); err == nil {
		t.Error("SetPrice accepted a negative price")
	}
}

// TestDefaultCatalog launches every GPU type of the built-in catalog and
// checks the Node would pass the API server's label validation.
func TestDefaultCatalog(t *testing.T) {
	ctx := context.Background()
	c := fakeclient.NewClientBuilder().WithScheme(newScheme(t)).Build()
	cloud, err := New(Options{Client: c})
	if err != nil {
		t.Fatalf("New with the default catalog: %v", err)
	}
	its, err := cloud.InstanceTypes(ctx, nil)
	if err != nil || len(its) == 0 {
		t.Fatalf("InstanceTypes: %d types, %v", len(its), err)
	}
	launched := 0
	for _, it := range its {
		if it.GPU == nil || len(it.Offerings) == 0 {
			continue
		}
		o := it.Offerings[0]
		claim := newClaim(strings.ReplaceAll(it.Name, ".", "-"), choice(it.Name, o.Zone, o.CapacityType))
		got, err := cloud.Create(ctx, claim)
		if err != nil {
			t.Errorf("Create %s: %v", it.Name, err)
			continue
		}
		launched++
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: strings.TrimPrefix(got.Status.ProviderID, ProviderIDPrefix+o.Zone+"/")}, node); err != nil {
			t.Fatalf("node of %s: %v", it.Name, err)
		}
		for k, v := range node.Labels {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				t.Errorf("%s: label key %q: %v", it.Name, k, errs)
			}
			if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
				t.Errorf("%s: label %s=%q: %v", it.Name, k, v, errs)
			}
		}
		if _, ok := node.Status.Allocatable[v1.ResourceNvidiaGPU]; !ok && it.GPU.Manufacturer == "nvidia" {
			t.Errorf("%s: node allocatable %v has no nvidia.com/gpu", it.Name, node.Status.Allocatable)
		}
	}
	if launched == 0 {
		t.Fatal("the default catalog has no GPU instance types")
	}
}

func BenchmarkInstanceTypes(b *testing.B) {
	c := fakeclient.NewClientBuilder().Build()
	cloud, err := New(Options{Client: c})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := cloud.InstanceTypes(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
}

func TestImageDrift(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	old, err := e.cloud.Create(ctx, newClaim("old", choice("g.xlarge", zoneA, v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.cloud.IsDrifted(ctx, old); err != nil || r != "" {
		t.Fatalf("IsDrifted before any change = %q, %v; want none", r, err)
	}
	if err := e.cloud.SetImage("fake-image-2"); err != nil {
		t.Fatal(err)
	}
	if r, err := e.cloud.IsDrifted(ctx, old); err != nil || r != DriftImage {
		t.Errorf("IsDrifted of a machine on the old image = %q, %v; want %s", r, err, DriftImage)
	}
	fresh, err := e.cloud.Create(ctx, newClaim("new", choice("g.xlarge", zoneA, v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Status.ImageID != "fake-image-2" {
		t.Errorf("new machine booted %q, want fake-image-2", fresh.Status.ImageID)
	}
	if r, _ := e.cloud.IsDrifted(ctx, fresh); r != "" {
		t.Errorf("IsDrifted of a machine on the new image = %q, want none", r)
	}
	// A restarted controller still reads the image each machine booted.
	listed, err := e.newCloud(t, nil).Get(ctx, old.Status.ProviderID)
	if err != nil {
		t.Fatal(err)
	}
	if listed.Status.ImageID != ImageID {
		t.Errorf("old machine's image after restart = %q, want %q", listed.Status.ImageID, ImageID)
	}
	if !cloudprovider.CapabilitiesOf(e.cloud).Drift {
		t.Error("the fake cloud does not report the drift capability")
	}
	if err := e.cloud.SetImage(""); err == nil {
		t.Error("SetImage(\"\") succeeded")
	}
}
