package contract

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/azure"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure/azuretest"
	"github.com/stowage-k8s/stowage/providers/azure/controllers/nodeclass"
)

// TestLaunchGetListDelete launches a spot GPU VM with its NIC, reads it back
// by providerID and in the list, and deletes it with its NIC and disk.
func TestLaunchGetListDelete(t *testing.T) {
	e := newEnv(t)
	nc := e.nodeClass(t, "gpu")
	if !ready(nc) {
		t.Fatalf("node class not ready: %+v", nc.Status.Conditions)
	}
	c := claim("gpu-abcde", "gpu", offering("Standard_NC4as_T4_v3", "eastus-2", v1.CapacityTypeSpot))
	got, err := e.provider.Create(e.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	vms := e.vmsOf(c.Name)
	if len(vms) != 1 {
		t.Fatalf("%d VMs for the claim, want 1", len(vms))
	}
	vm := vms[0]
	wantImage := nodeclass.ImageID(nodeclass.AKSUbuntuGallery, "2204gen2containerd", azuretest.LatestImageVersion)
	for what, pair := range map[string][2]string{
		"name": {vm.Name, "gpu-abcde"}, "size": {vm.Size, "Standard_NC4as_T4_v3"}, "zone": {vm.Zone, "2"},
		"priority": {vm.Priority, "Spot"}, "eviction policy": {vm.EvictionPolicy, "Delete"}, "image": {vm.Image, wantImage},
		"OS disk": {vm.OSDiskType, "Premium_LRS"}, "state": {vm.State, "Succeeded"},
		"cluster tag": {vm.Tags[azure.TagCluster], cluster}, "uid tag": {vm.Tags[azure.TagNodeClaimUID], "gpu-abcde-uid"},
		"user tag": {vm.Tags["team"], "ml"}, "nodepool tag": {vm.Tags[azure.TagNodePool], "gpu"},
	} {
		if pair[0] != pair[1] {
			t.Errorf("VM %s = %q, want %q", what, pair[0], pair[1])
		}
	}
	s := got.Status
	if s.InstanceType != "Standard_NC4as_T4_v3" || s.Zone != "eastus-2" || s.CapacityType != v1.CapacityTypeSpot || s.ImageID != wantImage {
		t.Errorf("claim status = %+v", s)
	}
	if !strings.HasPrefix(s.ProviderID, "azure:///subscriptions/"+e.cloud.SubscriptionID()+"/resourceGroups/"+strings.ToLower(e.cloud.ResourceGroup())) ||
		!strings.HasSuffix(s.ProviderID, "/virtualMachines/gpu-abcde") {
		t.Errorf("providerID %s", s.ProviderID)
	}
	if gpu := s.Capacity[v1.ResourceNvidiaGPU]; gpu.Value() != 1 || s.PricePerHour == "" {
		t.Errorf("capacity %v, price %q", s.Capacity, s.PricePerHour)
	}

	// The custom data carries the node's labels, taints and providerID.
	nb, err := azure.ParseCustomData(vm.CustomData)
	if err != nil {
		t.Fatal(err)
	}
	if nb.ProviderID != s.ProviderID || nb.APIServer != apiServer || nb.BootstrapToken != token || nb.KubernetesVersion != "1.33.2" {
		t.Errorf("bootstrap = %+v", nb)
	}
	for k, want := range map[string]string{v1.LabelNodePool: "gpu", "team": "ml", v1.LabelGPUName: "t4", v1.LabelZone: "eastus-2",
		v1.LabelCapacityType: v1.CapacityTypeSpot, v1.LabelInstanceType: "Standard_NC4as_T4_v3", azure.LabelAKSCluster: e.cloud.ResourceGroup(),
		"nvidia.com/gpu.deploy.driver": "false", v1.LabelNodeClaim: "gpu-abcde"} {
		if nb.Labels[k] != want {
			t.Errorf("node label %s = %q, want %q", k, nb.Labels[k], want)
		}
	}
	if !slices.ContainsFunc(nb.Taints, func(tn corev1.Taint) bool { return tn.Key == v1.UnregisteredTaintKey }) ||
		!slices.ContainsFunc(nb.Taints, func(tn corev1.Taint) bool { return tn.Key == "nvidia.com/gpu" }) {
		t.Errorf("taints %v, want the unregistered taint and the claim's", nb.Taints)
	}

	byID, err := e.provider.Get(e.ctx, s.ProviderID)
	if err != nil || byID.Name != c.Name || byID.Status.InstanceType != s.InstanceType || byID.Labels[v1.LabelNodePool] != "gpu" {
		t.Fatalf("Get = %+v, %v", byID, err)
	}
	list, err := e.provider.List(e.ctx)
	if err != nil || len(list) != 1 || list[0].Status.ProviderID != s.ProviderID {
		t.Fatalf("List = %d machines, %v", len(list), err)
	}

	if err := e.provider.Delete(e.ctx, got); err != nil {
		t.Fatal(err)
	}
	if n := len(e.cloud.VMs()); n != 0 {
		t.Errorf("%d VMs after delete", n)
	}
	if nics, disks := e.cloud.NICs(), e.cloud.Disks(); len(nics)+len(disks) != 0 {
		t.Errorf("left behind NICs %v, disks %v", nics, disks)
	}
	if err := e.provider.Delete(e.ctx, got); !cloudprovider.IsNotFound(err) {
		t.Errorf("second delete: %v, want NotFound", err)
	}
	if _, err := e.provider.Get(e.ctx, s.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get after delete: %v, want NotFound", err)
	}
}

// TestConcurrentListsSeeEveryVM: the garbage collector and the lifecycle
// controller list VMs at the same time; each list must page through every VM
// on its own (the fake pages three VMs at a time), with no shared cursor.
func TestConcurrentListsSeeEveryVM(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "gpu")
	const vms = 8
	for i := range vms {
		if _, err := e.provider.Create(e.ctx, claim(fmt.Sprintf("listed-%d", i), "gpu", offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand))); err != nil {
			t.Fatal(err)
		}
	}
	const lists = 6
	var wg sync.WaitGroup
	counts := make([]int, lists)
	errs := make([]error, lists)
	for i := range lists {
		wg.Go(func() {
			got, err := e.provider.List(e.ctx)
			counts[i], errs[i] = len(got), err
		})
	}
	wg.Wait()
	for i := range lists {
		if errs[i] != nil || counts[i] != vms {
			t.Errorf("list %d: %d machines, %v; want %d", i, counts[i], errs[i], vms)
		}
	}
}

