package gcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
)

// Compute Engine labels on every VM Stowage launches.
const (
	LabelCluster        = "stowage-cluster"
	LabelNodePool       = "stowage-nodepool"
	LabelNodeClaim      = "stowage-nodeclaim"
	LabelNodeClass      = "stowage-nodeclass"
	LabelInstanceType   = "stowage-instance-type"
	LabelPlacementGroup = "stowage-placement-group"
)

// GKE node labels for GPUs: GKE's driver installer and device plugin select
// nodes by them.
const (
	gkeAcceleratorLabel = "cloud.google.com/gke-accelerator"
	gkeDriverLabel      = "cloud.google.com/gke-gpu-driver-version"
)

// Error codes that mean "no capacity for this offering now, try the next".
var capacityCodes = []string{
	"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "QUOTA_EXCEEDED",
	"IP_SPACE_EXHAUSTED", "RESOURCE_POOL_EXHAUSTED", "quotaExceeded", "RESERVATION_NOT_FOUND_OR_FULL",
}

var codeWord = regexp.MustCompile(`\b[A-Z][A-Z_]{4,}[A-Z]\b|\bquotaExceeded\b`)

// Create implements cloudprovider.CloudProvider. The VM is named after the
// claim and each insert carries a request ID derived from the claim and the
// offering, so a retry after a lost response finds the VM (by name) instead
// of buying a second. Offerings are tried in the claim's order; stockouts
// and quota errors mark an offering unavailable and move on.
func (p *Provider) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	logger := log.FromContext(ctx).WithName(Name).WithValues("nodeclaim", klog.KObj(claim))
	if claim.Spec.NodeClassRef == nil {
		return nil, fmt.Errorf("launching nodeclaim %s: spec.nodeClassRef is required for gcp", claim.Name)
	}
	nc, err := p.nodeClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	}
	if err := launchable(nc); err != nil {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	}
	name := InstanceName(claim.Name)
	if existing, err := p.findInstance(ctx, name); err != nil {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	} else if existing != nil {
		if existing.GetLabels()[LabelCluster] != p.labelValue {
			return nil, fmt.Errorf("launching nodeclaim %s: instance %s exists but belongs to cluster %q", claim.Name, name, existing.GetLabels()[LabelCluster])
		}
		logger.V(1).Info("found the instance an earlier launch made", "instance", name)
		return p.claimFromInstance(existing, claim), nil
	}
	p.refresh(ctx)
	boot, err := p.bootstrapFor(ctx, nc.Status.BootstrapTemplate)
	if err != nil {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	}
	group := placementGroup(claim, nc)
	groupZone := ""
	if group != "" {
		// Claims of a group launch one at a time (the lifecycle controller
		// runs many at once), so all of them see the first VM's zone.
		defer p.lockGroup(group)()
		if groupZone, err = p.groupZone(ctx, group); err != nil {
			return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
		}
	}

	var noCapacity, skipped []cloudprovider.OfferingID
	for _, c := range claim.Spec.Offerings {
		id := cloudprovider.ChoiceID(c)
		if p.unavailable.IsUnavailable(id) {
			skipped = append(skipped, id)
			continue
		}
		s, ok := p.shapeFor(c.InstanceType)
		if !ok {
			logger.Info("skipping offering of an unknown instance type", "offering", id.String())
			continue
		}
		placed := group != "" && slices.Contains(placementFamilies, s.Family)
		if placed && groupZone != "" && c.Zone != groupZone {
			// A compact policy holds VMs of one zone: the group's first VM decides.
			continue
		}
		policy := ""
		if placed {
			if policy, err = p.ensurePlacementPolicy(ctx, group); err != nil {
				return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
			}
		}
		inst, err := p.instanceFor(claim, nc, boot, s, c, name, policy, group)
		if err != nil {
			return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
		}
		got, err := p.insert(ctx, c.Zone, inst, requestID(claim, c))
		switch {
		case err == nil:
			out := p.claimFromInstance(got, claim)
			for _, u := range append(skipped, noCapacity...) {
				out.Status.UnavailableOfferings = append(out.Status.UnavailableOfferings, u.String())
			}
			logger.Info("launched instance", "providerID", out.Status.ProviderID, "instanceType", out.Status.InstanceType,
				"zone", out.Status.Zone, "capacityType", out.Status.CapacityType)
			return out, nil
		case isCapacityError(err):
			p.unavailable.MarkUnavailable(id)
			noCapacity = append(noCapacity, id)
			logger.Info("no capacity for offering", "offering", id.String(), "error", err.Error())
		default:
			return nil, fmt.Errorf("launching nodeclaim %s as %s: %w", claim.Name, id, err)
		}
	}
	return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name,
		cloudprovider.NewInsufficientCapacityError(errors.New("every offering is out of capacity or quota"), append(noCapacity, skipped...)...))
}

