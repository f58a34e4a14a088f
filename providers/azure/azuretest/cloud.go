// Package azuretest is an in-process Azure for tests: a stateful world (VMs,
// NICs, disks, proximity placement groups, capacity reservations, subnets,
// AKS gallery images, Resource SKUs and Retail Prices) served to the real
// armcompute and armnetwork clients through the SDK's own fake servers
// (armcompute/v8/fake, armnetwork/v7/fake) with azcore's fake credential and
// poller responders. Faults are injected per call: allocation failures per
// size, zone and priority, quota errors, lost responses and held creates.
//
// It models the Azure behaviour the provider depends on: a create that fails
// to allocate leaves a Failed VM behind (the error comes back on the PUT: the
// SDK's fake server cannot answer another PUT to a VM whose operation ended
// in an error); a NIC is in use while a VM (even a
// failed one) references it; deleting a VM deletes the NIC and disk whose
// delete option says so; a proximity placement group is pinned to the zone
// of its first VM; DELETE of a missing resource succeeds.
package azuretest

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	networkfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pricing"
	"github.com/stowage-k8s/stowage/providers/azure"
	"github.com/stowage-k8s/stowage/providers/azure/controllers/nodeclass"
)

// Defaults for Options left empty.
const (
	DefaultSubscription  = "00000000-0000-0000-0000-0000000a2ure"
	DefaultResourceGroup = "MC_stowage-rg_stowage-aks_eastus"
	DefaultLocation      = "eastus"
	// NetworkResourceGroup holds the cluster's virtual network.
	NetworkResourceGroup = "stowage-net"
	VNet                 = "aks-vnet"
	Subnet               = "aks-subnet"
	// ImageVersions are the AKS image versions every family has, oldest first.
	OldImageVersion    = "202510.09.0"
	LatestImageVersion = "202511.20.0"
)

// Options configure a Cloud.
type Options struct {
	SubscriptionID string
	ResourceGroup  string
	Location       string
	// Catalog is the built-in catalog sizes and prices come from; default azure/eastus.
	Catalog string
	// LROPolls is how many "in progress" answers each long-running
	// operation gives before its result; default 1, negative for none.
	LROPolls int
}

// Cloud is the in-process Azure.
type Cloud struct {
	opts Options

	mu          sync.Mutex
	skus        []*armcompute.ResourceSKU
	prices      map[string][2]float64 // size -> on-demand, spot
	pricesDown  bool
	skusDown    bool
	skuFilter   string
	vms         map[string]*vmRecord
	nics        map[string]*armnetwork.Interface
	disks       map[string]*armcompute.Disk
	ppgs        map[string]*armcompute.ProximityPlacementGroup
	crgs        map[string]*crgRecord
	subnets     map[string]string // lower-case subnet ID -> address prefix
	images      map[string][]string
	faults      map[faultKey][]string
	failNext    map[string]injected // SDK API name -> the next call's answer
	quota       map[string]bool     // SKU family, or "spot", whose quota is used up
	loseCreates int
	held        chan struct{}
	calls       map[string]int
	onRunning   []func(VM)
	onDeleted   []func(VM)
	vmSeq       int

	compute   computefake.ServerFactory
	network   networkfake.ServerFactory
	transport *Transport
}

type vmRecord struct {
	vm      armcompute.VirtualMachine
	created time.Time
}

type crgRecord struct {
	group        armcompute.CapacityReservationGroup
	reservations []*armcompute.CapacityReservation
}

type faultKey struct{ size, zone, priority string }

