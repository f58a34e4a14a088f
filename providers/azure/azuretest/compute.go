package azuretest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// invalidTagName are the characters Azure refuses in tag names.
var invalidTagName = regexp.MustCompile(`[<>%&\\?/]`)

func (c *Cloud) count(op string) {
	c.calls[op]++
}

// checkRG answers 404 for a resource group other than the node resource group.
func (c *Cloud) checkRG(rg string, errResp *azfake.ErrorResponder) bool {
	if !strings.EqualFold(rg, c.opts.ResourceGroup) {
		errResp.SetResponseError(http.StatusNotFound, "ResourceGroupNotFound")
		return false
	}
	return true
}

// lro answers a long-running operation: polls "in progress" answers (201
// for a PUT, 202 for a DELETE, as ARM does), then the result.
func lro[T any](polls int, status int, result T) azfake.PollerResponder[T] {
	var p azfake.PollerResponder[T]
	for range polls {
		p.AddNonTerminalResponse(inProgress(status), nil)
	}
	p.SetTerminalResponse(status, result, nil)
	return p
}

// lroDelete answers a DELETE: polls 202s, then 200.
func lroDelete[T any](polls int) azfake.PollerResponder[T] {
	var p azfake.PollerResponder[T]
	for range polls {
		p.AddNonTerminalResponse(http.StatusAccepted, nil)
	}
	var zero T
	p.SetTerminalResponse(http.StatusOK, zero, nil)
	return p
}

func inProgress(terminal int) int {
	if terminal == http.StatusCreated || terminal == http.StatusOK {
		return http.StatusCreated
	}
	return http.StatusAccepted
}

func (c *Cloud) wireCompute() {
	c.compute.ResourceSKUsServer.NewListPager = c.listSKUs
	vms := &c.compute.VirtualMachinesServer
	vms.Get = c.getVM
	vms.BeginCreateOrUpdate = c.createVM
	vms.BeginDelete = c.deleteVM
	vms.NewListPager = c.listVMs
	c.compute.DisksServer.Get = c.getDisk
	c.compute.DisksServer.BeginDelete = c.deleteDisk
	ppgs := &c.compute.ProximityPlacementGroupsServer
	ppgs.Get = c.getPPG
	ppgs.CreateOrUpdate = c.putPPG
	ppgs.Delete = c.deletePPG
	ppgs.NewListByResourceGroupPager = c.listPPGs
	c.compute.CapacityReservationGroupsServer.Get = c.getCRG
	c.compute.CapacityReservationsServer.NewListByCapacityReservationGroupPager = c.listReservations
	imgs := &c.compute.CommunityGalleryImageVersionsServer
	imgs.Get = c.getImageVersion
	imgs.NewListPager = c.listImageVersions
}

func (c *Cloud) listSKUs(options *armcompute.ResourceSKUsClientListOptions) (resp azfake.PagerResponder[armcompute.ResourceSKUsClientListResponse]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("ResourceSKUs.List")
	filter := ""
	if options != nil {
		filter = deref(options.Filter)
	}
	c.skuFilter = filter
	if c.skusDown {
		resp.AddResponseError(http.StatusServiceUnavailable, "ServiceUnavailable")
		return resp
	}
	var matched []*armcompute.ResourceSKU
	for _, s := range c.skus {
		if filter == "" || strings.Contains(filter, "'"+c.opts.Location+"'") {
			matched = append(matched, clone(s))
		}
	}
	// Pages of 20, as the real API pages its thousands of SKUs.
	for len(matched) > 0 {
		n := min(20, len(matched))
		resp.AddPage(http.StatusOK, armcompute.ResourceSKUsClientListResponse{ResourceSKUsResult: armcompute.ResourceSKUsResult{Value: matched[:n]}}, nil)
		matched = matched[n:]
	}
	return resp
}

