package azure

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/kubelet"
)

// Tags on every VM, NIC and placement group Stowage makes. Azure tag names
// cannot contain "/", so the stowage.dev/ label prefix becomes stowage.dev_.
const (
	TagCluster        = "stowage.dev_cluster"
	TagNodePool       = "stowage.dev_nodepool"
	TagNodeClaim      = "stowage.dev_nodeclaim"
	TagNodeClaimUID   = "stowage.dev_nodeclaim-uid"
	TagNodeClass      = "stowage.dev_aksnodeclass"
	TagNodeClassHash  = "stowage.dev_aksnodeclass-hash"
	TagPlacementGroup = "stowage.dev_placement-group"
	TagCreated        = "stowage.dev_created"
)

// AKS labels Stowage's nodes carry so AKS's own DaemonSets (kube-proxy,
// Azure CNI, cloud-node-manager) schedule onto them.
const (
	LabelAKSCluster = "kubernetes.azure.com/cluster"
	LabelAKSMode    = "kubernetes.azure.com/mode"
)

// adminUser is the VM's admin account; login is by SSH key only.
const adminUser = "azureuser"

// maxFailedAttempts bounds how many offerings one Create tries after errors
// that are not about capacity: the same bad setting fails every size alike.
const maxFailedAttempts = 3

// ErrNameInUse is wrapped when a VM of the claim's name belongs to an earlier
// claim of the same name that is still going away.
var ErrNameInUse = errors.New("VM name in use by an earlier nodeclaim")

// Create implements cloudprovider.CloudProvider. It looks for the claim's VM
// first, so a retry after a lost response or a crash adopts the VM instead of
// buying a second; then it tries the claim's offerings in order, skipping
// those known to be out of capacity, until one launches.
func (p *Provider) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	logger := log.FromContext(ctx).WithName(Name).WithValues("nodeclaim", klog.KObj(claim))
	ctx = log.IntoContext(ctx, logger)
	fail := func(err error) (*v1.NodeClaim, error) {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	}
	if claim.Spec.NodeClassRef == nil {
		return fail(errors.New("spec.nodeClassRef is required for azure"))
	}
	nc, err := p.nodeClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return fail(err)
	}
	if err := ready(nc); err != nil {
		return fail(err)
	}
	// The catalog first: an adopted VM's claim needs its capacity too.
	p.refresh(ctx)
	name := vmName(claim.Name)
	if adopted, err := p.adopt(ctx, claim, name); err != nil || adopted != nil {
		if err != nil {
			return fail(err)
		}
		logger.Info("found the VM an earlier launch made", "vm", name)
		return adopted, nil
	}

	var noCapacity, skipped []cloudprovider.OfferingID
	var failures []error
	for _, c := range claim.Spec.Offerings {
		id := cloudprovider.ChoiceID(c)
		if p.unavailable.IsUnavailable(id) {
			skipped = append(skipped, id)
			continue
		}
		out, err := p.launch(ctx, claim, nc, name, c)
		if err == nil {
			// A Failed VM an earlier offering left under this name was
			// deleted (and so marked as Stowage's own delete); the VM now
			// under the name is a new one, whose disappearance the
			// interruption backstop must report.
			p.markDeleting(name, false)
			for _, u := range append(skipped, noCapacity...) {
				out.Status.UnavailableOfferings = append(out.Status.UnavailableOfferings, u.String())
			}
			logger.Info("launched VM", "providerID", out.Status.ProviderID, "size", out.Status.InstanceType,
				"zone", out.Status.Zone, "capacityType", out.Status.CapacityType)
			return out, nil
		}
		// A create whose answer was lost may still have made the VM.
		if adopted, aerr := p.adopt(ctx, claim, name); aerr == nil && adopted != nil {
			p.markDeleting(name, false)
			logger.Info("the create's answer was lost, but the VM exists; adopting it", "vm", name, "error", err.Error())
			return adopted, nil
		}
		if class := classify(err); class != notCapacity {
			marked := p.markUnavailable(claim, c, class)
			noCapacity = append(noCapacity, id)
			logger.Info("no capacity for offering", "offering", id.String(), "code", errorCode(err),
				"unavailableFor", unavailableFor(class, c.CapacityType).String(), "offeringsMarked", len(marked))
			continue
		}
		failures = append(failures, fmt.Errorf("%s: %w", id, err))
		if len(failures) >= maxFailedAttempts {
			break
		}
	}
	p.cleanupNIC(ctx, name)
	if len(failures) > 0 {
		return fail(errors.Join(failures...))
	}
	return fail(cloudprovider.NewInsufficientCapacityError(errors.New("every offering is out of capacity"), append(skipped, noCapacity...)...))
}