// New builds a Cloud holding the cluster's subnet, AKS images for every
// family, and the catalog's sizes and prices.
func New(opts Options) (*Cloud, error) {
	if opts.SubscriptionID == "" {
		opts.SubscriptionID = DefaultSubscription
	}
	if opts.ResourceGroup == "" {
		opts.ResourceGroup = DefaultResourceGroup
	}
	if opts.Location == "" {
		opts.Location = DefaultLocation
	}
	if opts.Catalog == "" {
		opts.Catalog = "azure/eastus"
	}
	switch {
	case opts.LROPolls == 0:
		opts.LROPolls = 1
	case opts.LROPolls < 0:
		opts.LROPolls = 0
	}
	cat, err := pricing.Load(opts.Catalog)
	if err != nil {
		return nil, err
	}
	c := &Cloud{
		opts: opts, prices: map[string][2]float64{}, vms: map[string]*vmRecord{}, nics: map[string]*armnetwork.Interface{},
		disks: map[string]*armcompute.Disk{}, ppgs: map[string]*armcompute.ProximityPlacementGroup{}, crgs: map[string]*crgRecord{},
		subnets: map[string]string{}, images: map[string][]string{}, faults: map[faultKey][]string{}, quota: map[string]bool{},
		calls: map[string]int{}, failNext: map[string]injected{},
	}
	c.skus, c.prices = skusFrom(cat, opts.Location)
	c.subnets[strings.ToLower(c.SubnetID())] = "10.224.0.0/16"
	for _, g := range nodeclass.Galleries {
		for _, image := range g.Images {
			c.images[g.Name+"/"+image] = []string{OldImageVersion, LatestImageVersion}
		}
	}
	c.wireCompute()
	c.wireNetwork()
	c.transport = &Transport{cloud: c, compute: computefake.NewServerFactoryTransport(&c.compute), network: networkfake.NewServerFactoryTransport(&c.network)}
	return c, nil
}

// SubscriptionID, ResourceGroup and Location are the Cloud's.
func (c *Cloud) SubscriptionID() string { return c.opts.SubscriptionID }

// ResourceGroup is the node resource group.
func (c *Cloud) ResourceGroup() string { return c.opts.ResourceGroup }

// Location is the region.
func (c *Cloud) Location() string { return c.opts.Location }

// SubnetID is the cluster's node subnet.
func (c *Cloud) SubnetID() string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/virtualNetworks/%s/subnets/%s",
		c.opts.SubscriptionID, NetworkResourceGroup, VNet, Subnet)
}

// Transport serves every request in-process; pass it as the clients' transport.
func (c *Cloud) Transport() *Transport { return c.transport }

// AddImageVersion publishes a version of a gallery image.
func (c *Cloud) AddImageVersion(gallery, image, version string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.images[gallery+"/"+image] = append(c.images[gallery+"/"+image], version)
}

// AddCapacityReservation reserves count VMs of size in zone ("1") in the
// group (made if new) and returns the group's ID.
func (c *Cloud) AddCapacityReservation(group, size, zone string, count int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.rid("capacityReservationGroups", group)
	rec, ok := c.crgs[strings.ToLower(group)]
	if !ok {
		rec = &crgRecord{group: armcompute.CapacityReservationGroup{ID: &id, Name: &group, Location: &c.opts.Location}}
		c.crgs[strings.ToLower(group)] = rec
	}
	name := fmt.Sprintf("%s-%s-%d", size, zone, len(rec.reservations))
	rec.reservations = append(rec.reservations, &armcompute.CapacityReservation{
		ID: ptr(id + "/capacityReservations/" + name), Name: &name, Location: &c.opts.Location,
		SKU: &armcompute.SKU{Name: &size, Capacity: ptr(int64(count))}, Zones: []*string{&zone},
		Properties: &armcompute.CapacityReservationProperties{ProvisioningState: ptr("Succeeded")},
	})
	return id
}

// AddProximityPlacementGroup makes a proximity placement group and returns its ID.
func (c *Cloud) AddProximityPlacementGroup(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.rid("proximityPlacementGroups", name)
	c.ppgs[strings.ToLower(name)] = &armcompute.ProximityPlacementGroup{ID: &id, Name: &name, Location: &c.opts.Location,
		Properties: &armcompute.ProximityPlacementGroupProperties{}}
	return id
}

// FailAllocation makes the next times creates of size in zone ("1", "" for
// no zone) at priority ("Regular" or "Spot") fail with code (e.g.
// ZonalAllocationFailed); times < 0 means until cleared.
func (c *Cloud) FailAllocation(size, zone, priority, code string, times int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := faultKey{strings.ToLower(size), zone, priority}
	if times < 0 {
		c.faults[k] = []string{"*" + code}
		return
	}
	for range times {
		c.faults[k] = append(c.faults[k], code)
	}
}

// ClearFaults removes every injected allocation failure and quota error.
func (c *Cloud) ClearFaults() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.faults = map[faultKey][]string{}
	c.quota = map[string]bool{}
}

// ExhaustQuota makes creates of sizes in the SKU family (e.g.
// standardNCasT4v3Family), or of any spot VM for "spot", fail with QuotaExceeded.
func (c *Cloud) ExhaustQuota(familyOrSpot string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.quota[familyOrSpot] = true
}

