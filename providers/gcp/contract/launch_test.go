package contract

import (
	"context"
	"math"
	"strings"
	"testing"

	"cloud.google.com/go/compute/apiv1/computepb"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	"github.com/stowage-k8s/stowage/providers/gcp/gcetest"
)

func md(inst *computepb.Instance, key string) string {
	for _, it := range inst.GetMetadata().GetItems() {
		if it.GetKey() == key {
			return it.GetValue()
		}
	}
	return ""
}

func TestCatalogFromMachineTypesAndBilling(t *testing.T) {
	e := start(t)
	its, err := e.provider.InstanceTypes(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*cloudprovider.InstanceType{}
	for _, it := range its {
		byName[it.Name] = it
	}
	mega := byName["a3-megagpu-8g"]
	if mega == nil || mega.GPU == nil || mega.GPU.Count != 8 || mega.Labels[v1.LabelGPUCount] != "8" || !mega.Placement {
		t.Fatalf("a3-megagpu-8g (two accelerator entries of 4) = %+v, want 8 GPUs and placement", mega)
	}
	t4 := byName["n1-standard-4-t4x1"]
	if t4 == nil || t4.GPU == nil || t4.GPU.Name != "t4" || t4.GPU.Count != 1 || t4.Labels[v1.LabelGPUMemory] != "16384" {
		t.Fatalf("n1-standard-4-t4x1 = %+v", t4)
	}
	if t4.Placement || byName["g2-standard-4"].Placement {
		t.Error("n1 and g2 must not claim compact placement")
	}
	wantOD := 4*0.031611 + 15*0.004237 + 0.35
	wantSpot := 4*0.00698 + 15*0.000936 + 0.14
	zones := map[string]bool{}
	for _, o := range t4.Offerings {
		zones[o.Zone] = true
		want := wantOD
		if o.CapacityType == v1.CapacityTypeSpot {
			want = wantSpot
		}
		if math.Abs(o.PricePerHour-want) > 1e-6 {
			t.Errorf("%s %s price %.6f, want %.6f", o.Zone, o.CapacityType, o.PricePerHour, want)
		}
	}
	if len(zones) != 4 {
		t.Errorf("n1+T4 zones = %v, want the 4 zones selling both", zones)
	}
	v100 := byName["n1-standard-8-v100x1"]
	if v100 == nil {
		t.Fatal("n1-standard-8-v100x1 missing")
	}
	for _, o := range v100.Offerings {
		if o.Zone == "us-central1-f" {
			t.Error("V100 is not sold in us-central1-f; no offering may be there")
		}
	}
	if byName["n1-standard-16-v100x1"] != nil {
		t.Error("one V100 takes at most 12 vCPUs; n1-standard-16-v100x1 must not be offered")
	}
	if _, ok := byName["a2-highgpu-1g"]; !ok {
		t.Error("a2-highgpu-1g missing")
	}
}

func TestLaunchN1WithT4JoinsGKE(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := claim("gpu-abc12", offering("n1-standard-4-t4x1", "us-central1-a", v1.CapacityTypeOnDemand))
	c.Spec.Taints = append(c.Spec.Taints, taint("nvidia.com/gpu"))
	got, err := e.provider.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.ProviderID != gcpprovider.ProviderID(e.srv.Project, "us-central1-a", "gpu-abc12") || got.Status.InstanceType != "n1-standard-4-t4x1" ||
		got.Status.CapacityType != v1.CapacityTypeOnDemand || got.Status.Capacity.Name(v1.ResourceNvidiaGPU, "").Value() != 1 {
		t.Fatalf("claim status = %+v", got.Status)
	}
	insts := e.srv.Instances()
	if len(insts) != 1 {
		t.Fatalf("%d instances, want 1", len(insts))
	}
	inst := insts[0]
	if lastSeg(inst.GetMachineType()) != "n1-standard-4" || len(inst.GetGuestAccelerators()) != 1 ||
		lastSeg(inst.GetGuestAccelerators()[0].GetAcceleratorType()) != "nvidia-tesla-t4" || inst.GetGuestAccelerators()[0].GetAcceleratorCount() != 1 {
		t.Errorf("machine %s with accelerators %v, want n1-standard-4 + 1 T4", inst.GetMachineType(), inst.GetGuestAccelerators())
	}
	if s := inst.GetScheduling(); s.GetOnHostMaintenance() != "TERMINATE" || s.GetProvisioningModel() != "STANDARD" {
		t.Errorf("scheduling = %v, want TERMINATE on host maintenance for a GPU VM", s)
	}
	env := md(inst, "kube-env")
	for _, want := range []string{"stowage.dev/nodepool=gpu", "cloud.google.com/gke-accelerator=nvidia-tesla-t4",
		"cloud.google.com/gke-gpu-driver-version=default", "node.kubernetes.io/instance-type=n1-standard-4-t4x1", "KUBERNETES_MASTER_NAME: " + gcetest.ClusterEndpoint} {
		if !strings.Contains(env, want) {
			t.Errorf("kube-env lacks %q:\n%s", want, env)
		}
	}
	if strings.Contains(env, "gke-nodepool=default-pool") {
		t.Error("kube-env still names the template's node pool")
	}
	if !strings.Contains(env, "NODE_TAINTS: '"+v1.UnregisteredTaintKey+"=:NoSchedule,nvidia.com/gpu=present:NoSchedule'") {
		t.Errorf("NODE_TAINTS wrong:\n%s", env)
	}
	if md(inst, "cluster-name") != e.srv.Cluster || !strings.Contains(md(inst, "kube-labels"), "stowage.dev/nodepool=gpu") {
		t.Error("GKE bootstrap metadata not copied")
	}
	if l := inst.GetLabels(); l[gcpprovider.LabelCluster] != "contract" || l[gcpprovider.LabelNodeClaim] != "gpu-abc12" || l[gcpprovider.LabelNodePool] != "gpu" {
		t.Errorf("labels = %v", l)
	}
	tags := inst.GetTags().GetItems()
	if len(tags) != 2 || tags[0] != gcetest.NodeTag || tags[1] != "gpu-nodes" {
		t.Errorf("tags = %v, want GKE's node tag and the class's", tags)
	}
	if sa := inst.GetServiceAccounts(); len(sa) != 1 || sa[0].GetEmail() != e.nc.Spec.ServiceAccount {
		t.Errorf("service accounts = %v", sa)
	}
	if ra := inst.GetReservationAffinity(); ra != nil && ra.GetConsumeReservationType() != "ANY_RESERVATION" {
		t.Errorf("reservation affinity %v, want any (Compute Engine's default)", ra)
	}

	// The CSR approver recognises it, and nothing else.
	if m, err := e.provider.OwnMachine(ctx, "gpu-abc12"); err != nil || m == nil || len(m.Addresses) != 1 || m.Addresses[0] != inst.GetNetworkInterfaces()[0].GetNetworkIP() {
		t.Errorf("OwnMachine = %+v, %v", m, err)
	}
	if m, err := e.provider.OwnMachine(ctx, "someone-else"); err != nil || m != nil {
		t.Errorf("OwnMachine(someone-else) = %+v, %v; want nil", m, err)
	}

	// Get and List see it; Delete removes it; a second Delete is NotFound.
	if g, err := e.provider.Get(ctx, got.Status.ProviderID); err != nil || g.Name != c.Name || g.Status.InstanceType != "n1-standard-4-t4x1" {
		t.Errorf("Get = %+v, %v", g, err)
	}
	if l, err := e.provider.List(ctx); err != nil || len(l) != 1 || l[0].Name != c.Name || l[0].Labels[v1.LabelNodePool] != "gpu" {
		t.Errorf("List = %v, %v", l, err)
	}
	if err := e.provider.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Instances()); n != 0 {
		t.Errorf("%d instances after Delete", n)
	}
	if err := e.provider.Delete(ctx, got); !cloudprovider.IsNotFound(err) {
		t.Errorf("second Delete = %v, want NotFound", err)
	}
	if _, err := e.provider.Get(ctx, got.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get after Delete = %v, want NotFound", err)
	}
}