// launchable says what a node class still lacks before it can launch.
func launchable(nc *gcpv1.GCENodeClass) error {
	var missing []string
	if nc.Status.Image == "" {
		missing = append(missing, "image")
	}
	if nc.Status.Subnetwork == "" {
		missing = append(missing, "subnetwork")
	}
	if nc.Status.BootstrapTemplate == "" {
		missing = append(missing, "bootstrap template")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: GCENodeClass %s has no resolved %s in status", ErrNodeClassNotReady, nc.Name, strings.Join(missing, ", "))
	}
	for _, c := range nc.Status.Conditions {
		if c.Type == gcpv1.ConditionReady && c.Status != "True" {
			return fmt.Errorf("%w: GCENodeClass %s: %s", ErrNodeClassNotReady, nc.Name, c.Message)
		}
	}
	return nil
}

// insert creates the VM and waits for its operation. An instance that
// already exists under the name (an earlier attempt whose answer was lost)
// is returned as if just made.
func (p *Provider) insert(ctx context.Context, zone string, inst *computepb.Instance, reqID string) (*computepb.Instance, error) {
	cl := p.opts.Clients.Instances
	op, err := cl.Insert(ctx, &computepb.InsertInstanceRequest{Project: p.opts.Project, Zone: zone, InstanceResource: inst, RequestId: &reqID})
	if err == nil {
		if err = wait(ctx, op); err != nil {
			if _, failed := errors.AsType[*opError](err); !failed {
				// The insert was accepted and its operation could not be
				// read (a read-rate quota, a timeout): the VM may exist, so
				// this never counts as the zone lacking capacity.
				return nil, &afterInsertError{fmt.Errorf("waiting for the insert of instance %s: %w", inst.GetName(), err)}
			}
		}
	}
	if err != nil && !isAlreadyExists(err) {
		return nil, err
	}
	got, gerr := cl.Get(ctx, &computepb.GetInstanceRequest{Project: p.opts.Project, Zone: zone, Instance: inst.GetName()})
	if gerr != nil {
		return nil, &afterInsertError{fmt.Errorf("reading instance %s after insert: %w", inst.GetName(), gerr)}
	}
	if got.GetLabels()[LabelCluster] != p.labelValue {
		return nil, fmt.Errorf("instance %s exists but belongs to cluster %q", inst.GetName(), got.GetLabels()[LabelCluster])
	}
	return got, nil
}

// afterInsertError is a failure after the VM was made (reading it back): never
// a capacity error, whatever its text says (a read-rate quota answers
// quotaExceeded), since trying the next zone would make a second VM.
type afterInsertError struct{ err error }

func (e *afterInsertError) Error() string { return e.err.Error() }
func (e *afterInsertError) Unwrap() error { return e.err }

// opError carries a failed operation's error codes.
type opError struct {
	codes []string
	msg   string
}

func (e *opError) Error() string { return e.msg }

// wait waits for a long-running operation and turns its error, if any, into
// an *opError with the codes Compute Engine put in it.
func wait(ctx context.Context, op *compute.Operation) error {
	err := op.Wait(ctx)
	if oe := op.Proto().GetError(); oe != nil && len(oe.GetErrors()) > 0 {
		e := &opError{}
		var msgs []string
		for _, x := range oe.GetErrors() {
			e.codes = append(e.codes, x.GetCode())
			msgs = append(msgs, x.GetCode()+": "+x.GetMessage())
		}
		e.msg = strings.Join(msgs, "; ")
		return e
	}
	return err
}