// LoseCreateResponses makes the next n VM creates succeed while the client
// sees a broken connection.
func (c *Cloud) LoseCreateResponses(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loseCreates += n
}

// HoldCreates makes VM creates stop after the VM exists (provisioning
// state Creating) until release is called: a controller can be stopped
// mid-launch.
func (c *Cloud) HoldCreates() (release func()) {
	ch := make(chan struct{})
	c.mu.Lock()
	c.held = ch
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			if c.held == ch {
				c.held = nil
			}
			c.mu.Unlock()
			close(ch)
		})
	}
}

// SetPrice sets a size's retail prices; spot 0 publishes no spot meter.
func (c *Cloud) SetPrice(size string, onDemand, spot float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prices[size] = [2]float64{onDemand, spot}
}

// injected is an error answer FailNext queued.
type injected struct {
	status int
	code   string
}

// FailNext makes the next call of an SDK API, named as the SDK names it
// ("SubnetsClient.Get", "CommunityGalleryImageVersionsClient.NewListPager"),
// answer status with the ARM error code, e.g. 429 TooManyRequests. The
// call does not reach the fake servers.
func (c *Cloud) FailNext(api string, status int, code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.failNext[api] = injected{status, code}
}

// SetPricesDown makes the Retail Prices API answer 503.
func (c *Cloud) SetPricesDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pricesDown = down
}

// SetSKUsDown makes Resource SKUs answer 503.
func (c *Cloud) SetSKUsDown(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skusDown = down
}

// OnRunning is called (outside the lock) for every VM that finishes creating.
func (c *Cloud) OnRunning(f func(VM)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onRunning = append(c.onRunning, f)
}

// OnDeleted is called for every VM deleted or evicted.
func (c *Cloud) OnDeleted(f func(VM)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onDeleted = append(c.onDeleted, f)
}

// Calls is how many times the named operation ran, e.g. "VirtualMachines.CreateOrUpdate".
func (c *Cloud) Calls(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[op]
}

// Operations lists every operation performed so far, sorted, including
// those a create performs on linked resources (NetworkInterfaces.Join, ...).
func (c *Cloud) Operations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := keysOf(c.calls)
	sort.Strings(out)
	return out
}

// SKUFilter is the $filter of the last Resource SKUs list.
func (c *Cloud) SKUFilter() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skuFilter
}

// VM is a snapshot of one VM.
type VM struct {
	Name, ID, Size, Zone, Priority, EvictionPolicy, State               string
	PPG, CapacityReservationGroup, NIC, Image, CustomData, ComputerName string
	OSDiskType                                                          string
	OSDiskSizeGB                                                        int32
	EncryptionAtHost, TrustedLaunch                                     bool
	Tags                                                                map[string]string
	Created                                                             time.Time
}

func snapshot(r *vmRecord) VM {
	vm := r.vm
	p := vm.Properties
	out := VM{Name: deref(vm.Name), ID: deref(vm.ID), State: deref(p.ProvisioningState), Tags: map[string]string{}, Created: r.created}
	for k, v := range vm.Tags {
		out.Tags[k] = deref(v)
	}
	if len(vm.Zones) > 0 {
		out.Zone = deref(vm.Zones[0])
	}
	if p.HardwareProfile != nil && p.HardwareProfile.VMSize != nil {
		out.Size = string(*p.HardwareProfile.VMSize)
	}
	if p.Priority != nil {
		out.Priority = string(*p.Priority)
	}
	if p.EvictionPolicy != nil {
		out.EvictionPolicy = string(*p.EvictionPolicy)
	}
	if p.ProximityPlacementGroup != nil {
		out.PPG = deref(p.ProximityPlacementGroup.ID)
	}
	if p.CapacityReservation != nil && p.CapacityReservation.CapacityReservationGroup != nil {
		out.CapacityReservationGroup = deref(p.CapacityReservation.CapacityReservationGroup.ID)
	}
	if p.NetworkProfile != nil && len(p.NetworkProfile.NetworkInterfaces) > 0 {
		out.NIC = deref(p.NetworkProfile.NetworkInterfaces[0].ID)
	}
	if sp := p.StorageProfile; sp != nil {
		if sp.ImageReference != nil {
			out.Image = deref(sp.ImageReference.CommunityGalleryImageID)
		}
		if d := sp.OSDisk; d != nil {
			out.OSDiskSizeGB = deref(d.DiskSizeGB)
			switch {
			case d.DiffDiskSettings != nil:
				out.OSDiskType = "Ephemeral"
			case d.ManagedDisk != nil && d.ManagedDisk.StorageAccountType != nil:
				out.OSDiskType = string(*d.ManagedDisk.StorageAccountType)
			}
		}
	}
	if p.OSProfile != nil {
		out.CustomData = deref(p.OSProfile.CustomData)
		out.ComputerName = deref(p.OSProfile.ComputerName)
	}
	if sp := p.SecurityProfile; sp != nil {
		out.EncryptionAtHost = deref(sp.EncryptionAtHost)
		out.TrustedLaunch = sp.SecurityType != nil && *sp.SecurityType == armcompute.SecurityTypesTrustedLaunch
	}
	return out
}