func TestSpotLaunchIsDeletedOnPreemption(t *testing.T) {
	e := start(t)
	if _, err := e.provider.Create(context.Background(), claim("spot-1", offering("g2-standard-4", "us-central1-b", v1.CapacityTypeSpot))); err != nil {
		t.Fatal(err)
	}
	s := e.srv.Instances()[0].GetScheduling()
	if s.GetProvisioningModel() != "SPOT" || s.GetInstanceTerminationAction() != "DELETE" || s.GetAutomaticRestart() || s.GetOnHostMaintenance() != "TERMINATE" {
		t.Errorf("spot scheduling = %v", s)
	}
	if ra := e.srv.Instances()[0].GetReservationAffinity(); ra.GetConsumeReservationType() != "NO_RESERVATION" {
		t.Errorf("spot VM reservation affinity %v, want NO_RESERVATION", ra)
	}
}

func TestStockoutFallsBackToNextZone(t *testing.T) {
	e := start(t)
	e.srv.Stockout("us-central1-a", "g2-standard-4", true)
	c := claim("fallback", offering("g2-standard-4", "us-central1-a", v1.CapacityTypeOnDemand), offering("g2-standard-4", "us-central1-b", v1.CapacityTypeOnDemand))
	got, err := e.provider.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Zone != "us-central1-b" {
		t.Errorf("launched in %s, want the next zone", got.Status.Zone)
	}
	stocked := cloudprovider.OfferingID{InstanceType: "g2-standard-4", Zone: "us-central1-a", CapacityType: v1.CapacityTypeOnDemand}
	if !e.provider.Unavailable().IsUnavailable(stocked) {
		t.Error("the stocked-out offering is not marked unavailable in the shared cache")
	}
	if len(got.Status.UnavailableOfferings) != 1 || got.Status.UnavailableOfferings[0] != stocked.String() {
		t.Errorf("status.unavailableOfferings = %v", got.Status.UnavailableOfferings)
	}
	its, _ := e.provider.InstanceTypes(context.Background(), nil)
	for _, it := range its {
		for _, o := range it.Offerings {
			if it.Name == "g2-standard-4" && o.Zone == "us-central1-a" && o.CapacityType == v1.CapacityTypeOnDemand && o.Available {
				t.Error("InstanceTypes still offers the stocked-out pool as available")
			}
		}
	}
}