// adopt returns the claim filled from the VM an earlier launch made, nil if
// there is none. A VM a failed create left behind is deleted, so the next
// attempt (perhaps in another zone) can use the name.
func (p *Provider) adopt(ctx context.Context, claim *v1.NodeClaim, name string) (*v1.NodeClaim, error) {
	vm, err := p.getVM(ctx, name)
	if err != nil || vm == nil {
		return nil, err
	}
	tags := tagMap(vm.Tags)
	if tags[TagCluster] != p.opts.ClusterName {
		return nil, fmt.Errorf("%w: VM %s exists and is not tagged for cluster %s", ErrNameInUse, name, p.opts.ClusterName)
	}
	if uid := tags[TagNodeClaimUID]; uid != "" && claim.UID != "" && uid != string(claim.UID) {
		return nil, fmt.Errorf("%w: VM %s was launched for another nodeclaim of this name (uid %s); retrying once it is gone", ErrNameInUse, name, uid)
	}
	switch state := provisioningState(vm); {
	case strings.EqualFold(state, "Failed"):
		log.FromContext(ctx).Info("deleting the VM a failed create left behind", "vm", name)
		if err := p.deleteVM(ctx, name); err != nil {
			return nil, fmt.Errorf("deleting failed VM %s: %w", name, err)
		}
		return nil, nil
	case strings.EqualFold(state, "Deleting"):
		return nil, fmt.Errorf("%w: VM %s is being deleted", ErrNameInUse, name)
	}
	return p.claimFromVM(vm, claim), nil
}

// markUnavailable records that an offering failed for class c, and returns
// what it marked: a quota error covers every offering of the claim that
// draws on the same quota (the size family for on-demand, all spot cores for
// spot).
func (p *Provider) markUnavailable(claim *v1.NodeClaim, failed v1.OfferingChoice, class capacityClass) []cloudprovider.OfferingID {
	ids := []cloudprovider.OfferingID{cloudprovider.ChoiceID(failed)}
	if class == quota {
		family := p.skuFamily(failed.InstanceType)
		for _, c := range claim.Spec.Offerings {
			if c.CapacityType != failed.CapacityType || c == failed {
				continue
			}
			if c.CapacityType == v1.CapacityTypeSpot || (family != "" && p.skuFamily(c.InstanceType) == family) {
				ids = append(ids, cloudprovider.ChoiceID(c))
			}
		}
	}
	p.unavailable.MarkUnavailableFor(unavailableFor(class, failed.CapacityType), ids...)
	return ids
}

func (p *Provider) skuFamily(size string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shapes[size].SKUFamily
}

// launch makes the NIC and the VM for one offering and waits for the VM.
func (p *Provider) launch(ctx context.Context, claim *v1.NodeClaim, nc *azv1.AKSNodeClass, name string, c v1.OfferingChoice) (*v1.NodeClaim, error) {
	it := p.lookupType(c.InstanceType)
	if it == nil {
		return nil, fmt.Errorf("size %s is not in the %s catalog", c.InstanceType, p.opts.Location)
	}
	img, ok := imageFor(nc, it.Labels[v1.LabelArch])
	if !ok {
		return nil, fmt.Errorf("AKSNodeClass %s has no %s image for %s", nc.Name, it.Labels[v1.LabelArch], c.InstanceType)
	}
	s := p.shapeOf(c.InstanceType)
	nicID, err := p.ensureNIC(ctx, claim, nc, name, s.AcceleratedNetworking)
	if err != nil {
		return nil, err
	}
	vm, err := p.vmParameters(claim, nc, it, img, name, nicID, c)
	if err != nil {
		return nil, err
	}
	if group := placementGroup(claim); group != "" && nc.Spec.ProximityPlacementGroup == "" {
		release := p.placement.hold(ppgName(p.opts.ClusterName, group))
		defer release()
		ppg, err := p.ensurePPG(ctx, group, c.Zone, c.InstanceType)
		if err != nil {
			return nil, err
		}
		vm.Properties.ProximityPlacementGroup = &armcompute.SubResource{ID: &ppg}
		vm.Tags[TagPlacementGroup] = &group
	}
	poller, err := p.opts.VMs.BeginCreateOrUpdate(ctx, p.opts.ResourceGroup, name, vm, nil)
	if err != nil {
		return nil, err
	}
	resp, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: p.opts.PollFrequency})
	if err != nil {
		return nil, err
	}
	if c.CapacityType == v1.CapacityTypeReserved {
		p.invalidateReservations(c.ReservationID)
	}
	return p.claimFromVM(&resp.VirtualMachine, claim), nil
}

