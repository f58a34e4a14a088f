package contract

import (
	"context"
	"testing"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/azure"
	"github.com/stowage-k8s/stowage/providers/azure/azuretest"
)

// TestBackstopSeesEvictionAfterFailedFirstOffering: a launch whose first
// offering failed leaves a Failed VM that Create deletes before trying the
// next offering under the same name. That cleanup must not hide the VM the
// second offering made from the eviction backstop.
func TestBackstopSeesEvictionAfterFailedFirstOffering(t *testing.T) {
	e := newEnv(t)
	src := azure.NewInterruptionSource(azure.InterruptionOptions{ClusterName: cluster, ResourceGroup: e.cloud.ResourceGroup(),
		VMs: e.clients.VMs, Clock: e.clock, PollInterval: time.Minute})
	e.provider = e.newProvider(t, func(o *azure.Options) { o.Interruption = src })
	e.nodeClass(t, "gpu")
	e.cloud.FailAllocation("Standard_NC4as_T4_v3", "1", "Spot", azuretest.CodeAllocationFailed, 1)
	spot, err := e.provider.Create(e.ctx, claim("spot", "gpu",
		offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeSpot), offering("Standard_NC4as_T4_v3", "eastus-2", v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	if spot.Status.Zone != "eastus-2" {
		t.Fatalf("launched in %s, want eastus-2", spot.Status.Zone)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	events, err := e.provider.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the poller's timer", func() bool { return e.clock.HasWaiters() })
	e.clock.Step(time.Minute)
	waitFor(t, "the first poll", func() bool { return e.cloud.Calls("VirtualMachines.List") >= 1 })
	if err := e.cloud.Evict("spot"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the poller's timer", func() bool { return e.clock.HasWaiters() })
	e.clock.Step(time.Minute)
	select {
	case ev := <-events:
		if ev.ProviderID != spot.Status.ProviderID || ev.Kind != cloudprovider.InterruptionInstanceStopped {
			t.Errorf("backstop event = %+v, want the evicted VM stopped", ev)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the eviction of a VM launched after a failed first offering was never reported")
	}
}
