package contract

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
)

func gpuPool(class string) *v1.NodePool {
	p := &v1.NodePool{}
	p.Name = "gpu"
	p.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: gcpv1.Group, Kind: gcpv1.Kind, Name: class}
	return p
}

func TestReservationsAreOfferedAndConsumed(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	e.srv.AddReservation("us-central1-a", "h100-block", "a3-highgpu-8g", 2, true)
	e.srv.AddReservation("us-central1-b", "open-g2", "g2-standard-4", 1, false)

	reserved := func(pool *v1.NodePool) map[string]cloudprovider.Offering {
		its, err := e.provider.InstanceTypes(ctx, pool)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]cloudprovider.Offering{}
		for _, it := range its {
			for _, o := range it.Offerings {
				if o.CapacityType == v1.CapacityTypeReserved {
					out[o.ReservationID] = o
				}
			}
		}
		return out
	}
	// Any: only the reservation open to any VM.
	if got := reserved(gpuPool("default")); len(got) != 1 || got["open-g2"].ReservedCount != 1 {
		t.Errorf("consume Any offers %v, want only open-g2", got)
	}
	e.nc.Spec.Reservations = gcpv1.Reservations{Consume: gcpv1.ReservationsSpecific, Names: []string{"h100-block"}}
	if err := e.kube.Update(ctx, e.nc); err != nil {
		t.Fatal(err)
	}
	got := reserved(gpuPool("default"))
	if o, ok := got["h100-block"]; len(got) != 1 || !ok || o.ReservedCount != 2 || o.Zone != "us-central1-a" || o.PricePerHour >= 0.001 {
		t.Fatalf("consume Specific offers %v", got)
	}
	c := claim("reserved-1", v1.OfferingChoice{InstanceType: "a3-highgpu-8g", Zone: "us-central1-a", CapacityType: v1.CapacityTypeReserved, ReservationID: "h100-block"})
	launched, err := e.provider.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if launched.Status.CapacityType != v1.CapacityTypeReserved {
		t.Errorf("capacity type %s", launched.Status.CapacityType)
	}
	ra := e.srv.Instances()[0].GetReservationAffinity()
	if ra.GetConsumeReservationType() != "SPECIFIC_RESERVATION" || len(ra.GetValues()) != 1 || ra.GetValues()[0] != "h100-block" {
		t.Errorf("affinity = %v", ra)
	}
	if r := e.srv.Reservation("us-central1-a", "h100-block"); r.GetSpecificReservation().GetInUseCount() != 1 {
		t.Errorf("reservation in use = %d, want 1", r.GetSpecificReservation().GetInUseCount())
	}
	e.clock.Step(2 * gcpprovider.DefaultReservationTTL)
	if o := reserved(gpuPool("default"))["h100-block"]; o.ReservedCount != 1 {
		t.Errorf("after one launch the reservation offers %d, want 1", o.ReservedCount)
	}
	e.nc.Spec.Reservations = gcpv1.Reservations{Consume: gcpv1.ReservationsNone}
	if err := e.kube.Update(ctx, e.nc); err != nil {
		t.Fatal(err)
	}
	if got := reserved(gpuPool("default")); len(got) != 0 {
		t.Errorf("consume None offers %v", got)
	}
}