func (c *Cloud) getVM(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientGetOptions) (resp azfake.Responder[armcompute.VirtualMachinesClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("VirtualMachines.Get")
	if !c.checkRG(rg, &errResp) {
		return
	}
	r, ok := c.vms[strings.ToLower(name)]
	if !ok {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armcompute.VirtualMachinesClientGetResponse{VirtualMachine: clone(r.vm)}, nil)
	return
}

func (c *Cloud) listVMs(rg string, _ *armcompute.VirtualMachinesClientListOptions) (resp azfake.PagerResponder[armcompute.VirtualMachinesClientListResponse]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("VirtualMachines.List")
	if !strings.EqualFold(rg, c.opts.ResourceGroup) {
		resp.AddResponseError(http.StatusNotFound, "ResourceGroupNotFound")
		return
	}
	var all []*armcompute.VirtualMachine
	for _, name := range sortedKeys(c.vms) {
		vm := clone(c.vms[name].vm)
		all = append(all, &vm)
	}
	if len(all) == 0 {
		resp.AddPage(http.StatusOK, armcompute.VirtualMachinesClientListResponse{}, nil)
	}
	for len(all) > 0 {
		n := min(3, len(all))
		resp.AddPage(http.StatusOK, armcompute.VirtualMachinesClientListResponse{VirtualMachineListResult: armcompute.VirtualMachineListResult{Value: all[:n]}}, nil)
		all = all[n:]
	}
	return resp
}

// createVM is a VM PUT: validate like ARM, create the VM (Creating), then
// allocate (Succeeded) or fail (Failed, the VM stays).
func (c *Cloud) createVM(_ context.Context, rg, name string, params armcompute.VirtualMachine, _ *armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	c.count("VirtualMachines.CreateOrUpdate")
	if !c.checkRG(rg, &errResp) {
		c.mu.Unlock()
		return
	}
	key := strings.ToLower(name)
	if r, ok := c.vms[key]; ok {
		defer c.mu.Unlock()
		// A PUT on an existing VM is an update: zones and size may not change.
		if zoneOf(r.vm) != zoneOf(params) {
			errResp.SetResponseError(http.StatusConflict, "PropertyChangeNotAllowed")
			return
		}
		if state := deref(r.vm.Properties.ProvisioningState); state == "Deleting" || state == "Failed" {
			errResp.SetResponseError(http.StatusConflict, "OperationNotAllowed")
			return
		}
		for k, v := range params.Tags {
			r.vm.Tags[k] = v
		}
		resp = lro(c.opts.LROPolls, http.StatusOK, armcompute.VirtualMachinesClientCreateOrUpdateResponse{VirtualMachine: clone(r.vm)})
		return
	}
	code, status, failed := c.validateVMLocked(name, &params)
	if code != "" {
		c.mu.Unlock()
		errResp.SetResponseError(status, code)
		return
	}
	c.countLinkedLocked(params)
	vm := clone(params)
	vm.ID = ptr(c.rid("virtualMachines", name))
	vm.Name = &name
	vm.Type = ptr("Microsoft.Compute/virtualMachines")
	c.vmSeq++
	vm.Properties.VMID = ptr(fmt.Sprintf("00000000-0000-4000-8000-%012d", c.vmSeq))
	vm.Properties.TimeCreated = ptr(time.Now().UTC())
	vm.Properties.ProvisioningState = ptr("Creating")
	if vm.Properties.OSProfile != nil {
		vm.Properties.OSProfile.CustomData = params.Properties.OSProfile.CustomData
	}
	r := &vmRecord{vm: vm, created: time.Now()}
	c.vms[key] = r
	c.attachLocked(r)
	held := c.held
	lose := false
	if failed == "" && c.loseCreates > 0 {
		c.loseCreates--
		lose = true
	}
	c.mu.Unlock()

	if held != nil {
		// The transport detaches this from the client: a client that gives
		// up does not stop the create (Azure does not either).
		<-held
	}
	c.finishCreate(key, failed)
	switch {
	case failed != "":
		// ARM reports allocation failures at the end of the operation; they
		// come back on the PUT here because the SDK's fake server keeps a
		// failed operation's poller and would answer the next PUT to the
		// same VM from it. The Failed VM stays either way.
		errResp.SetResponseError(http.StatusConflict, failed)
	case lose:
		errResp.SetError(errors.New("read tcp 127.0.0.1:443: connection reset by peer"))
	default:
		c.mu.Lock()
		out := clone(c.vms[key].vm)
		c.mu.Unlock()
		resp = lro(c.opts.LROPolls, http.StatusCreated, armcompute.VirtualMachinesClientCreateOrUpdateResponse{VirtualMachine: out})
	}
	return
}

// countLinkedLocked records the operations a VM create performs on other
// resources, which Azure authorizes separately: joining the NIC, creating
// the OS disk, deploying into a capacity reservation group, assigning a
// user-assigned identity, joining a proximity placement group.
func (c *Cloud) countLinkedLocked(vm armcompute.VirtualMachine) {
	p := vm.Properties
	c.count("NetworkInterfaces.Join")
	if d := p.StorageProfile.OSDisk; d == nil || d.DiffDiskSettings == nil {
		c.count("Disks.Write")
	}
	if p.CapacityReservation != nil && p.CapacityReservation.CapacityReservationGroup != nil {
		c.count("CapacityReservationGroups.Deploy")
	}
	if vm.Identity != nil && len(vm.Identity.UserAssignedIdentities) > 0 {
		c.count("UserAssignedIdentities.Assign")
	}
	if p.ProximityPlacementGroup != nil {
		c.count("ProximityPlacementGroups.Join")
	}
}

// finishCreate moves a created VM to Succeeded (and runs the running hooks)
// or to Failed with the allocation error.
func (c *Cloud) finishCreate(key, failed string) {
	c.mu.Lock()
	r, ok := c.vms[key]
	if !ok || deref(r.vm.Properties.ProvisioningState) != "Creating" {
		c.mu.Unlock()
		return
	}
	if failed != "" {
		r.vm.Properties.ProvisioningState = ptr("Failed")
		c.mu.Unlock()
		return
	}
	r.vm.Properties.ProvisioningState = ptr("Succeeded")
	vm := snapshot(r)
	hooks := c.onRunning
	c.mu.Unlock()
	for _, f := range hooks {
		f(vm)
	}
}

// validateVMLocked returns a synchronous error (code and status), or the
// allocation failure the create will end in.
func (c *Cloud) validateVMLocked(name string, vm *armcompute.VirtualMachine) (code string, status int, allocation string) {
	p := vm.Properties
	switch {
	case p == nil || p.HardwareProfile == nil || p.HardwareProfile.VMSize == nil || p.StorageProfile == nil ||
		p.NetworkProfile == nil || len(p.NetworkProfile.NetworkInterfaces) == 0 || p.OSProfile == nil:
		return "InvalidParameter", http.StatusBadRequest, ""
	case len(name) > 64 || deref(p.OSProfile.ComputerName) == "" || len(deref(p.OSProfile.ComputerName)) > 64:
		return "InvalidParameter", http.StatusBadRequest, ""
	case !strings.EqualFold(deref(vm.Location), c.opts.Location):
		return "LocationNotAvailableForResourceType", http.StatusBadRequest, ""
	}
	for k, v := range vm.Tags {
		if invalidTagName.MatchString(k) || len(k) > 512 || len(deref(v)) > 256 {
			return "InvalidTagNameCharacters", http.StatusBadRequest, ""
		}
	}
	if lc := p.OSProfile.LinuxConfiguration; lc == nil || lc.SSH == nil || len(lc.SSH.PublicKeys) == 0 || deref(lc.SSH.PublicKeys[0].KeyData) == "" {
		return "InvalidParameter", http.StatusBadRequest, "" // Linux VMs need a key (or a password)
	}
	size := string(*p.HardwareProfile.VMSize)
	sku := c.skuLocked(size)
	if sku == nil {
		return "InvalidParameter", http.StatusBadRequest, ""
	}
	zone := zoneOf(*vm)
	if zone != "" && !skuInZone(sku, c.opts.Location, zone) {
		return CodeSkuNotAvailable, http.StatusConflict, ""
	}
	spot := p.Priority != nil && *p.Priority == armcompute.VirtualMachinePriorityTypesSpot
	if spot && (p.EvictionPolicy == nil || capability(sku, "LowPriorityCapable") != "True") {
		return "InvalidParameter", http.StatusBadRequest, ""
	}
	nicID := deref(p.NetworkProfile.NetworkInterfaces[0].ID)
	nic, ok := c.nics[strings.ToLower(lastSegment(nicID))]
	if !ok {
		return "NotFound", http.StatusNotFound, ""
	}
	if nic.Properties.VirtualMachine != nil {
		return "NicInUse", http.StatusBadRequest, ""
	}
	if img := p.StorageProfile.ImageReference; img == nil || !c.imageExistsLocked(deref(img.CommunityGalleryImageID)) {
		return "GalleryImageNotFound", http.StatusNotFound, ""
	}
	if crg := p.CapacityReservation; crg != nil && crg.CapacityReservationGroup != nil {
		if _, ok := c.crgs[strings.ToLower(lastSegment(deref(crg.CapacityReservationGroup.ID)))]; !ok {
			return "NotFound", http.StatusNotFound, ""
		}
	}
	if pp := p.ProximityPlacementGroup; pp != nil {
		ppg, ok := c.ppgs[strings.ToLower(lastSegment(deref(pp.ID)))]
		if !ok {
			return "NotFound", http.StatusNotFound, ""
		}
		if pz := c.ppgZoneLocked(ppg); pz != "" && zone != "" && pz != zone {
			return "", 0, CodeOverconstrainedZonalAllocationRequest
		}
	}
	family := deref(sku.Family)
	if c.quota[family] || (spot && c.quota["spot"]) {
		return CodeQuotaExceeded, http.StatusConflict, ""
	}
	priority := "Regular"
	if spot {
		priority = "Spot"
	}
	k := faultKey{strings.ToLower(size), zone, priority}
	if q := c.faults[k]; len(q) > 0 {
		if strings.HasPrefix(q[0], "*") {
			return "", 0, q[0][1:]
		}
		c.faults[k] = q[1:]
		return "", 0, q[0]
	}
	return "", 0, ""
}

// Error codes the fake returns.
const (
	CodeSkuNotAvailable                       = "SkuNotAvailable"
	CodeQuotaExceeded                         = "QuotaExceeded"
	CodeZonalAllocationFailed                 = "ZonalAllocationFailed"
	CodeAllocationFailed                      = "AllocationFailed"
	CodeOverconstrainedZonalAllocationRequest = "OverconstrainedZonalAllocationRequest"
)

// attachLocked records a new VM on its NIC, disk, placement group and
// capacity reservation.
func (c *Cloud) attachLocked(r *vmRecord) {
	p := r.vm.Properties
	id := deref(r.vm.ID)
	if nic, ok := c.nics[strings.ToLower(lastSegment(deref(p.NetworkProfile.NetworkInterfaces[0].ID)))]; ok {
		nic.Properties.VirtualMachine = &armnetwork.SubResource{ID: &id}
	}
	if d := p.StorageProfile.OSDisk; d != nil && d.DiffDiskSettings == nil {
		name := deref(d.Name)
		if name == "" {
			name = deref(r.vm.Name) + "_OsDisk"
			d.Name = &name
		}
		c.disks[strings.ToLower(name)] = &armcompute.Disk{ID: ptr(c.rid("disks", name)), Name: &name, Location: &c.opts.Location,
			ManagedBy: &id, Tags: r.vm.Tags, Properties: &armcompute.DiskProperties{DiskSizeGB: d.DiskSizeGB}}
	}
	if pp := p.ProximityPlacementGroup; pp != nil {
		if ppg, ok := c.ppgs[strings.ToLower(lastSegment(deref(pp.ID)))]; ok {
			ppg.Properties.VirtualMachines = append(ppg.Properties.VirtualMachines, &armcompute.SubResourceWithColocationStatus{ID: &id})
			if len(ppg.Zones) == 0 && len(r.vm.Zones) > 0 {
				ppg.Zones = []*string{r.vm.Zones[0]}
			}
		}
	}
	if cr := p.CapacityReservation; cr != nil && cr.CapacityReservationGroup != nil {
		if g, ok := c.crgs[strings.ToLower(lastSegment(deref(cr.CapacityReservationGroup.ID)))]; ok {
			size := string(*p.HardwareProfile.VMSize)
			for _, res := range g.reservations {
				if deref(res.SKU.Name) == size && (len(r.vm.Zones) == 0 || deref(res.Zones[0]) == deref(r.vm.Zones[0])) {
					res.Properties.VirtualMachinesAssociated = append(res.Properties.VirtualMachinesAssociated, &armcompute.SubResourceReadOnly{ID: &id})
					break
				}
			}
		}
	}
}

// removeVMLocked deletes a VM and, by their delete options, its NIC and disk.
func (c *Cloud) removeVMLocked(key string) {
	r, ok := c.vms[key]
	if !ok {
		return
	}
	delete(c.vms, key)
	p := r.vm.Properties
	id := deref(r.vm.ID)
	for _, ref := range p.NetworkProfile.NetworkInterfaces {
		nk := strings.ToLower(lastSegment(deref(ref.ID)))
		if nic, ok := c.nics[nk]; ok {
			nic.Properties.VirtualMachine = nil
			if ref.Properties != nil && ref.Properties.DeleteOption != nil && *ref.Properties.DeleteOption == armcompute.DeleteOptionsDelete {
				delete(c.nics, nk)
			}
		}
	}
	if d := p.StorageProfile.OSDisk; d != nil {
		dk := strings.ToLower(deref(d.Name))
		if disk, ok := c.disks[dk]; ok {
			disk.ManagedBy = nil
			if d.DeleteOption != nil && *d.DeleteOption == armcompute.DiskDeleteOptionTypesDelete {
				delete(c.disks, dk)
			}
		}
	}
	for _, ppg := range c.ppgs {
		ppg.Properties.VirtualMachines = removeID(ppg.Properties.VirtualMachines, id, func(s *armcompute.SubResourceWithColocationStatus) string { return deref(s.ID) })
	}
	for _, g := range c.crgs {
		for _, res := range g.reservations {
			res.Properties.VirtualMachinesAssociated = removeID(res.Properties.VirtualMachinesAssociated, id, func(s *armcompute.SubResourceReadOnly) string { return deref(s.ID) })
		}
	}
}

func removeID[T any](in []*T, id string, idOf func(*T) string) []*T {
	out := in[:0]
	for _, v := range in {
		if !strings.EqualFold(idOf(v), id) {
			out = append(out, v)
		}
	}
	return out
}

func (c *Cloud) deleteVM(_ context.Context, rg, name string, _ *armcompute.VirtualMachinesClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.VirtualMachinesClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	c.count("VirtualMachines.Delete")
	if !c.checkRG(rg, &errResp) {
		c.mu.Unlock()
		return
	}
	key := strings.ToLower(name)
	r, ok := c.vms[key]
	if !ok {
		c.mu.Unlock()
		// DELETE of a missing resource succeeds.
		resp = lroDelete[armcompute.VirtualMachinesClientDeleteResponse](0)
		return
	}
	vm := snapshot(r)
	// Deleting the NIC and disk with the VM is authorized as their deletes.
	for _, ref := range r.vm.Properties.NetworkProfile.NetworkInterfaces {
		if ref.Properties != nil && ref.Properties.DeleteOption != nil && *ref.Properties.DeleteOption == armcompute.DeleteOptionsDelete {
			c.count("NetworkInterfaces.Delete")
		}
	}
	if d := r.vm.Properties.StorageProfile.OSDisk; d != nil && d.DiffDiskSettings == nil && d.DeleteOption != nil && *d.DeleteOption == armcompute.DiskDeleteOptionTypesDelete {
		c.count("Disks.Delete")
	}
	c.removeVMLocked(key)
	hooks := c.onDeleted
	c.mu.Unlock()
	for _, f := range hooks {
		f(vm)
	}
	resp = lroDelete[armcompute.VirtualMachinesClientDeleteResponse](c.opts.LROPolls)
	return
}

func (c *Cloud) getDisk(_ context.Context, rg, name string, _ *armcompute.DisksClientGetOptions) (resp azfake.Responder[armcompute.DisksClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Disks.Get")
	if !c.checkRG(rg, &errResp) {
		return
	}
	d, ok := c.disks[strings.ToLower(name)]
	if !ok {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armcompute.DisksClientGetResponse{Disk: clone(*d)}, nil)
	return
}

func (c *Cloud) deleteDisk(_ context.Context, rg, name string, _ *armcompute.DisksClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.DisksClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("Disks.Delete")
	if !c.checkRG(rg, &errResp) {
		return
	}
	if d, ok := c.disks[strings.ToLower(name)]; ok && d.ManagedBy != nil {
		errResp.SetResponseError(http.StatusConflict, "OperationNotAllowed")
		return
	}
	delete(c.disks, strings.ToLower(name))
	resp = lroDelete[armcompute.DisksClientDeleteResponse](c.opts.LROPolls)
	return
}

func (c *Cloud) ppgZoneLocked(ppg *armcompute.ProximityPlacementGroup) string {
	if len(ppg.Zones) > 0 {
		return deref(ppg.Zones[0])
	}
	return ""
}

func (c *Cloud) getPPG(_ context.Context, rg, name string, _ *armcompute.ProximityPlacementGroupsClientGetOptions) (resp azfake.Responder[armcompute.ProximityPlacementGroupsClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("ProximityPlacementGroups.Get")
	if !c.checkRG(rg, &errResp) {
		return
	}
	ppg, ok := c.ppgs[strings.ToLower(name)]
	if !ok {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armcompute.ProximityPlacementGroupsClientGetResponse{ProximityPlacementGroup: clone(*ppg)}, nil)
	return
}

func (c *Cloud) putPPG(_ context.Context, rg, name string, params armcompute.ProximityPlacementGroup, _ *armcompute.ProximityPlacementGroupsClientCreateOrUpdateOptions) (resp azfake.Responder[armcompute.ProximityPlacementGroupsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("ProximityPlacementGroups.CreateOrUpdate")
	if !c.checkRG(rg, &errResp) {
		return
	}
	for k := range params.Tags {
		if invalidTagName.MatchString(k) {
			errResp.SetResponseError(http.StatusBadRequest, "InvalidTagNameCharacters")
			return
		}
	}
	key := strings.ToLower(name)
	if cur, ok := c.ppgs[key]; ok {
		if len(cur.Properties.VirtualMachines) > 0 && len(params.Zones) > 0 && len(cur.Zones) > 0 && deref(cur.Zones[0]) != deref(params.Zones[0]) {
			errResp.SetResponseError(http.StatusConflict, "PropertyChangeNotAllowed")
			return
		}
		cur.Tags = params.Tags
		resp.SetResponse(http.StatusOK, armcompute.ProximityPlacementGroupsClientCreateOrUpdateResponse{ProximityPlacementGroup: clone(*cur)}, nil)
		return
	}
	ppg := clone(params)
	ppg.ID, ppg.Name = ptr(c.rid("proximityPlacementGroups", name)), &name
	if ppg.Properties == nil {
		ppg.Properties = &armcompute.ProximityPlacementGroupProperties{}
	}
	c.ppgs[key] = &ppg
	resp.SetResponse(http.StatusOK, armcompute.ProximityPlacementGroupsClientCreateOrUpdateResponse{ProximityPlacementGroup: clone(ppg)}, nil)
	return
}

func (c *Cloud) deletePPG(_ context.Context, rg, name string, _ *armcompute.ProximityPlacementGroupsClientDeleteOptions) (resp azfake.Responder[armcompute.ProximityPlacementGroupsClientDeleteResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("ProximityPlacementGroups.Delete")
	if !c.checkRG(rg, &errResp) {
		return
	}
	if ppg, ok := c.ppgs[strings.ToLower(name)]; ok && len(ppg.Properties.VirtualMachines) > 0 {
		errResp.SetResponseError(http.StatusConflict, "ProximityPlacementGroupInUse")
		return
	}
	delete(c.ppgs, strings.ToLower(name))
	resp.SetResponse(http.StatusOK, armcompute.ProximityPlacementGroupsClientDeleteResponse{}, nil)
	return
}

func (c *Cloud) listPPGs(rg string, _ *armcompute.ProximityPlacementGroupsClientListByResourceGroupOptions) (resp azfake.PagerResponder[armcompute.ProximityPlacementGroupsClientListByResourceGroupResponse]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("ProximityPlacementGroups.List")
	page := armcompute.ProximityPlacementGroupsClientListByResourceGroupResponse{}
	if strings.EqualFold(rg, c.opts.ResourceGroup) {
		for _, k := range sortedKeys(c.ppgs) {
			p := clone(*c.ppgs[k])
			page.Value = append(page.Value, &p)
		}
	}
	resp.AddPage(http.StatusOK, page, nil)
	return
}

func (c *Cloud) getCRG(_ context.Context, rg, name string, _ *armcompute.CapacityReservationGroupsClientGetOptions) (resp azfake.Responder[armcompute.CapacityReservationGroupsClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("CapacityReservationGroups.Get")
	if !c.checkRG(rg, &errResp) {
		return
	}
	g, ok := c.crgs[strings.ToLower(name)]
	if !ok {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armcompute.CapacityReservationGroupsClientGetResponse{CapacityReservationGroup: clone(g.group)}, nil)
	return
}

func (c *Cloud) listReservations(rg, group string, _ *armcompute.CapacityReservationsClientListByCapacityReservationGroupOptions) (resp azfake.PagerResponder[armcompute.CapacityReservationsClientListByCapacityReservationGroupResponse]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("CapacityReservations.List")
	g, ok := c.crgs[strings.ToLower(group)]
	if !ok || !strings.EqualFold(rg, c.opts.ResourceGroup) {
		resp.AddResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	page := armcompute.CapacityReservationsClientListByCapacityReservationGroupResponse{}
	for _, r := range g.reservations {
		cr := clone(*r)
		page.Value = append(page.Value, &cr)
	}
	resp.AddPage(http.StatusOK, page, nil)
	return
}

func (c *Cloud) imageExistsLocked(id string) bool {
	// /CommunityGalleries/<gallery>/Images/<image>/Versions/<version>
	parts := strings.Split(strings.Trim(id, "/"), "/")
	if len(parts) != 6 || !strings.EqualFold(parts[0], "CommunityGalleries") {
		return false
	}
	for _, v := range c.images[parts[1]+"/"+parts[3]] {
		if v == parts[5] {
			return true
		}
	}
	return false
}

func (c *Cloud) getImageVersion(_ context.Context, location, gallery, image, version string, _ *armcompute.CommunityGalleryImageVersionsClientGetOptions) (resp azfake.Responder[armcompute.CommunityGalleryImageVersionsClientGetResponse], errResp azfake.ErrorResponder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("CommunityGalleryImageVersions.Get")
	if !strings.EqualFold(location, c.opts.Location) || !c.imageExistsLocked(fmt.Sprintf("/CommunityGalleries/%s/Images/%s/Versions/%s", gallery, image, version)) {
		errResp.SetResponseError(http.StatusNotFound, "NotFound")
		return
	}
	resp.SetResponse(http.StatusOK, armcompute.CommunityGalleryImageVersionsClientGetResponse{CommunityGalleryImageVersion: imageVersion(gallery, image, version, location)}, nil)
	return
}

func (c *Cloud) listImageVersions(location, gallery, image string, _ *armcompute.CommunityGalleryImageVersionsClientListOptions) (resp azfake.PagerResponder[armcompute.CommunityGalleryImageVersionsClientListResponse]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count("CommunityGalleryImageVersions.List")
	versions, ok := c.images[gallery+"/"+image]
	if !ok || !strings.EqualFold(location, c.opts.Location) {
		resp.AddResponseError(http.StatusNotFound, "NotFound")
		return
	}
	page := armcompute.CommunityGalleryImageVersionsClientListResponse{}
	for _, v := range versions {
		iv := imageVersion(gallery, image, v, location)
		page.Value = append(page.Value, &iv)
	}
	resp.AddPage(http.StatusOK, page, nil)
	return
}

func imageVersion(gallery, image, version, location string) armcompute.CommunityGalleryImageVersion {
	id := fmt.Sprintf("/CommunityGalleries/%s/Images/%s/Versions/%s", gallery, image, version)
	return armcompute.CommunityGalleryImageVersion{Name: &version, Location: &location,
		Identifier: &armcompute.CommunityGalleryIdentifier{UniqueID: &id},
		Properties: &armcompute.CommunityGalleryImageVersionProperties{PublishedDate: ptr(time.Date(2025, 11, 20, 0, 0, 0, 0, time.UTC))}}
}

func (c *Cloud) skuLocked(size string) *armcompute.ResourceSKU {
	for _, s := range c.skus {
		if strings.EqualFold(deref(s.Name), size) && deref(s.ResourceType) == "virtualMachines" {
			return s
		}
	}
	return nil
}

func skuInZone(s *armcompute.ResourceSKU, location, zone string) bool {
	for _, r := range s.Restrictions {
		if r.RestrictionInfo == nil {
			continue
		}
		if r.Type != nil && *r.Type == armcompute.ResourceSKURestrictionsTypeLocation {
			return false
		}
		for _, z := range r.RestrictionInfo.Zones {
			if deref(z) == zone {
				return false
			}
		}
	}
	for _, li := range s.LocationInfo {
		if strings.EqualFold(deref(li.Location), location) {
			for _, z := range li.Zones {
				if deref(z) == zone {
					return true
				}
			}
		}
	}
	return false
}

func capability(s *armcompute.ResourceSKU, name string) string {
	for _, c := range s.Capabilities {
		if deref(c.Name) == name {
			return deref(c.Value)
		}
	}
	return ""
}

func zoneOf(vm armcompute.VirtualMachine) string {
	if len(vm.Zones) > 0 {
		return deref(vm.Zones[0])
	}
	return ""
}

func lastSegment(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

func sortedKeys[T any](m map[string]T) []string {
	out := keysOf(m)
	sort.Strings(out)
	return out
}