func TestQuotaErrorsAreInsufficientCapacity(t *testing.T) {
	e := start(t)
	e.srv.QuotaExceeded("", true)
	_, err := e.provider.Create(context.Background(), claim("quota", offering("a2-highgpu-1g", "us-central1-a", v1.CapacityTypeOnDemand),
		offering("a2-highgpu-1g", "us-central1-b", v1.CapacityTypeOnDemand)))
	if !cloudprovider.IsInsufficientCapacity(err) || len(cloudprovider.InsufficientCapacityOfferings(err)) != 2 {
		t.Fatalf("err = %v, want insufficient capacity naming both offerings", err)
	}
	if n := len(e.srv.Instances()); n != 0 {
		t.Errorf("%d instances after quota errors", n)
	}
}

func TestLostResponseAdoptsTheInstance(t *testing.T) {
	e := start(t)
	c := claim("lost-1", offering("e2-standard-4", "us-central1-c", v1.CapacityTypeOnDemand))
	e.srv.LoseInsertResponses(1)
	if _, err := e.provider.Create(context.Background(), c); err == nil {
		t.Fatal("the first Create must fail: its response was lost")
	}
	got, err := e.provider.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Inserted()); n != 1 {
		t.Fatalf("%d instances were created, want exactly 1", n)
	}
	if got.Status.ProviderID != gcpprovider.ProviderID(e.srv.Project, "us-central1-c", "lost-1") {
		t.Errorf("adopted %s", got.Status.ProviderID)
	}
	// Deleting a claim whose status was never written finds the VM by name.
	if err := e.provider.Delete(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Instances()); n != 0 {
		t.Errorf("%d instances after Delete", n)
	}
}

func lastSeg(s string) string { return s[strings.LastIndex(s, "/")+1:] }

