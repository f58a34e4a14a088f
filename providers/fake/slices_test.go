package fake

import (
	"context"
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

func TestResourceSlices(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	slices := func() []resourceapi.ResourceSlice {
		list := &resourceapi.ResourceSliceList{}
		if err := e.client.List(ctx, list); err != nil {
			t.Fatal(err)
		}
		return list.Items
	}
	if _, err := e.cloud.Create(ctx, newClaim("cpu", choice("m.large", zoneA, v1.CapacityTypeOnDemand))); err != nil {
		t.Fatal(err)
	}
	if n := len(slices()); n != 0 {
		t.Fatalf("a CPU machine published %d slices", n)
	}
	gpu, err := e.cloud.Create(ctx, newClaim("gpu", choice("p.24xlarge", zoneA, v1.CapacityTypeOnDemand)))
	if err != nil {
		t.Fatal(err)
	}
	mig := newClaim("mig", choice("p.24xlarge", zoneA, v1.CapacityTypeOnDemand))
	mig.Spec.GPU = &v1.GPUSharing{MIGProfile: "1g.5gb"}
	migged, err := e.cloud.Create(ctx, mig)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for c, nc := range map[string]*v1.NodeClaim{"gpu": gpu, "mig": migged} {
		if ids[c], err = parseProviderID(nc.Status.ProviderID); err != nil {
			t.Fatal(err)
		}
	}
	byNode := map[string]resourceapi.ResourceSlice{}
	for _, s := range slices() {
		byNode[*s.Spec.NodeName] = s
	}
	node := func(c string) string { return ids[c] }
	s := byNode[node("gpu")]
	if s.Spec.Driver != scheduling.DriverNvidiaGPU || len(s.Spec.Devices) != 8 || s.Spec.Pool.Name != node("gpu") {
		t.Fatalf("GPU machine slice: driver %q, %d devices, pool %q", s.Spec.Driver, len(s.Spec.Devices), s.Spec.Pool.Name)
	}
	d := s.Spec.Devices[0]
	if *d.Attributes["type"].StringValue != "gpu" || d.Attributes["uuid"].StringValue == nil || d.Attributes["driverVersion"].VersionValue == nil {
		t.Errorf("device attributes %v", d.Attributes)
	}
	if uuid2 := s.Spec.Devices[1].Attributes["uuid"].StringValue; *uuid2 == *d.Attributes["uuid"].StringValue {
		t.Error("two devices share a UUID")
	}
	if m := byNode[node("mig")]; len(m.Spec.Devices) != 56 || *m.Spec.Devices[0].Attributes["type"].StringValue != "mig" {
		t.Errorf("MIG machine publishes %d devices, want 8 GPUs × 7 1g.5gb", len(m.Spec.Devices))
	}
	if err := e.cloud.Delete(ctx, gpu); err != nil {
		t.Fatal(err)
	}
	if err := e.client.Get(ctx, client.ObjectKey{Name: sliceName(node("mig"))}, &resourceapi.ResourceSlice{}); err != nil {
		t.Errorf("the MIG machine's slice went too: %v", err)
	}
	if n := len(slices()); n != 1 {
		t.Errorf("%d slices after deleting the GPU machine, want 1", n)
	}
}