// imageFor is the node class's image for an architecture.
func imageFor(nc *azv1.AKSNodeClass, arch string) (azv1.NodeImage, bool) {
	for _, img := range nc.Status.Images {
		if img.Arch == arch {
			return img, true
		}
	}
	return azv1.NodeImage{}, false
}

func placementGroup(claim *v1.NodeClaim) string {
	if claim.Spec.Placement == nil {
		return ""
	}
	return claim.Spec.Placement.Group
}

// vmParameters is the VM to create for one offering.
func (p *Provider) vmParameters(claim *v1.NodeClaim, nc *azv1.AKSNodeClass, it *cloudprovider.InstanceType, img azv1.NodeImage,
	name, nicID string, c v1.OfferingChoice) (armcompute.VirtualMachine, error) {
	customData, err := p.customData(claim, nc, it, name, c)
	if err != nil {
		return armcompute.VirtualMachine{}, err
	}
	sshKey := nc.Spec.SSHPublicKey
	if sshKey == "" {
		sshKey = p.sshKey
	}
	osDisk := &armcompute.OSDisk{
		Name:         strPtr(name + "-osdisk"),
		CreateOption: toPtr(armcompute.DiskCreateOptionTypesFromImage),
		DeleteOption: toPtr(armcompute.DiskDeleteOptionTypesDelete),
		DiskSizeGB:   toPtr(nc.Spec.OSDisk.SizeGiB),
		Caching:      toPtr(armcompute.CachingTypesReadWrite),
	}
	if osDisk.DiskSizeGB != nil && *osDisk.DiskSizeGB == 0 {
		osDisk.DiskSizeGB = toPtr(int32(128))
	}
	switch t := nc.Spec.OSDisk.Type; t {
	case azv1.OSDiskEphemeral:
		osDisk.Caching = toPtr(armcompute.CachingTypesReadOnly)
		osDisk.DiffDiskSettings = &armcompute.DiffDiskSettings{Option: toPtr(armcompute.DiffDiskOptionsLocal),
			Placement: toPtr(armcompute.DiffDiskPlacementResourceDisk)}
	case "":
		osDisk.ManagedDisk = &armcompute.ManagedDiskParameters{StorageAccountType: toPtr(armcompute.StorageAccountTypesPremiumLRS)}
	default:
		osDisk.ManagedDisk = &armcompute.ManagedDiskParameters{StorageAccountType: toPtr(armcompute.StorageAccountTypes(t))}
	}
	props := &armcompute.VirtualMachineProperties{
		HardwareProfile: &armcompute.HardwareProfile{VMSize: toPtr(armcompute.VirtualMachineSizeTypes(c.InstanceType))},
		StorageProfile: &armcompute.StorageProfile{
			ImageReference: &armcompute.ImageReference{CommunityGalleryImageID: strPtr(img.ID)},
			OSDisk:         osDisk,
		},
		OSProfile: &armcompute.OSProfile{
			ComputerName:  strPtr(name),
			AdminUsername: strPtr(adminUser),
			CustomData:    strPtr(customData),
			LinuxConfiguration: &armcompute.LinuxConfiguration{
				DisablePasswordAuthentication: toPtr(true),
				SSH: &armcompute.SSHConfiguration{PublicKeys: []*armcompute.SSHPublicKey{{
					Path: strPtr("/home/" + adminUser + "/.ssh/authorized_keys"), KeyData: strPtr(sshKey),
				}}},
			},
		},
		NetworkProfile: &armcompute.NetworkProfile{NetworkInterfaces: []*armcompute.NetworkInterfaceReference{{
			ID: strPtr(nicID),
			Properties: &armcompute.NetworkInterfaceReferenceProperties{
				Primary: toPtr(true), DeleteOption: toPtr(armcompute.DeleteOptionsDelete),
			},
		}}},
		// Boot diagnostics in managed storage: the serial log of a GPU node
		// that never joins is the first thing to read.
		DiagnosticsProfile: &armcompute.DiagnosticsProfile{BootDiagnostics: &armcompute.BootDiagnostics{Enabled: toPtr(true)}},
		Priority:           toPtr(armcompute.VirtualMachinePriorityTypesRegular),
	}
	switch c.CapacityType {
	case v1.CapacityTypeSpot:
		props.Priority = toPtr(armcompute.VirtualMachinePriorityTypesSpot)
		props.EvictionPolicy = toPtr(armcompute.VirtualMachineEvictionPolicyTypesDelete)
		props.BillingProfile = &armcompute.BillingProfile{MaxPrice: toPtr(-1.0)}
	case v1.CapacityTypeReserved:
		if c.ReservationID == "" {
			return armcompute.VirtualMachine{}, fmt.Errorf("reserved offering %s has no capacity reservation group", cloudprovider.ChoiceID(c))
		}
		props.CapacityReservation = &armcompute.CapacityReservationProfile{CapacityReservationGroup: &armcompute.SubResource{ID: strPtr(c.ReservationID)}}
	}
	if sec := nc.Spec.Security; sec != nil {
		sp := &armcompute.SecurityProfile{}
		if deref(sec.EncryptionAtHost) {
			sp.EncryptionAtHost = toPtr(true)
		}
		if deref(sec.TrustedLaunch) {
			sp.SecurityType = toPtr(armcompute.SecurityTypesTrustedLaunch)
			sp.UefiSettings = &armcompute.UefiSettings{SecureBootEnabled: toPtr(true), VTpmEnabled: toPtr(true)}
		}
		if sp.EncryptionAtHost != nil || sp.SecurityType != nil {
			props.SecurityProfile = sp
		}
	}
	if ppg := nc.Spec.ProximityPlacementGroup; ppg != "" {
		props.ProximityPlacementGroup = &armcompute.SubResource{ID: strPtr(ppg)}
	}
	vm := armcompute.VirtualMachine{
		Location:   strPtr(p.opts.Location),
		Tags:       p.vmTags(claim, nc),
		Properties: props,
	}
	if z := azureZone(c.Zone); z != "" {
		vm.Zones = []*string{strPtr(z)}
	}
	if p.opts.KubeletIdentity != "" {
		vm.Identity = &armcompute.VirtualMachineIdentity{
			Type:                   toPtr(armcompute.ResourceIdentityTypeUserAssigned),
			UserAssignedIdentities: map[string]*armcompute.UserAssignedIdentitiesValue{p.opts.KubeletIdentity: {}},
		}
	}
	return vm, nil
}