// TestStoppedVMIsStillAMachine: a VM stopped after launch (a guest
// shutdown) is gone to Kubernetes (Get) but still bills its disk, so List
// shows it for garbage collection, and a retried launch of its claim adopts
// it rather than buying a second VM in another zone.
func TestStoppedVMIsStillAMachine(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	a := offering("e2-standard-4", "us-central1-a", v1.CapacityTypeOnDemand)
	b := offering("e2-standard-4", "us-central1-b", v1.CapacityTypeOnDemand)
	c := claim("stopped-1", a, b)
	first, err := e.provider.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.srv.Stop("stopped-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.provider.Get(ctx, first.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get of a stopped VM = %v, want NotFound", err)
	}
	list, err := e.provider.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Status.ProviderID != first.Status.ProviderID {
		t.Errorf("List = %d machines, want the stopped VM %s", len(list), first.Status.ProviderID)
	}
	// The claim's status write was lost and zone a is now short of capacity.
	e.provider.Unavailable().MarkUnavailable(cloudprovider.ChoiceID(a))
	again, err := e.provider.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Instances()); n != 1 || again.Status.ProviderID != first.Status.ProviderID {
		t.Fatalf("retried launch: %d VMs, adopted %s; want the one stopped VM %s", n, again.Status.ProviderID, first.Status.ProviderID)
	}
	// Deleting the claim by name finds and deletes it.
	c.Status.ProviderID = ""
	if err := e.provider.Delete(ctx, c); err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Instances()); n != 0 {
		t.Errorf("%d VMs after Delete, want 0", n)
	}
}

// TestDeleteLeavesAnotherClustersVM: a claim whose name, or whose recorded
// providerID, leads to a VM of another cluster gets NotFound and the VM
// stays.
func TestDeleteLeavesAnotherClustersVM(t *testing.T) {
	e := start(t)
	other, err := gcpprovider.New(gcpprovider.Options{ClusterName: "other", Project: e.srv.Project, Region: e.srv.Region, Clients: e.clients, Kube: e.kube, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := claim("shared-name", offering("e2-standard-4", "us-central1-a", v1.CapacityTypeOnDemand))
	theirs, err := other.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.provider.Delete(ctx, c); !cloudprovider.IsNotFound(err) {
		t.Errorf("Delete by name = %v, want NotFound", err)
	}
	if err := e.provider.Delete(ctx, theirs); !cloudprovider.IsNotFound(err) {
		t.Errorf("Delete by providerID = %v, want NotFound", err)
	}
	if n := len(e.srv.Instances()); n != 1 {
		t.Fatalf("%d VMs left, want the other cluster's one", n)
	}
	if err := other.Delete(ctx, theirs); err != nil {
		t.Fatalf("its own cluster's Delete: %v", err)
	}
	if n := len(e.srv.Instances()); n != 0 {
		t.Errorf("%d VMs left after its own cluster deleted it", n)
	}
}

// TestReadAfterInsertFailureIsNoCapacityError: the VM was made but reading
// it back hit a read-rate quota (403 quotaExceeded). That is not the zone
// lacking capacity: Create fails without trying the next zone, and the
// retry adopts the one VM.
func TestReadAfterInsertFailureIsNoCapacityError(t *testing.T) {
	e := start(t)
	ctx := context.Background()
	c := claim("read-fails", offering("e2-standard-4", "us-central1-a", v1.CapacityTypeOnDemand),
		offering("e2-standard-4", "us-central1-b", v1.CapacityTypeOnDemand))
	e.srv.FailNextWith("compute.instances.get", 403, "quotaExceeded")
	_, err := e.provider.Create(ctx, c)
	if err == nil || cloudprovider.IsInsufficientCapacity(err) {
		t.Fatalf("Create = %v, want a plain error", err)
	}
	if n := len(e.srv.Instances()); n != 1 {
		t.Fatalf("%d VMs after the failed read, want 1", n)
	}
	got, err := e.provider.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(e.srv.Instances()); n != 1 || got.Status.Zone != "us-central1-a" {
		t.Errorf("after the retry: %d VMs, launched in %s; want the one in us-central1-a", n, got.Status.Zone)
	}
}