// VMs lists every VM, by name.
func (c *Cloud) VMs() []VM {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]VM, 0, len(c.vms))
	for _, r := range c.vms {
		out = append(out, snapshot(r))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NICs lists the network interfaces' names.
func (c *Cloud) NICs() []string { return c.names(func() []string { return keysOf(c.nics) }) }

// Disks lists the managed disks' names.
func (c *Cloud) Disks() []string { return c.names(func() []string { return keysOf(c.disks) }) }

// PPGs lists the proximity placement groups' names.
func (c *Cloud) PPGs() []string { return c.names(func() []string { return keysOf(c.ppgs) }) }

func (c *Cloud) names(f func() []string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := f()
	sort.Strings(out)
	return out
}

func keysOf[T any](m map[string]T) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Evict takes a spot VM away as Azure does with eviction policy Delete: the
// VM goes, and its NIC and disk with it.
func (c *Cloud) Evict(name string) error {
	c.mu.Lock()
	r, ok := c.vms[strings.ToLower(name)]
	if !ok {
		c.mu.Unlock()
		return fmt.Errorf("no VM %s", name)
	}
	vm := snapshot(r)
	c.removeVMLocked(strings.ToLower(name))
	hooks := c.onDeleted
	c.mu.Unlock()
	for _, f := range hooks {
		f(vm)
	}
	return nil
}

func (c *Cloud) rid(kind, name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s/%s", c.opts.SubscriptionID, c.opts.ResourceGroup, kind, name)
}

func (c *Cloud) nicID(name string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Network/networkInterfaces/%s", c.opts.SubscriptionID, c.opts.ResourceGroup, name)
}

// skusFrom turns a built-in catalog into Resource SKUs and prices, plus
// SKUs the provider must leave out: a size restricted in the location, a
// Generation 1 size, a GPU size of unknown model, a disk SKU, and a zone
// restriction on one GPU size.
func skusFrom(cat *pricing.Catalog, location string) ([]*armcompute.ResourceSKU, map[string][2]float64) {
	prices := map[string][2]float64{}
	var out []*armcompute.ResourceSKU
	for _, it := range cat.InstanceTypes {
		zones := map[string]bool{}
		var od, spot float64
		for _, o := range it.Offerings {
			if i := strings.LastIndexByte(o.Zone, '-'); i >= 0 {
				zones[o.Zone[i+1:]] = true
			}
			switch o.CapacityType {
			case v1.CapacityTypeOnDemand:
				od = o.PricePerHour
			case v1.CapacityTypeSpot:
				spot = o.PricePerHour
			}
		}
		prices[it.Name] = [2]float64{od, spot}
		gpus := 0
		if it.GPU != nil {
			gpus = it.GPU.Count
		}
		cpu, mem := it.Capacity[v1.ResourceCPU], it.Capacity[v1.ResourceMemory]
		arch := "x64"
		if it.Labels[v1.LabelArch] == "arm64" {
			arch = "Arm64"
		}
		s := sku(it.Name, "standard"+strings.ReplaceAll(it.Labels[v1.LabelInstanceFamily], "_", "")+"Family", location, keysOf(zones), map[string]string{
			"vCPUs": fmt.Sprint(cpu.Value()), "MemoryGB": fmt.Sprintf("%g", float64(mem.Value()>>20)/1024), "GPUs": fmt.Sprint(gpus),
			"LowPriorityCapable": boolCap(spot > 0 || it.GPU != nil), "HyperVGenerations": "V1,V2", "CpuArchitectureType": arch,
			"AcceleratedNetworkingEnabled": "True", "EncryptionAtHostSupported": "True", "EphemeralOSDiskSupported": "True",
			"CapacityReservationSupported": "True", "PremiumIO": "True",
			// Twice the vCPUs up to 64, as most current sizes have.
			"MaxDataDiskCount": fmt.Sprint(min(2*cpu.Value(), 64)),
		})
		if it.Name == "Standard_NC24ads_A100_v4" {
			s.Restrictions = append(s.Restrictions, &armcompute.ResourceSKURestrictions{
				Type: ptr(armcompute.ResourceSKURestrictionsTypeZone), ReasonCode: ptr(armcompute.ResourceSKURestrictionsReasonCodeNotAvailableForSubscription),
				Values: []*string{&location}, RestrictionInfo: &armcompute.ResourceSKURestrictionInfo{Locations: []*string{&location}, Zones: []*string{ptr("3")}},
			})
		}
		out = append(out, s)
	}
	restricted := sku("Standard_NC6s_v3", "standardNCSv3Family", location, []string{"1", "2", "3"},
		map[string]string{"vCPUs": "6", "MemoryGB": "112", "GPUs": "1", "LowPriorityCapable": "True", "HyperVGenerations": "V1,V2"})
	restricted.Restrictions = []*armcompute.ResourceSKURestrictions{{
		Type: ptr(armcompute.ResourceSKURestrictionsTypeLocation), ReasonCode: ptr(armcompute.ResourceSKURestrictionsReasonCodeNotAvailableForSubscription),
		Values: []*string{&location}, RestrictionInfo: &armcompute.ResourceSKURestrictionInfo{Locations: []*string{&location}},
	}}
	gen1 := sku("Standard_A2_v2", "standardAv2Family", location, []string{"1", "2", "3"},
		map[string]string{"vCPUs": "2", "MemoryGB": "4", "LowPriorityCapable": "True", "HyperVGenerations": "V1"})
	unknownGPU := sku("Standard_ND96isr_MI300X_v5", "standardNDISRMI300Xv5Family", location, []string{"1"},
		map[string]string{"vCPUs": "96", "MemoryGB": "1850", "GPUs": "8", "HyperVGenerations": "V2"})
	disk := &armcompute.ResourceSKU{Name: ptr("Premium_LRS"), ResourceType: ptr("disks"), Locations: []*string{&location}}
	prices["Standard_NC6s_v3"] = [2]float64{3.06, 0.6}
	prices["Standard_A2_v2"] = [2]float64{0.091, 0.02}
	prices["Standard_ND96isr_MI300X_v5"] = [2]float64{48.0, 12.0}
	out = append(out, restricted, gen1, unknownGPU, disk)
	sort.Slice(out, func(i, j int) bool { return deref(out[i].Name) < deref(out[j].Name) })
	return out, prices
}

func sku(name, family, location string, zones []string, caps map[string]string) *armcompute.ResourceSKU {
	sort.Strings(zones)
	s := &armcompute.ResourceSKU{Name: &name, Family: &family, ResourceType: ptr("virtualMachines"), Tier: ptr("Standard"),
		Locations: []*string{&location}}
	li := &armcompute.ResourceSKULocationInfo{Location: &location}
	for _, z := range zones {
		li.Zones = append(li.Zones, ptr(z))
	}
	s.LocationInfo = []*armcompute.ResourceSKULocationInfo{li}
	keys := keysOf(caps)
	sort.Strings(keys)
	for _, k := range keys {
		s.Capabilities = append(s.Capabilities, &armcompute.ResourceSKUCapabilities{Name: ptr(k), Value: ptr(caps[k])})
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// boolCap spells a boolean capability as Resource SKUs do.
func boolCap(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// clone deep-copies an SDK model through JSON, so what the fake server
// marshals later never races with the world changing.
func clone[T any](v T) T {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// Clients are real armcompute and armnetwork clients (and a Retail Prices
// client) whose requests this Cloud serves in-process.
func (c *Cloud) Clients() (*azure.Clients, error) {
	return azure.NewClients(azure.ClientConfig{SubscriptionID: c.opts.SubscriptionID, Transport: c.transport})
}