// customData renders the node's bootstrap: its labels are the claim's, the
// size's and the offering's, less those a kubelet may not set on itself.
func (p *Provider) customData(claim *v1.NodeClaim, nc *azv1.AKSNodeClass, it *cloudprovider.InstanceType, name string, c v1.OfferingChoice) (string, error) {
	labels := map[string]string{}
	maps.Copy(labels, it.Labels)
	maps.Copy(labels, claim.Labels)
	labels[v1.LabelZone] = c.Zone
	labels[v1.LabelCapacityType] = c.CapacityType
	labels[v1.LabelRegion] = p.opts.Location
	labels[v1.LabelNodeClaim] = claim.Name
	labels[LabelAKSCluster] = p.opts.ResourceGroup
	labels[LabelAKSMode] = "user"
	if it.GPU != nil && it.GPU.Manufacturer == "nvidia" && nc.Spec.GPU.Driver != azv1.GPUDriverOperator {
		// The image's driver serves the GPUs: a GPU Operator must not add a second.
		labels[labelGPUDeployDriver] = "false"
	}
	for k := range labels {
		if !kubelet.MaySetLabel(k) {
			delete(labels, k)
		}
	}
	taints := v1.RegistrationTaints(claim.Spec.Taints, claim.Spec.StartupTaints)
	reserved := map[string]string{}
	for k, q := range it.Overhead.KubeReserved {
		reserved[string(k)] = q.String()
	}
	eviction := map[string]string{}
	if q, ok := it.Overhead.EvictionThreshold[corev1.ResourceMemory]; ok {
		eviction["memory.available"] = q.String()
	}
	out, err := renderCustomData(joinConfig{
		APIServer: p.opts.APIServer, CABundle: p.opts.CABundle, BootstrapToken: p.opts.BootstrapToken,
		ClusterDNS: p.opts.ClusterDNS, KubernetesVersion: nc.Status.KubernetesVersion,
		ProviderID: providerID(p.opts.SubscriptionID, p.opts.ResourceGroup, name),
		Labels:     labels, Taints: taints, MaxPods: int32(maxPods(nc)),
		KubeReserved: reserved, EvictionHard: eviction, Kubelet: nc.Spec.Kubelet,
	})
	if err != nil {
		return "", fmt.Errorf("AKSNodeClass %s: %w", nc.Name, err)
	}
	return out, nil
}