func isCapacityError(err error) bool {
	if _, made := errors.AsType[*afterInsertError](err); made {
		return false // the VM exists: another zone would make a second
	}
	var oe *opError
	if errors.As(err, &oe) {
		for _, c := range oe.codes {
			if slices.Contains(capacityCodes, c) {
				return true
			}
		}
		return false
	}
	for _, w := range codeWord.FindAllString(err.Error(), -1) {
		if slices.Contains(capacityCodes, w) {
			return true
		}
	}
	return false
}

var nameUnsafe = regexp.MustCompile(`[^-a-z0-9]+`)
var validName = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// InstanceName is the VM name for a claim: the claim's name when Compute
// Engine accepts it, else a cleaned prefix with a hash of the name.
func InstanceName(claimName string) string {
	if validName.MatchString(claimName) {
		return claimName
	}
	sum := sha256.Sum256([]byte(claimName))
	base := strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(claimName), "-"), "-")
	if base == "" || base[0] < 'a' || base[0] > 'z' {
		base = "n" + base
	}
	if len(base) > 54 {
		base = base[:54]
	}
	return strings.TrimRight(base, "-") + "-" + hex.EncodeToString(sum[:])[:8]
}

// requestID is stable for one claim and offering, so a retried insert is
// the same request to Compute Engine; it is a UUID, as the API requires.
func requestID(claim *v1.NodeClaim, c v1.OfferingChoice) string {
	key := strings.Join([]string{cloudprovider.ClientToken(claim.Name, string(claim.UID)), c.InstanceType, c.Zone, c.CapacityType, c.ReservationID}, "/")
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte(key)).String()
}

// shapeFor finds a type in the live catalog, else in the built-in one.
func (p *Provider) shapeFor(name string) (shape, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.shapes[name]; ok {
		return s, true
	}
	it, ok := p.static.Lookup(name)
	if !ok {
		return shape{}, false
	}
	mt, accel, n := splitType(name)
	s := shape{Name: name, MachineType: mt, Family: familyOf(mt), Arch: it.Labels[v1.LabelArch]}
	s.VCPU = int(it.Capacity.Cpu().Value())
	s.MemoryMiB = it.Capacity.Memory().Value() >> 20
	if accel != "" {
		s.Accel, s.GPUs, s.Attached = accel, n, true
	} else if it.GPU != nil {
		s.GPUs = it.GPU.Count
		for k, a := range accelerators {
			// a3-highgpu and a3-megagpu both carry 80 GB H100s: the mega
			// accelerator type goes with the megagpu machines only.
			if a.Name == it.GPU.Name && a.MemoryMiB == it.GPU.MemoryMiB && a.Attach == nil &&
				strings.Contains(k, "-mega-") == strings.Contains(mt, "megagpu") {
				s.Accel = k
			}
		}
	}
	return s, true
}

// launchRecord is what a VM was launched with, kept in its metadata so drift
// can be judged against the node class later.
type launchRecord struct {
	NodeClaim    string   `json:"nodeClaim"`
	NodeClass    string   `json:"nodeClass"`
	InstanceType string   `json:"instanceType"`
	Image        string   `json:"image"`
	Subnetwork   string   `json:"subnetwork"`
	Account      string   `json:"serviceAccount"`
	Tags         []string `json:"tags"`
	DiskType     string   `json:"diskType"`
	DiskSizeGiB  int32    `json:"diskSizeGiB"`
	// SpecHash covers the rest of the node class spec that shapes the VM.
	SpecHash string `json:"specHash"`
}

// specHash hashes the node class settings not compared one by one.
func specHash(nc *gcpv1.GCENodeClass) string {
	s := nc.Spec
	raw, _ := json.Marshal([]any{s.PrivateNodes, s.Labels, s.Metadata, s.BootDisk.KMSKey, s.ShieldedInstance, s.Kubelet, s.GPUDriver, s.Image.Type})
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])[:16]
}

func diskTypeFor(nc *gcpv1.GCENodeClass, machineType string) string {
	if strings.HasPrefix(machineType, "a4-") || strings.HasPrefix(machineType, "a3-megagpu") || strings.HasPrefix(machineType, "a3-ultragpu") {
		return "hyperdisk-balanced"
	}
	if nc.Spec.BootDisk.Type == "" {
		return "pd-balanced"
	}
	return nc.Spec.BootDisk.Type
}