// TestCreateIsIdempotent: a retried Create, a lost response and a
// controller that died mid-launch all end with exactly one VM.
func TestCreateIsIdempotent(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "gpu")
	od := offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand)

	t.Run("retry", func(t *testing.T) {
		c := claim("retry", "gpu", od)
		first, err := e.provider.Create(e.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		again, err := e.provider.Create(e.ctx, c)
		if err != nil || again.Status.ProviderID != first.Status.ProviderID {
			t.Fatalf("retry = %v, %v; want the same VM", again, err)
		}
		if n := len(e.vmsOf(c.Name)); n != 1 {
			t.Errorf("%d VMs, want 1", n)
		}
	})

	t.Run("lost response", func(t *testing.T) {
		before := e.cloud.Calls("VirtualMachines.CreateOrUpdate")
		e.cloud.LoseCreateResponses(1)
		c := claim("lost", "gpu", od, offering("Standard_NC8as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand))
		got, err := e.provider.Create(e.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.InstanceType != "Standard_NC4as_T4_v3" {
			t.Errorf("adopted %s, want the VM the lost create made", got.Status.InstanceType)
		}
		if n := len(e.vmsOf(c.Name)); n != 1 {
			t.Errorf("%d VMs, want 1", n)
		}
		if n := e.cloud.Calls("VirtualMachines.CreateOrUpdate") - before; n != 1 {
			t.Errorf("%d creates, want 1: the VM was found, not bought again", n)
		}
	})

	t.Run("crash mid-launch", func(t *testing.T) {
		release := e.cloud.HoldCreates()
		defer release()
		c := claim("crash", "gpu", od)
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan error, 1)
		go func() {
			_, err := e.provider.Create(ctx, c)
			done <- err
		}()
		waitFor(t, "the VM to exist", func() bool { return len(e.vmsOf(c.Name)) == 1 })
		cancel() // the controller dies
		if err := <-done; err == nil {
			t.Fatal("a create cut short must not report success")
		}
		restarted := e.newProvider(t)
		release()
		got, err := restarted.Create(e.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(e.vmsOf(c.Name)); n != 1 || got.Status.ProviderID == "" {
			t.Errorf("%d VMs after the restart, want the one launched before the crash", n)
		}
		if gpu := got.Status.Capacity[v1.ResourceNvidiaGPU]; gpu.Value() != 1 || got.Status.Allocatable.Cpu().IsZero() {
			t.Errorf("adopted claim capacity %v, allocatable %v", got.Status.Capacity, got.Status.Allocatable)
		}
		waitFor(t, "the held create to finish", func() bool { return e.vmsOf(c.Name)[0].State == "Succeeded" })
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAllocationFailuresFallBack walks the claim's offerings past capacity
// errors, skipping each failed offering for as long as its error says, and
// leaves no failed VM or spare NIC behind.
func TestAllocationFailuresFallBack(t *testing.T) {
	tests := []struct {
		name     string
		code     string
		capType  string
		ttl      time.Duration
		priority string
	}{
		{"zonal stockout", azuretest.CodeZonalAllocationFailed, v1.CapacityTypeOnDemand, azure.StockoutTTL, "Regular"},
		{"allocation failed", azuretest.CodeAllocationFailed, v1.CapacityTypeSpot, azure.StockoutTTL, "Spot"},
		{"sku not available on-demand", azuretest.CodeSkuNotAvailable, v1.CapacityTypeOnDemand, azure.SkuUnavailableTTL, "Regular"},
		{"sku not available spot", azuretest.CodeSkuNotAvailable, v1.CapacityTypeSpot, azure.SpotUnavailableTTL, "Spot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.nodeClass(t, "gpu")
			e.cloud.FailAllocation("Standard_NC4as_T4_v3", "1", tt.priority, tt.code, 1)
			failed := offering("Standard_NC4as_T4_v3", "eastus-1", tt.capType)
			c := claim("fallback", "gpu", failed, offering("Standard_NC4as_T4_v3", "eastus-2", tt.capType))
			got, err := e.provider.Create(e.ctx, c)
			if err != nil {
				t.Fatal(err)
			}
			if got.Status.Zone != "eastus-2" || !slices.Contains(got.Status.UnavailableOfferings, cloudprovider.ChoiceID(failed).String()) {
				t.Errorf("launched in %s, unavailable %v; want eastus-2 after eastus-1 failed", got.Status.Zone, got.Status.UnavailableOfferings)
			}
			if vms, nics := e.cloud.VMs(), e.cloud.NICs(); len(vms) != 1 || len(nics) != 1 {
				t.Errorf("%d VMs and NICs %v; the failed VM must be deleted and one NIC serve the launch", len(vms), nics)
			}
			id := cloudprovider.ChoiceID(failed)
			e.clock.Step(tt.ttl - time.Second)
			if !e.provider.Unavailable().IsUnavailable(id) {
				t.Errorf("%s available again before %s", id, tt.ttl)
			}
			e.clock.Step(time.Second)
			if e.provider.Unavailable().IsUnavailable(id) {
				t.Errorf("%s still unavailable after %s", id, tt.ttl)
			}
		})
	}
}

// TestQuotaErrorSkipsTheFamily: an exhausted family quota makes every
// offering drawing on it fail alike, so they are skipped without a call.
func TestQuotaErrorSkipsTheFamily(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "gpu")
	e.cloud.ExhaustQuota("standardNCasT4v3Family")
	c := claim("quota", "gpu",
		offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand),
		offering("Standard_NC8as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand),
		offering("Standard_NC24ads_A100_v4", "eastus-1", v1.CapacityTypeOnDemand))
	got, err := e.provider.Create(e.ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.InstanceType != "Standard_NC24ads_A100_v4" {
		t.Errorf("launched %s, want the A100 outside the exhausted family", got.Status.InstanceType)
	}
	if n := e.cloud.Calls("VirtualMachines.CreateOrUpdate"); n != 2 {
		t.Errorf("%d create calls, want 2: NC8as_T4_v3 shares the exhausted quota", n)
	}
	nc8 := cloudprovider.ChoiceID(c.Spec.Offerings[1])
	if !e.provider.Unavailable().IsUnavailable(nc8) {
		t.Error("NC8as_T4_v3 must be marked unavailable with its family")
	}
	e.clock.Step(azure.QuotaUnavailableTTL)
	if e.provider.Unavailable().IsUnavailable(nc8) {
		t.Error("quota marks expire")
	}
}

// TestEveryOfferingOutOfCapacity returns an InsufficientCapacityError
// naming every offering, and leaves nothing behind.
func TestEveryOfferingOutOfCapacity(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "gpu")
	for _, z := range []string{"1", "2"} {
		e.cloud.FailAllocation("Standard_NC4as_T4_v3", z, "Regular", azuretest.CodeZonalAllocationFailed, -1)
	}
	c := claim("none", "gpu", offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand),
		offering("Standard_NC4as_T4_v3", "eastus-2", v1.CapacityTypeOnDemand))
	_, err := e.provider.Create(e.ctx, c)
	if !cloudprovider.IsInsufficientCapacity(err) || len(cloudprovider.InsufficientCapacityOfferings(err)) != 2 {
		t.Fatalf("err = %v, want insufficient capacity in both offerings", err)
	}
	if vms, nics, disks := e.cloud.VMs(), e.cloud.NICs(), e.cloud.Disks(); len(vms)+len(nics)+len(disks) != 0 {
		t.Errorf("left behind %d VMs, NICs %v, disks %v", len(vms), nics, disks)
	}
	// A second claim skips both without calling Azure.
	before := e.cloud.Calls("VirtualMachines.CreateOrUpdate")
	if _, err := e.provider.Create(e.ctx, claim("none-2", "gpu", c.Spec.Offerings...)); !cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("err = %v", err)
	}
	if e.cloud.Calls("VirtualMachines.CreateOrUpdate") != before {
		t.Error("offerings known to be out of capacity were tried again")
	}
}

// TestNodeClassNotReadyBuysNothing: a missing subnet or image is a False
// condition with its reason, the pool offers nothing and Create buys nothing.
func TestNodeClassNotReadyBuysNothing(t *testing.T) {
	e := newEnv(t)
	for name, tc := range map[string]struct {
		mutate func(*azv1.AKSNodeClass)
		cond   string
	}{
		"missing-subnet": {func(nc *azv1.AKSNodeClass) {
			nc.Spec.SubnetID = strings.Replace(nc.Spec.SubnetID, "aks-subnet", "gone", 1)
		}, azv1.ConditionSubnetReady},
		"missing-image": {func(nc *azv1.AKSNodeClass) { nc.Spec.Image.Version = "199901.01.0" }, azv1.ConditionImageReady},
		"missing-crg": {func(nc *azv1.AKSNodeClass) {
			nc.Spec.CapacityReservationGroup = "/subscriptions/x/resourceGroups/" + e.cloud.ResourceGroup() + "/providers/Microsoft.Compute/capacityReservationGroups/gone"
		}, azv1.ConditionCapacityReservationGroupReady},
	} {
		t.Run(name, func(t *testing.T) {
			nc := e.nodeClass(t, name, tc.mutate)
			cond := condition(nc, tc.cond)
			if cond == nil || cond.Status != "False" || cond.Reason != nodeclass.ReasonNotFound || !strings.Contains(cond.Message, "not found") {
				t.Fatalf("%s = %+v, want False/NotFound", tc.cond, cond)
			}
			if ready(nc) {
				t.Fatal("node class is Ready")
			}
			if _, err := e.provider.InstanceTypes(e.ctx, pool(name)); !errors.Is(err, azure.ErrNodeClassNotReady) {
				t.Errorf("InstanceTypes: %v, want ErrNodeClassNotReady", err)
			}
			if _, err := e.provider.Create(e.ctx, claim(name, name, offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand))); !errors.Is(err, azure.ErrNodeClassNotReady) {
				t.Errorf("Create: %v, want ErrNodeClassNotReady", err)
			}
		})
	}
	if n := e.cloud.Calls("VirtualMachines.CreateOrUpdate") + e.cloud.Calls("NetworkInterfaces.CreateOrUpdate"); n != 0 {
		t.Errorf("%d create calls for node classes that are not Ready", n)
	}
}

// cutShortVMs ends the launch's context as the VM create is sent, as a
// shutdown or a lost lease does after the NIC is made.
type cutShortVMs struct {
	azure.VirtualMachinesAPI
	cancel context.CancelFunc
}

func (c cutShortVMs) BeginCreateOrUpdate(ctx context.Context, rg, name string, vm armcompute.VirtualMachine, o *armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions) (*runtime.Poller[armcompute.VirtualMachinesClientCreateOrUpdateResponse], error) {
	c.cancel()
	return nil, ctx.Err()
}

// stuckNICs fails every NIC delete while fail is set: the process died
// before its cleanup, or the API refused it.
type stuckNICs struct {
	azure.InterfacesAPI
	fail *atomic.Bool
}

func (n stuckNICs) BeginDelete(ctx context.Context, rg, name string, o *armnetwork.InterfacesClientBeginDeleteOptions) (*runtime.Poller[armnetwork.InterfacesClientDeleteResponse], error) {
	if n.fail.Load() {
		return nil, errors.New("injected: NIC delete failed")
	}
	return n.InterfacesAPI.BeginDelete(ctx, rg, name, o)
}

// TestLaunchCutShortLeavesNoNIC: the NIC is made before its VM. A launch
// cut short after that removes it even though its context has ended; and
// when that cleanup cannot run, deleting the claim (no providerID, no VM)
// removes it, or fails so that termination retries.
func TestLaunchCutShortLeavesNoNIC(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "gpu")
	var fail atomic.Bool
	ctx, cancel := context.WithCancel(e.ctx)
	p := e.newProvider(t, func(o *azure.Options) {
		o.VMs = cutShortVMs{o.VMs, cancel}
		o.NICs = stuckNICs{o.NICs, &fail}
	})
	c := claim("cut-short", "gpu", offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand))
	if _, err := p.Create(ctx, c); err == nil {
		t.Fatal("Create must fail when its context ends")
	}
	if nics := e.cloud.NICs(); len(nics) != 0 {
		t.Fatalf("NICs after a launch cut short: %v, want none", nics)
	}

	fail.Store(true)
	ctx, cancel = context.WithCancel(e.ctx)
	p = e.newProvider(t, func(o *azure.Options) {
		o.VMs = cutShortVMs{o.VMs, cancel}
		o.NICs = stuckNICs{o.NICs, &fail}
	})
	if _, err := p.Create(ctx, c); err == nil {
		t.Fatal("Create must fail when its context ends")
	}
	if nics := e.cloud.NICs(); len(nics) != 1 {
		t.Fatalf("NICs = %v, want the one the failed cleanup left", nics)
	}
	if err := p.Delete(e.ctx, c); err == nil || cloudprovider.IsNotFound(err) {
		t.Fatalf("Delete with the NIC still there = %v, want an error to retry on", err)
	}
	fail.Store(false)
	if err := p.Delete(e.ctx, c); !cloudprovider.IsNotFound(err) {
		t.Fatalf("Delete = %v, want NotFound (no VM) once the NIC is removed", err)
	}
	if nics := e.cloud.NICs(); len(nics) != 0 {
		t.Errorf("NICs after Delete: %v, want none", nics)
	}
}