func TestGangSharesOneCompactPolicyInOneZone(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	var zones []string
	for i, offs := range [][]v1.OfferingChoice{
		{offering("a3-highgpu-8g", "us-central1-b", v1.CapacityTypeOnDemand), offering("a3-highgpu-8g", "us-central1-a", v1.CapacityTypeOnDemand)},
		{offering("a3-highgpu-8g", "us-central1-a", v1.CapacityTypeOnDemand), offering("a3-highgpu-8g", "us-central1-b", v1.CapacityTypeOnDemand)},
	} {
		c := claim([]string{"train-0", "train-1"}[i], offs...)
		c.Spec.Placement = &v1.Placement{Group: "llm-run-7"}
		got, err := e.provider.Create(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		zones = append(zones, got.Status.Zone)
	}
	if zones[0] != "us-central1-b" || zones[1] != "us-central1-b" {
		t.Errorf("gang zones = %v, want both in the first VM's zone", zones)
	}
	policies := e.srv.ResourcePolicies()
	if len(policies) != 1 || policies[0].GetGroupPlacementPolicy().GetCollocation() != "COLLOCATED" {
		t.Fatalf("policies = %v, want one compact policy", policies)
	}
	for _, inst := range e.srv.Instances() {
		if rp := inst.GetResourcePolicies(); len(rp) != 1 || lastSeg(rp[0]) != policies[0].GetName() {
			t.Errorf("%s resource policies = %v", inst.GetName(), rp)
		}
	}
	// Not cleaned up while used, nor while new; cleaned up once unused and old.
	e.clock.Step(time.Hour)
	if err := e.provider.CleanupPlacementPolicies(ctx); err != nil || len(e.srv.ResourcePolicies()) != 1 {
		t.Fatalf("cleanup removed a used policy (%v)", err)
	}
	for _, n := range []string{"train-0", "train-1"} {
		if err := e.provider.Delete(ctx, claim(n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.provider.CleanupPlacementPolicies(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.ResourcePolicies()); n != 0 {
		t.Errorf("%d policies left after the gang ended", n)
	}
	// Types without compact placement ignore the group.
	c := claim("infer", offering("g2-standard-4", "us-central1-a", v1.CapacityTypeOnDemand))
	c.Spec.Placement = &v1.Placement{Group: "llm-run-8"}
	if _, err := e.provider.Create(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.ResourcePolicies()); n != 0 {
		t.Errorf("a g2 launch made %d placement policies", n)
	}
}

// TestConcurrentGangLaunchesShareAZone launches a placement group's claims
// at once, as the lifecycle controller does: they must still land in one zone.
func TestConcurrentGangLaunchesShareAZone(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			zones := []string{"us-central1-a", "us-central1-b", "us-central1-c"}
			if i%2 == 1 {
				zones[0], zones[1] = zones[1], zones[0]
			}
			var offs []v1.OfferingChoice
			for _, z := range zones {
				offs = append(offs, offering("a3-highgpu-8g", z, v1.CapacityTypeOnDemand))
			}
			c := claim(fmt.Sprintf("gang-%d", i), offs...)
			c.Spec.Placement = &v1.Placement{Group: "concurrent"}
			_, err := e.provider.Create(ctx, c)
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	zones := map[string]bool{}
	for _, inst := range e.srv.Instances() {
		zones[inst.GetZone()] = true
	}
	if len(zones) != 1 || len(e.srv.Instances()) != 4 || len(e.srv.ResourcePolicies()) != 1 {
		t.Errorf("4 concurrent gang launches: %d VMs in zones %v with %d policies, want 4 in one zone with one policy",
			len(e.srv.Instances()), zones, len(e.srv.ResourcePolicies()))
	}
}

func TestDriftFollowsTheNodeClass(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c, err := e.provider.Create(ctx, claim("drift-1", offering("e2-standard-4", "us-central1-a", v1.CapacityTypeOnDemand)))
	if err != nil {
		t.Fatal(err)
	}
	check := func(want cloudprovider.DriftReason, change func(*gcpv1.GCENodeClass)) {
		t.Helper()
		nc := &gcpv1.GCENodeClass{}
		if err := e.kube.Get(ctx, clientKey(e.nc), nc); err != nil {
			t.Fatal(err)
		}
		change(nc)
		if err := e.kube.Update(ctx, nc); err != nil {
			t.Fatal(err)
		}
		change(nc) // Update answered with the stored status
		if err := e.kube.Status().Update(ctx, nc); err != nil {
			t.Fatal(err)
		}
		got, err := e.provider.IsDrifted(ctx, c)
		if err != nil || got != want {
			t.Errorf("IsDrifted = %q, %v; want %q", got, err, want)
		}
		if err := e.kube.Get(ctx, clientKey(nc), nc); err != nil {
			t.Fatal(err)
		}
		orig := readyNodeClass(e.srv)
		orig.ResourceVersion = nc.ResourceVersion
		if err := e.kube.Update(ctx, orig); err != nil {
			t.Fatal(err)
		}
		orig.Status = readyNodeClass(e.srv).Status
		if err := e.kube.Status().Update(ctx, orig); err != nil {
			t.Fatal(err)
		}
	}
	check("", func(*gcpv1.GCENodeClass) {})
	check(gcpprovider.DriftImage, func(nc *gcpv1.GCENodeClass) { nc.Status.Image += "-next" })
	check(gcpprovider.DriftSubnetwork, func(nc *gcpv1.GCENodeClass) { nc.Status.Subnetwork += "-2" })
	check(gcpprovider.DriftServiceAccount, func(nc *gcpv1.GCENodeClass) { nc.Spec.ServiceAccount = "other@stowage-test.iam.gserviceaccount.com" })
	check(gcpprovider.DriftNetworkTags, func(nc *gcpv1.GCENodeClass) { nc.Spec.NetworkTags = []string{"other"} })
	check(gcpprovider.DriftBootDisk, func(nc *gcpv1.GCENodeClass) { nc.Spec.BootDisk.SizeGiB = 200 })
	check(gcpprovider.DriftNodeClass, func(nc *gcpv1.GCENodeClass) { nc.Spec.Labels = map[string]string{"team": "ml"} })
}

func TestInterruptionsFromOperationsAndMaintenance(t *testing.T) {
	e := start(t, func(o *gcpprovider.Options) { o.Interruption.PollInterval = time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spot, err := e.provider.Create(ctx, claim("spot-2", offering("g2-standard-4", "us-central1-a", v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	od, err := e.provider.Create(ctx, claim("od-2", offering("a2-highgpu-1g", "us-central1-b", v1.CapacityTypeOnDemand)))
	if err != nil {
		t.Fatal(err)
	}
	ch, err := e.provider.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		for range ch { // the source stops before the clients close
		}
	}()
	if err := e.srv.Preempt("spot-2"); err != nil {
		t.Fatal(err)
	}
	window := e.clock.Now().Add(48 * time.Hour).Truncate(time.Second)
	if err := e.srv.SetUpcomingMaintenance("od-2", window); err != nil {
		t.Fatal(err)
	}
	got := map[cloudprovider.InterruptionKind]cloudprovider.InterruptionEvent{}
	deadline := time.After(30 * time.Second)
	for len(got) < 2 {
		select {
		case ev := <-ch:
			got[ev.Kind] = ev
		case <-deadline:
			t.Fatalf("got %v, want a spot reclaim and a maintenance notice", got)
		case <-time.After(50 * time.Millisecond):
			e.clock.Step(time.Second)
		}
	}
	if ev := got[cloudprovider.InterruptionSpotReclaim]; ev.ProviderID != spot.Status.ProviderID || ev.Deadline.IsZero() {
		t.Errorf("spot reclaim = %+v", ev)
	}
	if ev := got[cloudprovider.InterruptionScheduledMaintenance]; ev.ProviderID != od.Status.ProviderID || !ev.Deadline.Equal(window) {
		t.Errorf("maintenance = %+v, want deadline %s", ev, window)
	}
	// Each notice once.
	e.clock.Step(5 * time.Second)
	select {
	case ev := <-ch:
		t.Errorf("notice repeated: %+v", ev)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestPricesFallBackToTheBuiltInCatalog(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := start(t, func(o *gcpprovider.Options) { o.Registerer = reg })
	e.srv.FailNext("billing.skus.list", http.StatusServiceUnavailable)
	its, err := e.provider.InstanceTypes(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var g2 *cloudprovider.InstanceType
	for _, it := range its {
		if it.Name == "g2-standard-4" {
			g2 = it
		}
	}
	if g2 == nil || g2.Offerings[0].PricePerHour != 0.707 {
		t.Fatalf("g2-standard-4 = %+v, want the built-in price 0.707", g2)
	}
	if n := testutil.ToFloat64(gaugeOf(t, reg, "static")); n == 0 {
		t.Error("stowage_gcp_price_source{source=static} is 0 while the Billing API failed")
	}
	// Next refresh reaches the API.
	e.clock.Step(gcpprovider.DefaultPriceTTL)
	if _, err := e.provider.InstanceTypes(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(gaugeOf(t, reg, "api")); n == 0 {
		t.Error("stowage_gcp_price_source{source=api} is 0 after the Billing API answered")
	}
}