func diskSize(nc *gcpv1.GCENodeClass) int32 {
	if nc.Spec.BootDisk.SizeGiB == 0 {
		return 100
	}
	return nc.Spec.BootDisk.SizeGiB
}

func expectedTags(nc *gcpv1.GCENodeClass, boot *bootstrap) []string {
	tags := slices.Clone(nc.Spec.NetworkTags)
	if boot != nil {
		tags = append(tags, boot.Tags...)
	}
	slices.Sort(tags)
	return slices.Compact(tags)
}

// instanceFor builds the VM for one offering.
func (p *Provider) instanceFor(claim *v1.NodeClaim, nc *gcpv1.GCENodeClass, boot *bootstrap, s shape, c v1.OfferingChoice,
	name, policy, group string) (*computepb.Instance, error) {
	zone := c.Zone
	labels := kubeletLabels(claim)
	labels[v1.LabelInstanceType] = c.InstanceType
	labels[v1.LabelZone] = zone
	labels[v1.LabelCapacityType] = c.CapacityType
	if s.GPUs > 0 && nc.Spec.GPUDriver != gcpv1.GPUDriverNone {
		labels[gkeAcceleratorLabel] = s.Accel
		labels[gkeDriverLabel] = "default"
		if nc.Spec.GPUDriver == gcpv1.GPUDriverLatest {
			labels[gkeDriverLabel] = "latest"
		}
	}
	taints := v1.RegistrationTaints(claim.Spec.Taints, claim.Spec.StartupTaints)
	md, err := nodeMetadata(boot, joinSettings{Labels: labels, Taints: taints, Kubelet: nc.Spec.Kubelet})
	if err != nil {
		return nil, fmt.Errorf("bootstrap metadata from %s: %w", lastSegment(boot.URL), err)
	}
	maps.Copy(md, nc.Spec.Metadata)
	rec := launchRecord{
		NodeClaim: claim.Name, NodeClass: nc.Name, InstanceType: c.InstanceType, Image: nc.Status.Image,
		Subnetwork: nc.Status.Subnetwork, Account: nc.Spec.ServiceAccount, Tags: expectedTags(nc, boot),
		DiskType: diskTypeFor(nc, s.MachineType), DiskSizeGiB: diskSize(nc), SpecHash: specHash(nc),
	}
	raw, _ := json.Marshal(rec)
	md[metaLaunch] = string(raw)
	items := make([]*computepb.Items, 0, len(md))
	for _, k := range slices.Sorted(maps.Keys(md)) {
		items = append(items, &computepb.Items{Key: strPtr(k), Value: strPtr(md[k])})
	}

	gceLabels := maps.Clone(nc.Spec.Labels)
	if gceLabels == nil {
		gceLabels = map[string]string{}
	}
	gceLabels[LabelCluster] = p.labelValue
	gceLabels[LabelNodePool] = LabelValue(claim.Labels[v1.LabelNodePool])
	gceLabels[LabelNodeClaim] = LabelValue(claim.Name)
	gceLabels[LabelNodeClass] = LabelValue(nc.Name)
	gceLabels[LabelInstanceType] = LabelValue(c.InstanceType)
	if policy != "" {
		gceLabels[LabelPlacementGroup] = LabelValue(group)
	}

	disk := &computepb.AttachedDisk{
		Boot: boolPtr(true), AutoDelete: boolPtr(true), Type: strPtr("PERSISTENT"),
		InitializeParams: &computepb.AttachedDiskInitializeParams{
			SourceImage: strPtr(nc.Status.Image), DiskSizeGb: int64Ptr(int64(rec.DiskSizeGiB)),
			DiskType: strPtr("zones/" + zone + "/diskTypes/" + rec.DiskType), Labels: gceLabels,
		},
	}
	if nc.Spec.BootDisk.KMSKey != "" {
		disk.DiskEncryptionKey = &computepb.CustomerEncryptionKey{KmsKeyName: strPtr(nc.Spec.BootDisk.KMSKey)}
	}
	nic := &computepb.NetworkInterface{Subnetwork: strPtr(nc.Status.Subnetwork)}
	if boot != nil && boot.PodRange != "" {
		nic.AliasIpRanges = []*computepb.AliasIpRange{{SubnetworkRangeName: strPtr(boot.PodRange), IpCidrRange: strPtr(podCIDRSize(nc.Spec.Kubelet))}}
	}
	if nc.Spec.PrivateNodes != nil && !*nc.Spec.PrivateNodes {
		nic.AccessConfigs = []*computepb.AccessConfig{{Name: strPtr("External NAT"), Type: strPtr("ONE_TO_ONE_NAT")}}
	}
	inst := &computepb.Instance{
		Name:              strPtr(name),
		MachineType:       strPtr("zones/" + zone + "/machineTypes/" + s.MachineType),
		Labels:            gceLabels,
		Metadata:          &computepb.Metadata{Items: items},
		Disks:             []*computepb.AttachedDisk{disk},
		NetworkInterfaces: []*computepb.NetworkInterface{nic},
		ServiceAccounts:   []*computepb.ServiceAccount{{Email: strPtr(nc.Spec.ServiceAccount), Scopes: []string{"https://www.googleapis.com/auth/cloud-platform"}}},
		Tags:              &computepb.Tags{Items: rec.Tags},
		Scheduling:        scheduling(c.CapacityType, s.GPUs > 0),
	}
	if sh := nc.Spec.ShieldedInstance; sh != nil {
		inst.ShieldedInstanceConfig = &computepb.ShieldedInstanceConfig{EnableSecureBoot: boolPtr(sh.SecureBoot),
			EnableVtpm: boolPtr(sh.VTPM == nil || *sh.VTPM), EnableIntegrityMonitoring: boolPtr(sh.IntegrityMonitoring == nil || *sh.IntegrityMonitoring)}
	}
	if s.Attached {
		inst.GuestAccelerators = []*computepb.AcceleratorConfig{{
			AcceleratorType: strPtr("zones/" + zone + "/acceleratorTypes/" + s.Accel), AcceleratorCount: int32Ptr(int32(s.GPUs)),
		}}
	}
	switch {
	case c.CapacityType == v1.CapacityTypeReserved:
		if c.ReservationID == "" {
			return nil, fmt.Errorf("reserved offering %s has no reservationID", cloudprovider.ChoiceID(c))
		}
		inst.ReservationAffinity = &computepb.ReservationAffinity{ConsumeReservationType: strPtr("SPECIFIC_RESERVATION"),
			Key: strPtr("compute.googleapis.com/reservation-name"), Values: []string{c.ReservationID}}
	case c.CapacityType == v1.CapacityTypeSpot || nc.Spec.Reservations.Consume != gcpv1.ReservationsAny:
		// Spot VMs cannot use reservations; Specific and None keep on-demand
		// launches out of reservations meant for something else.
		inst.ReservationAffinity = &computepb.ReservationAffinity{ConsumeReservationType: strPtr("NO_RESERVATION")}
	}
	if policy != "" {
		inst.ResourcePolicies = []string{policy}
	}
	return inst, nil
}