// vmTags are the VM's tags: the node class's, then Stowage's own.
func (p *Provider) vmTags(claim *v1.NodeClaim, nc *azv1.AKSNodeClass) map[string]*string {
	tags := map[string]string{}
	maps.Copy(tags, nc.Spec.Tags)
	tags[TagCluster] = p.opts.ClusterName
	tags[TagNodePool] = claim.Labels[v1.LabelNodePool]
	tags[TagNodeClaim] = claim.Name
	tags[TagNodeClass] = nc.Name
	tags[TagNodeClassHash] = nodeClassHash(nc)
	if claim.UID != "" {
		tags[TagNodeClaimUID] = string(claim.UID)
	}
	return toTags(tags)
}

func toTags(m map[string]string) map[string]*string {
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = strPtr(v)
	}
	return out
}

func tagMap(tags map[string]*string) map[string]string {
	out := make(map[string]string, len(tags))
	for k, v := range tags {
		out[k] = deref(v)
	}
	return out
}

func toPtr[T any](v T) *T { return &v }

// nicName is the network interface of a VM.
func nicName(vm string) string { return vm + "-nic" }

// ensureNIC returns the ID of the VM's network interface in the node class's
// subnet, creating (or updating) it as needed.
func (p *Provider) ensureNIC(ctx context.Context, claim *v1.NodeClaim, nc *azv1.AKSNodeClass, vm string, accelerated bool) (string, error) {
	name := nicName(vm)
	got, err := p.opts.NICs.Get(ctx, p.opts.ResourceGroup, name, nil)
	switch {
	case err == nil && got.Properties != nil && deref(got.Properties.EnableAcceleratedNetworking) == accelerated &&
		len(got.Properties.IPConfigurations) > 0 && got.Properties.IPConfigurations[0].Properties != nil &&
		got.Properties.IPConfigurations[0].Properties.Subnet != nil &&
		strings.EqualFold(deref(got.Properties.IPConfigurations[0].Properties.Subnet.ID), nc.Spec.SubnetID):
		return deref(got.ID), nil
	case err != nil && !isNotFound(err):
		return "", fmt.Errorf("reading network interface %s: %w", name, err)
	}
	tags := map[string]string{}
	maps.Copy(tags, nc.Spec.Tags)
	tags[TagCluster] = p.opts.ClusterName
	tags[TagNodeClaim] = claim.Name
	poller, err := p.opts.NICs.BeginCreateOrUpdate(ctx, p.opts.ResourceGroup, name, armnetwork.Interface{
		Location: strPtr(p.opts.Location),
		Tags:     toTags(tags),
		Properties: &armnetwork.InterfacePropertiesFormat{
			EnableAcceleratedNetworking: toPtr(accelerated),
			IPConfigurations: []*armnetwork.InterfaceIPConfiguration{{
				Name: strPtr("ipconfig1"),
				Properties: &armnetwork.InterfaceIPConfigurationPropertiesFormat{
					Primary:                   toPtr(true),
					PrivateIPAllocationMethod: toPtr(armnetwork.IPAllocationMethodDynamic),
					Subnet:                    &armnetwork.Subnet{ID: strPtr(nc.Spec.SubnetID)},
				},
			}},
		},
	}, nil)
	if err != nil {
		return "", fmt.Errorf("creating network interface %s: %w", name, err)
	}
	resp, err := poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: p.opts.PollFrequency})
	if err != nil {
		return "", fmt.Errorf("creating network interface %s: %w", name, err)
	}
	return deref(resp.ID), nil
}

// cleanupNIC removes the network interface of a VM that was never made. It
// runs even when the launch's context has ended (a shutdown, a lost lease):
// that is when a launch is most often cut short.
func (p *Provider) cleanupNIC(ctx context.Context, vm string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := p.deleteNIC(ctx, nicName(vm)); err != nil {
		log.FromContext(ctx).Error(err, "removing the network interface of a VM that did not launch; deleting the nodeclaim retries it", "nic", nicName(vm))
	}
}

// cleanupTimeout bounds the cleanup of a launch cut short.
const cleanupTimeout = 2 * time.Minute

func (p *Provider) deleteNIC(ctx context.Context, name string) error {
	got, err := p.opts.NICs.Get(ctx, p.opts.ResourceGroup, name, nil)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading network interface %s: %w", name, err)
	}
	if tagMap(got.Tags)[TagCluster] != p.opts.ClusterName {
		return nil // not ours
	}
	poller, err := p.opts.NICs.BeginDelete(ctx, p.opts.ResourceGroup, name, nil)
	if err == nil {
		_, err = poller.PollUntilDone(ctx, &runtime.PollUntilDoneOptions{Frequency: p.opts.PollFrequency})
	}
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting network interface %s: %w", name, err)
	}
	return nil
}

func (p *Provider) shapeOf(size string) shape {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shapes[size]
}
