package azure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

const providerIDPrefix = "azure://"

// maxVMName keeps VM names valid Linux computer names (at most 64 characters).
const maxVMName = 64

// ErrInvalidProviderID is wrapped when a providerID is not an Azure VM's.
var ErrInvalidProviderID = errors.New("invalid azure providerID")

// providerID is the Node's spec.providerID for a VM, in the form AKS uses
// (resource group in lower case).
func providerID(subscription, resourceGroup, vm string) string {
	return fmt.Sprintf("%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/virtualMachines/%s",
		providerIDPrefix, subscription, strings.ToLower(resourceGroup), vm)
}

// ParseProviderID returns the resource group and VM name of an Azure VM's providerID.
func ParseProviderID(id string) (resourceGroup, name string, err error) {
	rest, ok := strings.CutPrefix(id, providerIDPrefix)
	if !ok {
		return "", "", fmt.Errorf("%w %q: want azure:///subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/virtualMachines/<name>", ErrInvalidProviderID, id)
	}
	rid, err := arm.ParseResourceID(rest)
	if err != nil || !strings.EqualFold(rid.ResourceType.String(), "Microsoft.Compute/virtualMachines") {
		return "", "", fmt.Errorf("%w %q: not a virtual machine", ErrInvalidProviderID, id)
	}
	return rid.ResourceGroupName, rid.Name, nil
}

// vmName is the VM (and computer) name for a NodeClaim: its name, made a
// valid host name, shortened with a hash when too long.
func vmName(claim string) string {
	n := strings.ToLower(strings.ReplaceAll(claim, ".", "-"))
	if len(n) <= maxVMName {
		return n
	}
	sum := sha256.Sum256([]byte(claim))
	return strings.TrimRight(n[:maxVMName-9], "-") + "-" + hex.EncodeToString(sum[:])[:8]
}

// getVM returns the VM of the node resource group with this name, nil when
// there is none.
func (p *Provider) getVM(ctx context.Context, name string) (*armcompute.VirtualMachine, error) {
	resp, err := p.opts.VMs.Get(ctx, p.opts.ResourceGroup, name, nil)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading VM %s: %w", name, err)
	}
	return &resp.VirtualMachine, nil
}

func provisioningState(vm *armcompute.VirtualMachine) string {
	if vm.Properties == nil {
		return ""
	}
	return deref(vm.Properties.ProvisioningState)
}

// Delete implements cloudprovider.CloudProvider. It waits for Azure to
// delete the VM (whose OS disk and NIC go with it), then removes whichever
// of them a VM made another way left behind. A claim without a providerID
// may still have a VM (launched, then the status write was lost): it is
// found by name.
func (p *Provider) Delete(ctx context.Context, claim *v1.NodeClaim) error {
	name := vmName(claim.Name)
	pid := claim.Status.ProviderID
	if pid != "" {
		rg, n, err := ParseProviderID(pid)
		if err != nil {
			return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
		}
		if !strings.EqualFold(rg, p.opts.ResourceGroup) {
			// Not this cluster's node resource group: never touched, and
			// gone as far as this cluster goes, as Get reports it.
			return cloudprovider.NewNotFoundError(pid)
		}
		name = n
	} else {
		pid = "nodeclaim " + claim.Name
	}
	vm, err := p.getVM(ctx, name)
	if err != nil {
		return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
	}
	if vm == nil {
		if err := p.cleanupLeftovers(ctx, name); err != nil {
			return fmt.Errorf("deleting nodeclaim %s: what its VM left: %w", claim.Name, err)
		}
		return cloudprovider.NewNotFoundError(pid)
	}
	tags := tagMap(vm.Tags)
	if tags[TagCluster] != p.opts.ClusterName {
		// Never touch another cluster's VM, whatever the claim says.
		return cloudprovider.NewNotFoundError(pid)
	}
	if uid := tags[TagNodeClaimUID]; claim.Status.ProviderID == "" && uid != "" && claim.UID != "" && uid != string(claim.UID) {
		return cloudprovider.NewNotFoundError(pid)
	}
	if err := p.deleteVM(ctx, name); err != nil {
		return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
	}
	if err := p.cleanupLeftovers(ctx, name); err != nil {
		return fmt.Errorf("deleting nodeclaim %s: what its VM left: %w", claim.Name, err)
	}
	if group := tags[TagPlacementGroup]; group != "" {
		p.releasePPG(ctx, group)
	}
	p.forget(providerID(p.opts.SubscriptionID, p.opts.ResourceGroup, name))
	return nil
}

// deleteVM deletes a VM and waits until it is gone.
func (p *Provider) deleteVM(ctx context.Context, name string) error {
	p.markDeleting(name, true)
	poller, err := p.opts.VMs.BeginDelete(ctx, p.opts.ResourceGroup, name, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: p.opts.PollFrequency})
	}
	if err != nil && !isNotFound(err) {
		p.markDeleting(name, false)
		return fmt.Errorf("deleting VM %s: %w", name, err)
	}
	return nil
}

// cleanupLeftovers removes the NIC and OS disk of a VM that is gone if they
// outlived it (a VM created without delete options, a delete cut short, or
// a launch that made the NIC and never the VM). An error means something
// is left, and Delete is retried.
func (p *Provider) cleanupLeftovers(ctx context.Context, vm string) error {
	if err := p.deleteNIC(ctx, nicName(vm)); err != nil {
		return err
	}
	if p.opts.Disks == nil {
		return nil
	}
	disk := vm + "-osdisk"
	got, err := p.opts.Disks.Get(ctx, p.opts.ResourceGroup, disk, nil)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading OS disk %s: %w", disk, err)
	}
	if got.ManagedBy != nil && *got.ManagedBy != "" {
		return nil // still attached to a VM
	}
	poller, err := p.opts.Disks.BeginDelete(ctx, p.opts.ResourceGroup, disk, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: p.opts.PollFrequency})
	}
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting OS disk %s: %w", disk, err)
	}
	return nil
}