// scheduling: spot VMs are deleted when preempted; GPU VMs cannot live-migrate.
func scheduling(capacityType string, gpu bool) *computepb.Scheduling {
	switch {
	case capacityType == v1.CapacityTypeSpot:
		return &computepb.Scheduling{ProvisioningModel: strPtr("SPOT"), InstanceTerminationAction: strPtr("DELETE"),
			AutomaticRestart: boolPtr(false), OnHostMaintenance: strPtr("TERMINATE")}
	case gpu:
		return &computepb.Scheduling{ProvisioningModel: strPtr("STANDARD"), AutomaticRestart: boolPtr(true), OnHostMaintenance: strPtr("TERMINATE")}
	}
	return &computepb.Scheduling{ProvisioningModel: strPtr("STANDARD"), AutomaticRestart: boolPtr(true), OnHostMaintenance: strPtr("MIGRATE")}
}

// podCIDRSize is the alias range for a node's pods: GKE gives each node
// twice as many addresses as its max pods.
func podCIDRSize(k *gcpv1.Kubelet) string {
	pods := 110
	if k != nil && k.MaxPods != nil {
		pods = int(*k.MaxPods)
	}
	bits := 32
	for n := 1; n < 2*pods; n *= 2 {
		bits--
	}
	return fmt.Sprintf("/%d", bits)
}

func boolPtr(b bool) *bool    { return &b }
func int32Ptr(i int32) *int32 { return &i }
func int64Ptr(i int64) *int64 { return &i }
