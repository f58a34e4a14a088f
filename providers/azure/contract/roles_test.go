package contract

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
)

// actions maps each operation the in-process Azure serves to the Azure RBAC
// actions it needs. An operation missing here fails the test: a new call
// must be documented before it ships.
var actions = map[string][]string{
	"ResourceSKUs.List":                       {"Microsoft.Compute/skus/read"},
	"CommunityGalleryImageVersions.Get":       {"Microsoft.Compute/locations/communityGalleries/images/versions/read"},
	"CommunityGalleryImageVersions.List":      {"Microsoft.Compute/locations/communityGalleries/images/versions/read"},
	"VirtualMachines.Get":                     {"Microsoft.Compute/virtualMachines/read"},
	"VirtualMachines.List":                    {"Microsoft.Compute/virtualMachines/read"},
	"VirtualMachines.CreateOrUpdate":          {"Microsoft.Compute/virtualMachines/write"},
	"VirtualMachines.Delete":                  {"Microsoft.Compute/virtualMachines/delete"},
	"Disks.Get":                               {"Microsoft.Compute/disks/read"},
	"Disks.Write":                             {"Microsoft.Compute/disks/write"},
	"Disks.Delete":                            {"Microsoft.Compute/disks/delete"},
	"ProximityPlacementGroups.Get":            {"Microsoft.Compute/proximityPlacementGroups/read"},
	"ProximityPlacementGroups.List":           {"Microsoft.Compute/proximityPlacementGroups/read"},
	"ProximityPlacementGroups.Join":           {"Microsoft.Compute/proximityPlacementGroups/read"},
	"ProximityPlacementGroups.CreateOrUpdate": {"Microsoft.Compute/proximityPlacementGroups/write"},
	"ProximityPlacementGroups.Delete":         {"Microsoft.Compute/proximityPlacementGroups/delete"},
	"CapacityReservationGroups.Get":           {"Microsoft.Compute/capacityReservationGroups/read"},
	"CapacityReservationGroups.Deploy":        {"Microsoft.Compute/capacityReservationGroups/deploy/action"},
	"CapacityReservations.List":               {"Microsoft.Compute/capacityReservationGroups/capacityReservations/read"},
	"NetworkInterfaces.Get":                   {"Microsoft.Network/networkInterfaces/read"},
	"NetworkInterfaces.List":                  {"Microsoft.Network/networkInterfaces/read"},
	"NetworkInterfaces.CreateOrUpdate":        {"Microsoft.Network/networkInterfaces/write"},
	"NetworkInterfaces.Delete":                {"Microsoft.Network/networkInterfaces/delete"},
	"NetworkInterfaces.Join":                  {"Microsoft.Network/networkInterfaces/join/action"},
	"Subnets.Get":                             {"Microsoft.Network/virtualNetworks/subnets/read"},
	"Subnets.Join":                            {"Microsoft.Network/virtualNetworks/subnets/join/action"},
	"UserAssignedIdentities.Assign":           {"Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"},
	"RetailPrices.Get":                        nil, // public, no authentication
}

// documentedActions reads the role definitions between the markers in
// docs/install-azure.md.
func documentedActions(t *testing.T) []string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "..", "docs", "install-azure.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)<!-- stowage:azure-role:begin -->(.*)<!-- stowage:azure-role:end -->`).FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/install-azure.md has no stowage:azure-role markers")
	}
	var out []string
	for _, block := range regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(m[1], -1) {
		var role struct{ Actions []string }
		if err := json.Unmarshal(block[1], &role); err != nil {
			t.Fatalf("docs/install-azure.md role definition: %v\n%s", err, block[1])
		}
		out = append(out, role.Actions...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TestDocumentedRolesMatchTheCalls runs every path the controller takes
// (catalog, node class resolution with a reservation and a placement group,
// launches of every capacity type with a gang, drift, delete, the
// interruption backstop and the placement sweep) and compares the Azure
// operations performed with the custom roles docs/install-azure.md lists:
// nothing performed may be missing, nothing listed may go unused.
func TestDocumentedRolesMatchTheCalls(t *testing.T) {
	e := newEnv(t, func(o *azure.Options) {
		o.KubeletIdentity = "/subscriptions/s/resourceGroups/r/providers/Microsoft.ManagedIdentity/userAssignedIdentities/kubelet"
	})
	crg := e.cloud.AddCapacityReservation("reserved", "Standard_NC24ads_A100_v4", "1", 1)
	ppg := e.cloud.AddProximityPlacementGroup("user-ppg")
	e.nodeClass(t, "gpu", func(nc *azv1.AKSNodeClass) { nc.Spec.CapacityReservationGroup = crg })
	e.nodeClass(t, "pinned", func(nc *azv1.AKSNodeClass) {
		nc.Spec.ProximityPlacementGroup = ppg
		nc.Spec.Image.Version = "202511.20.0"
	})
	if _, err := e.provider.InstanceTypes(e.ctx, pool("gpu")); err != nil {
		t.Fatal(err)
	}
	reserved := v1.OfferingChoice{InstanceType: "Standard_NC24ads_A100_v4", Zone: "eastus-1", CapacityType: v1.CapacityTypeReserved, ReservationID: crg}
	gang := claim("gang-0", "gpu", offering("Standard_ND96isr_H100_v5", "eastus-1", v1.CapacityTypeOnDemand))
	gang.Spec.Placement = &v1.Placement{Group: "job"}
	var launched []*v1.NodeClaim
	for _, c := range []*v1.NodeClaim{claim("res", "gpu", reserved), gang,
		claim("spot", "gpu", offering("Standard_NC4as_T4_v3", "eastus-2", v1.CapacityTypeSpot)),
		claim("pin", "pinned", offering("Standard_ND96isr_H100_v5", "eastus-2", v1.CapacityTypeOnDemand))} {
		got, err := e.provider.Create(e.ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		launched = append(launched, got)
		if _, err := e.provider.IsDrifted(e.ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	src := azure.NewInterruptionSource(azure.InterruptionOptions{ClusterName: cluster, ResourceGroup: e.cloud.ResourceGroup(), VMs: e.clients.VMs, Clock: e.clock})
	withSource := e.newProvider(t, func(o *azure.Options) { o.Interruption = src })
	ctx, cancel := context.WithCancel(e.ctx)
	if _, err := withSource.Interruptions(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the backstop timer", func() bool { return e.clock.HasWaiters() })
	e.clock.Step(azure.DefaultVMPollInterval)
	waitFor(t, "a backstop poll", func() bool { return e.cloud.Calls("VirtualMachines.List") > 0 })
	cancel()
	for _, c := range launched {
		if err := e.provider.Delete(e.ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Step(time.Hour)
	sweep, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- e.provider.Start(sweep) }()
	waitFor(t, "the placement sweep", func() bool { return e.cloud.Calls("ProximityPlacementGroups.List") > 0 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	var used []string
	for _, op := range e.cloud.Operations() {
		acts, ok := actions[op]
		if !ok {
			t.Errorf("operation %s has no entry in the actions table: add it and document its role action", op)
		}
		used = append(used, acts...)
	}
	slices.Sort(used)
	used = slices.Compact(used)
	documented := documentedActions(t)
	for _, a := range used {
		if !slices.Contains(documented, a) {
			t.Errorf("the code needs %s, which docs/install-azure.md does not grant", a)
		}
	}
	for _, a := range documented {
		if !slices.Contains(used, a) {
			t.Errorf("docs/install-azure.md grants %s, which no code path uses", a)
		}
	}
	if t.Failed() {
		t.Logf("operations performed: %s", strings.Join(e.cloud.Operations(), ", "))
	}
}