// Get implements cloudprovider.CloudProvider.
func (p *Provider) Get(ctx context.Context, pid string) (*v1.NodeClaim, error) {
	rg, name, err := ParseProviderID(pid)
	if err != nil {
		return nil, err
	}
	if !strings.EqualFold(rg, p.opts.ResourceGroup) {
		return nil, cloudprovider.NewNotFoundError(pid)
	}
	vm, err := p.getVM(ctx, name)
	if err != nil {
		return nil, err
	}
	if vm == nil || tagMap(vm.Tags)[TagCluster] != p.opts.ClusterName || strings.EqualFold(provisioningState(vm), "Deleting") {
		return nil, cloudprovider.NewNotFoundError(pid)
	}
	return p.claimFromVM(vm, nil), nil
}

// List implements cloudprovider.CloudProvider: every VM of the node resource
// group tagged with this cluster's name, except those being deleted.
func (p *Provider) List(ctx context.Context) ([]*v1.NodeClaim, error) {
	var out []*v1.NodeClaim
	pager := p.opts.VMs.NewListPager(p.opts.ResourceGroup, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing VMs of cluster %s: %w", p.opts.ClusterName, err)
		}
		for _, vm := range page.Value {
			if vm == nil || tagMap(vm.Tags)[TagCluster] != p.opts.ClusterName || strings.EqualFold(provisioningState(vm), "Deleting") {
				continue
			}
			out = append(out, p.claimFromVM(vm, nil))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Status.ProviderID < out[j].Status.ProviderID })
	return out, nil
}

// claimFromVM describes a VM as a NodeClaim. With a claim, that claim is
// copied and its status filled; otherwise a claim named by the VM's tag is
// made up, as List and Get return.
func (p *Provider) claimFromVM(vm *armcompute.VirtualMachine, claim *v1.NodeClaim) *v1.NodeClaim {
	tags := tagMap(vm.Tags)
	name := deref(vm.Name)
	var out *v1.NodeClaim
	if claim != nil {
		out = claim.DeepCopy()
	} else {
		out = &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{
			Name:   tags[TagNodeClaim],
			Labels: map[string]string{v1.LabelNodeClaim: tags[TagNodeClaim]},
		}}
		if np := tags[TagNodePool]; np != "" {
			out.Labels[v1.LabelNodePool] = np
		}
	}
	props := vm.Properties
	if props == nil {
		props = &armcompute.VirtualMachineProperties{}
	}
	if claim == nil && props.TimeCreated != nil {
		out.CreationTimestamp = metav1.NewTime(*props.TimeCreated)
	}
	size := ""
	if props.HardwareProfile != nil && props.HardwareProfile.VMSize != nil {
		size = string(*props.HardwareProfile.VMSize)
	}
	zone := noZone
	if len(vm.Zones) > 0 && deref(vm.Zones[0]) != "" {
		zone = zoneLabel(p.opts.Location, deref(vm.Zones[0]))
	}
	capacityType := v1.CapacityTypeOnDemand
	switch {
	case props.CapacityReservation != nil && props.CapacityReservation.CapacityReservationGroup != nil:
		capacityType = v1.CapacityTypeReserved
	case props.Priority != nil && *props.Priority == armcompute.VirtualMachinePriorityTypesSpot:
		capacityType = v1.CapacityTypeSpot
	}
	image := ""
	if props.StorageProfile != nil && props.StorageProfile.ImageReference != nil {
		image = deref(props.StorageProfile.ImageReference.CommunityGalleryImageID)
	}
	pid := providerID(p.opts.SubscriptionID, p.opts.ResourceGroup, name)
	s := &out.Status
	s.ProviderID, s.InstanceType, s.Zone, s.CapacityType, s.ImageID = pid, size, zone, capacityType, image
	s.PricePerHour = catalog.PlannedPrice(claim, size, zone, capacityType)
	if s.PricePerHour == "" {
		if price, ok := p.price(size, capacityType); ok {
			s.PricePerHour = v1.FormatPrice(price)
		}
	}
	p.remember(pid, vmFacts{hash: tags[TagNodeClassHash], image: image, size: size})
	catalog.FillCapacity(out, size, p.lookupType(size))
	return out
}

// lookupType finds a size in the live catalog, else the built-in one.
func (p *Provider) lookupType(name string) *cloudprovider.InstanceType {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, its := range p.types {
		for _, it := range its {
			if it.Name == name {
				return it
			}
		}
	}
	if _, ok := p.shapes[name]; ok {
		if its, err := p.typesLocked(DefaultMaxPods); err == nil {
			for _, it := range its {
				if it.Name == name {
					return it
				}
			}
		}
	}
	if it, ok := p.static.Lookup(name); ok {
		return it
	}
	return nil
}

// price is the current hourly price of one pool, as InstanceTypes offers it.
func (p *Provider) price(size, capacityType string) (float64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if capacityType == v1.CapacityTypeReserved {
		od, _, ok := p.priceLocked(size, v1.CapacityTypeOnDemand)
		return od / reservedPriceDivisor, ok
	}
	v, _, ok := p.priceLocked(size, capacityType)
	return v, ok
}
