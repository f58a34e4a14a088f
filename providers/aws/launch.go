package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
	"github.com/stowage-k8s/stowage/providers/internal/kubelet"
)

// Tags on every instance and volume Stowage launches.
const (
	TagCluster   = v1.Group + "/cluster"
	TagNodePool  = v1.LabelNodePool
	TagNodeClaim = v1.LabelNodeClaim
	TagNodeClass = awsv1.Group + "/ec2nodeclass"
	TagName      = "Name"
)

// maxClientTokenLen is EC2's limit on idempotency tokens.
const maxClientTokenLen = 64

// ResourceEFA is the extended resource the EFA device plugin advertises.
const ResourceEFA corev1.ResourceName = "vpc.amazonaws.com/efa"

// defaultVolumeSize is the volume that holds container images and pod
// storage when a node class sets none: GPU images, container layers and
// model weights outgrow the AMI default.
const defaultVolumeSize = "100Gi"

// volumes are the node class's volumes, or the family's defaults: AL2023
// and custom images keep everything on /dev/xvda; Bottlerocket boots from a
// small OS volume and keeps containers on a data volume, /dev/xvdb.
func volumes(nc *awsv1.EC2NodeClass) []awsv1.BlockDeviceMapping {
	if len(nc.Spec.BlockDeviceMappings) > 0 {
		return nc.Spec.BlockDeviceMappings
	}
	ebs := func(size string) awsv1.BlockDevice {
		return awsv1.BlockDevice{VolumeSize: size, VolumeType: "gp3", Encrypted: aws.Bool(true), DeleteOnTermination: aws.Bool(true)}
	}
	if nc.Family() == awsv1.AMIFamilyBottlerocket {
		return []awsv1.BlockDeviceMapping{
			{DeviceName: "/dev/xvda", EBS: ebs("4Gi")},
			{DeviceName: "/dev/xvdb", EBS: ebs(defaultVolumeSize), RootVolume: true},
		}
	}
	return []awsv1.BlockDeviceMapping{{DeviceName: "/dev/xvda", EBS: ebs(defaultVolumeSize), RootVolume: true}}
}

// Create implements cloudprovider.CloudProvider. It tries the claim's
// offerings grouped by capacity type (and reservation) in the claim's order,
// one CreateFleet call per group, and stops at the first machine.
func (p *Provider) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	logger := log.FromContext(ctx).WithName(Name).WithValues("nodeclaim", klog.KObj(claim))
	if claim.Spec.NodeClassRef == nil {
		return nil, fmt.Errorf("launching nodeclaim %s: spec.nodeClassRef is required for aws", claim.Name)
	}
	nc, err := p.nodeClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	}
	// A crash between CreateFleet and the status write leaves a tagged
	// instance behind; adopt it rather than launching a second one.
	if existing, err := p.findClaimInstance(ctx, claim.Name); err != nil {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	} else if existing != nil {
		logger.V(1).Info("found the instance an earlier launch made", "instance", aws.ToString(existing.InstanceId))
		return p.claimFromInstance(existing, claim), nil
	}
	// Nothing is bought for a node class that cannot launch working nodes.
	if err := launchable(nc); err != nil {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
	}
	p.refresh(ctx)

	var noCapacity []cloudprovider.OfferingID
	var failures []error
	for _, g := range groupOfferings(claim.Spec.Offerings) {
		res, err := p.launchGroup(ctx, claim, nc, g)
		if len(res.noCapacity) > 0 {
			p.unavailable.MarkUnavailable(res.noCapacity...)
			logger.Info("no capacity in pools", "offerings", ids(res.noCapacity))
		}
		noCapacity = append(noCapacity, res.stillUnavailable...)
		noCapacity = append(noCapacity, res.noCapacity...)
		if err != nil {
			if errors.Is(err, errFleetOutcomeUnknown) {
				// The machine may exist: another group's fleet, with its own
				// client token, would buy a second one. The retry asks this
				// group again with the same token and gets its answer.
				return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
			}
			failures = append(failures, err)
			continue
		}
		if res.claim != nil {
			for _, id := range noCapacity {
				res.claim.Status.UnavailableOfferings = append(res.claim.Status.UnavailableOfferings, id.String())
			}
			logger.Info("launched instance", "providerID", res.claim.Status.ProviderID, "instanceType", res.claim.Status.InstanceType,
				"zone", res.claim.Status.Zone, "capacityType", res.claim.Status.CapacityType)
			return res.claim, nil
		}
	}
	if len(failures) > 0 {
		return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, errors.Join(failures...))
	}
	return nil, fmt.Errorf("launching nodeclaim %s: %w", claim.Name,
		cloudprovider.NewInsufficientCapacityError(errors.New("every offering is out of capacity"), noCapacity...))
}

func ids(in []cloudprovider.OfferingID) []string {
	out := make([]string, len(in))
	for i, id := range in {
		out[i] = id.String()
	}
	return out
}

// launchable says why a node class cannot launch: its Ready condition is
// False or describes an older spec, or its status lacks what a launch needs.
func launchable(nc *awsv1.EC2NodeClass) error {
	ready := nc.ReadyCondition()
	switch {
	case ready == nil:
		return fmt.Errorf("%w: EC2NodeClass %s has not been resolved since its last change (generation %d)", ErrNodeClassNotReady, nc.Name, nc.Generation)
	case ready.Status != metav1.ConditionTrue:
		return fmt.Errorf("%w: EC2NodeClass %s: %s", ErrNodeClassNotReady, nc.Name, ready.Message)
	}
	var missing []string
	if len(nc.Status.Subnets) == 0 {
		missing = append(missing, "subnets")
	}
	if len(nc.Status.SecurityGroups) == 0 {
		missing = append(missing, "security groups")
	}
	if len(nc.Status.AMIs) == 0 {
		missing = append(missing, "AMIs")
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: EC2NodeClass %s has no resolved %v in status", ErrNodeClassNotReady, nc.Name, missing)
	}
	return nil
}

// offeringGroup is the offerings one CreateFleet call tries: one capacity
// type, and for reserved capacity one reservation.
type offeringGroup struct {
	capacityType  string
	reservationID string
	choices       []v1.OfferingChoice
	priorities    []int // index of each choice in the claim
}

func groupOfferings(choices []v1.OfferingChoice) []*offeringGroup {
	var out []*offeringGroup
	index := map[[2]string]*offeringGroup{}
	for i, c := range choices {
		key := [2]string{c.CapacityType, ""}
		if c.CapacityType == v1.CapacityTypeReserved {
			key[1] = c.ReservationID
		}
		g, ok := index[key]
		if !ok {
			g = &offeringGroup{capacityType: key[0], reservationID: key[1]}
			index[key] = g
			out = append(out, g)
		}
		g.choices = append(g.choices, c)
		g.priorities = append(g.priorities, i)
	}
	return out
}

type groupResult struct {
	claim *v1.NodeClaim
	// noCapacity are pools EC2 just reported empty; stillUnavailable were
	// skipped because the cache already says so (and are not marked again,
	// which would extend their window without evidence).
	noCapacity       []cloudprovider.OfferingID
	stillUnavailable []cloudprovider.OfferingID
}

// fleetConfig is one launch template and the overrides launched from it.
type fleetConfig struct {
	efa       int
	template  string
	overrides []ec2types.FleetLaunchTemplateOverridesRequest
}

func (p *Provider) launchGroup(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, g *offeringGroup) (groupResult, error) {
	var res groupResult
	if g.capacityType == v1.CapacityTypeReserved && g.reservationID == "" {
		return res, fmt.Errorf("reserved offerings need a reservationID (offering %s)", cloudprovider.ChoiceID(g.choices[0]))
	}
	block, err := p.isCapacityBlock(nc, g.reservationID)
	if err != nil {
		return res, err
	}
	placementGroup := ""
	if claim.Spec.Placement != nil {
		name, err := p.ensurePlacementGroup(ctx, claim.Spec.Placement.Group)
		if err != nil {
			return res, err
		}
		placementGroup = name
	}
	subnetZone := map[string]string{}
	images := map[string]string{} // instance type -> image sent
	configs := map[int]*fleetConfig{}
	var skipped []error
	var tried []cloudprovider.OfferingID
	for i, c := range g.choices {
		id := cloudprovider.ChoiceID(c)
		if p.unavailable.IsUnavailable(id) {
			res.stillUnavailable = append(res.stillUnavailable, id)
			continue
		}
		ami, ok := p.amiFor(nc, c.InstanceType)
		if !ok {
			// Other types of the group may still launch.
			skipped = append(skipped, fmt.Errorf("EC2NodeClass %s has no image for %s (architecture or accelerator variant)", nc.Name, c.InstanceType))
			continue
		}
		facts := p.typeFacts(c.InstanceType)
		efa := 0
		if wantsEFA(nc, claim) {
			efa = facts.efa
		}
		var placement *ec2types.Placement
		if placementGroup != "" && facts.placement {
			placement = &ec2types.Placement{GroupName: aws.String(placementGroup)}
		}
		cfg := configs[efa]
		if cfg == nil {
			cfg = &fleetConfig{efa: efa}
			configs[efa] = cfg
		}
		tried = append(tried, id)
		images[c.InstanceType] = ami
		for _, s := range nc.Status.Subnets {
			if s.Zone != c.Zone {
				continue
			}
			subnetZone[s.ID] = s.Zone
			cfg.overrides = append(cfg.overrides, ec2types.FleetLaunchTemplateOverridesRequest{
				InstanceType: ec2types.InstanceType(c.InstanceType),
				SubnetId:     aws.String(s.ID),
				ImageId:      aws.String(ami),
				Priority:     aws.Float64(float64(g.priorities[i])),
				Placement:    placement,
			})
		}
	}
	var order []*fleetConfig
	for _, efa := range slices.Sorted(maps.Keys(configs)) {
		if cfg := configs[efa]; len(cfg.overrides) > 0 {
			order = append(order, cfg)
		}
	}
	if len(order) == 0 {
		return res, errors.Join(skipped...)
	}
	out, err := p.createFleet(ctx, claim, nc, g, block, order)
	if err != nil {
		if code := errorCode(err); capacityErrorCodes[code] {
			res.noCapacity = append(res.noCapacity, tried...)
			return res, nil
		}
		return res, fmt.Errorf("CreateFleet (%s): %w", g.capacityType, err)
	}
	var other []error
	for _, e := range out.Errors {
		code := aws.ToString(e.ErrorCode)
		ov := overridesOf(e.LaunchTemplateAndOverrides)
		zone := aws.ToString(ov.AvailabilityZone)
		if zone == "" {
			zone = subnetZone[aws.ToString(ov.SubnetId)]
		}
		if capacityErrorCodes[code] {
			id := cloudprovider.OfferingID{InstanceType: string(ov.InstanceType), Zone: zone, CapacityType: g.capacityType, ReservationID: g.reservationID}
			if !slices.Contains(res.noCapacity, id) {
				res.noCapacity = append(res.noCapacity, id)
			}
			continue
		}
		other = append(other, fmt.Errorf("%s in %s: %s: %s", ov.InstanceType, zone, code, aws.ToString(e.ErrorMessage)))
	}
	for _, fi := range out.Instances {
		if len(fi.InstanceIds) == 0 {
			continue
		}
		ov := overridesOf(fi.LaunchTemplateAndOverrides)
		zone := aws.ToString(fi.AvailabilityZone)
		if zone == "" {
			zone = aws.ToString(ov.AvailabilityZone)
		}
		if zone == "" {
			zone = subnetZone[aws.ToString(fi.SubnetId)]
		}
		if zone == "" {
			zone = subnetZone[aws.ToString(ov.SubnetId)]
		}
		instanceType := string(fi.InstanceType)
		if instanceType == "" {
			instanceType = string(ov.InstanceType)
		}
		image := aws.ToString(ov.ImageId)
		if image == "" {
			image = images[instanceType] // not every answer echoes it (moto does not)
		}
		res.claim = p.launchedClaim(claim, launched{
			id: fi.InstanceIds[0], instanceType: instanceType, zone: zone,
			capacityType: g.capacityType, imageID: image,
		})
		return res, nil
	}
	if len(other) > 0 {
		return res, fmt.Errorf("CreateFleet (%s): %w", g.capacityType, errors.Join(append(other, skipped...)...))
	}
	return res, errors.Join(skipped...)
}

// createFleet makes the launch templates and calls CreateFleet. A template or
// placement group deleted under a cached name (by garbage collection or by
// hand) is made again and the call retried once.
func (p *Provider) createFleet(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, g *offeringGroup, block bool, configs []*fleetConfig) (*ec2.CreateFleetOutput, error) {
	for attempt := 0; ; attempt++ {
		spent := p.spentFleets(claim, g)
		in := &ec2.CreateFleetInput{
			Type:                        ec2types.FleetTypeInstant,
			ClientToken:                 aws.String(fleetClientToken(claim, g, spent)),
			TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1)},
			TagSpecifications: []ec2types.TagSpecification{
				{ResourceType: ec2types.ResourceTypeInstance, Tags: p.instanceTags(claim, nc)},
				{ResourceType: ec2types.ResourceTypeFleet, Tags: p.instanceTags(claim, nc)},
			},
		}
		for _, cfg := range configs {
			data, err := p.launchTemplateData(claim, nc, g, block, cfg.efa)
			if err != nil {
				return nil, err
			}
			if cfg.template, err = p.ensureLaunchTemplate(ctx, claim, nc, data); err != nil {
				return nil, err
			}
			in.LaunchTemplateConfigs = append(in.LaunchTemplateConfigs, ec2types.FleetLaunchTemplateConfigRequest{
				LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String(cfg.template), Version: aws.String("$Latest")},
				Overrides:                   cfg.overrides,
			})
		}
		switch {
		case g.capacityType == v1.CapacityTypeSpot:
			// Price and pool depth together: the pools least likely to be
			// interrupted among the cheap ones. Every override is one the
			// solver accepted; its order still decides the groups.
			in.TargetCapacitySpecification.DefaultTargetCapacityType = ec2types.DefaultTargetCapacityTypeSpot
			in.SpotOptions = &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyPriceCapacityOptimized}
		case block:
			in.TargetCapacitySpecification.DefaultTargetCapacityType = ec2types.DefaultTargetCapacityTypeCapacityBlock
			in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyPrioritized}
		default:
			// Prioritized keeps the solver's order: cheapest first, with the
			// packing it planned.
			in.TargetCapacitySpecification.DefaultTargetCapacityType = ec2types.DefaultTargetCapacityTypeOnDemand
			in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyPrioritized}
		}
		out, err := p.opts.EC2.CreateFleet(ctx, in)
		if fleetOutcomeUnknown(err) {
			return nil, fmt.Errorf("%w: %w", errFleetOutcomeUnknown, err)
		}
		code := errorCode(err)
		if attempt == 0 && (code == codeLaunchTemplateNotFound || code == codeLaunchTemplateIDNotFound) {
			for _, cfg := range configs {
				p.forgetTemplate(cfg.template)
			}
			continue
		}
		if attempt == 0 && code == codePlacementGroupUnknown && claim.Spec.Placement != nil {
			p.mu.Lock()
			delete(p.placementGroups, p.placementGroupName(claim.Spec.Placement.Group))
			p.mu.Unlock()
			if _, err := p.ensurePlacementGroup(ctx, claim.Spec.Placement.Group); err != nil {
				return nil, err
			}
			continue
		}
		if err == nil && !launchedAny(out) {
			p.spendFleet(claim, g)
		}
		return out, err
	}
}

// errFleetOutcomeUnknown is wrapped when CreateFleet failed in a way that
// does not say whether EC2 launched the machine: a server error, a timeout or
// a connection lost after the request was sent.
var errFleetOutcomeUnknown = errors.New("CreateFleet outcome unknown")

// serverErrorCodes are EC2 error codes of failures on EC2's side, after
// which the request may or may not have been carried out.
var serverErrorCodes = map[string]bool{
	"InternalError": true, "InternalFailure": true, "ServiceUnavailable": true, "Unavailable": true,
}

// fleetOutcomeUnknown reports whether a failed CreateFleet may still have
// launched: anything but an error EC2 answered with a client-side code.
func fleetOutcomeUnknown(err error) bool {
	if err == nil {
		return false
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		return true // no answer: a timeout, a cancelled context, a broken connection
	}
	return apiErr.ErrorFault() == smithy.FaultServer || serverErrorCodes[apiErr.ErrorCode()]
}

func launchedAny(out *ec2.CreateFleetOutput) bool {
	for _, i := range out.Instances {
		if len(i.InstanceIds) > 0 {
			return true
		}
	}
	return false
}

// spentFleets is how many fleets of this claim and group answered without
// an instance.
func (p *Provider) spentFleets(claim *v1.NodeClaim, g *offeringGroup) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spentTokens[spentKey(claim, g)].n
}

// spendFleet records a fleet answered without an instance, so the next call
// gets a token of its own (forgotten after a day, long past any retry).
func (p *Provider) spendFleet(claim *v1.NodeClaim, g *offeringGroup) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if p.spentTokens == nil {
		p.spentTokens = map[string]spentToken{}
	}
	for k, t := range p.spentTokens {
		if now.Sub(t.at) > 24*time.Hour {
			delete(p.spentTokens, k)
		}
	}
	k := spentKey(claim, g)
	p.spentTokens[k] = spentToken{n: p.spentTokens[k].n + 1, at: now}
}

func spentKey(claim *v1.NodeClaim, g *offeringGroup) string {
	return string(claim.UID) + "/" + claim.Name + "/" + g.capacityType + "/" + g.reservationID
}

// wantsEFA is true when the claim's machine should get EFA interfaces: the
// node class allows them, and the claim joins a placement group (a training
// gang) or its pods ask for EFA devices.
func wantsEFA(nc *awsv1.EC2NodeClass, claim *v1.NodeClaim) bool {
	if nc.Spec.EFA == awsv1.EFADisabled {
		return false
	}
	if claim.Spec.Placement != nil {
		return true
	}
	q, ok := claim.Spec.Resources.Requests[ResourceEFA]
	return ok && !q.IsZero()
}

func overridesOf(r *ec2types.LaunchTemplateAndOverridesResponse) ec2types.FleetLaunchTemplateOverrides {
	if r == nil || r.Overrides == nil {
		return ec2types.FleetLaunchTemplateOverrides{}
	}
	return *r.Overrides
}

// fleetClientToken is stable for one claim and group, so a retried call
// returns the first call's instance; groups differ because EC2 rejects a
// reused token with different parameters. spent counts the group's fleets
// that launched nothing: EC2 would answer their token with the same failure,
// so each gets a new one.
func fleetClientToken(claim *v1.NodeClaim, g *offeringGroup, spent int) string {
	base := cloudprovider.ClientToken(claim.Name, string(claim.UID))
	key := base + "/" + g.capacityType + "/" + g.reservationID
	if spent > 0 {
		key += "/" + strconv.Itoa(spent)
	}
	sum := sha256.Sum256([]byte(key))
	suffix := "-" + hex.EncodeToString(sum[:])[:16]
	if len(base) > maxClientTokenLen-len(suffix) {
		base = base[:maxClientTokenLen-len(suffix)]
	}
	return base + suffix
}

// isCapacityBlock says whether a reservation is a Capacity Block, which EC2
// launches only with market type capacity-block. The provider's reservation
// list answers first; after a failed refresh has emptied it, the node
// class's status (resolved by its own controller) does. A reservation
// neither knows is an error, retried: taken for an ordinary reservation, a
// Capacity Block would be launched without its market type.
func (p *Provider) isCapacityBlock(nc *awsv1.EC2NodeClass, reservationID string) (bool, error) {
	if reservationID == "" {
		return false, nil
	}
	p.mu.Lock()
	for _, r := range p.reservations {
		if r.ID == reservationID {
			p.mu.Unlock()
			return r.Block, nil
		}
	}
	p.mu.Unlock()
	for _, r := range nc.Status.CapacityReservations {
		if r.ID == reservationID && r.Type != "" {
			return r.Type == string(ec2types.CapacityReservationTypeCapacityBlock), nil
		}
	}
	return false, fmt.Errorf("capacity reservation %s is in neither the reservation list nor EC2NodeClass %s's status: not launching into it without knowing whether it is a Capacity Block", reservationID, nc.Name)
}

// typeFacts are what launching needs to know about an instance type.
type typeFacts struct {
	arch      string
	variant   string // the image variant its accelerators need
	efa       int
	placement bool
	// known says the facts come from a catalog, not the amd64 defaults.
	known bool
}

func (p *Provider) typeFacts(instanceType string) typeFacts {
	f := typeFacts{arch: "amd64", variant: awsv1.VariantStandard}
	variant := func(manufacturer string) string {
		switch manufacturer {
		case "nvidia":
			return awsv1.VariantNVIDIA
		case "aws":
			return awsv1.VariantNeuron
		}
		return awsv1.VariantStandard
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if s, ok := p.shapes[instanceType]; ok {
		f.arch, f.efa, f.placement, f.known = s.Arch, s.EFA, s.Placement, true
		if s.GPU != nil {
			f.variant = variant(s.GPU.Manufacturer)
		}
		return f
	}
	if it, ok := p.static.Lookup(instanceType); ok {
		f.arch, f.placement, f.known = it.Labels[v1.LabelArch], it.Placement, true
		if q, ok := it.Capacity[ResourceEFA]; ok {
			f.efa = int(q.Value())
		}
		if it.GPU != nil {
			f.variant = variant(it.GPU.Manufacturer)
		}
	}
	return f
}

// amiFor picks the node class's image for a type: its architecture, with
// the NVIDIA driver for NVIDIA GPU types and the Neuron driver for Trainium
// and Inferentia. Alias images are Amazon's, whose variants are known, so a
// missing variant means no image; an image picked by id, name or tags may
// carry drivers its name does not show, so it is the fallback there.
func (p *Provider) amiFor(nc *awsv1.EC2NodeClass, instanceType string) (string, bool) {
	f := p.typeFacts(instanceType)
	fallback := ""
	for _, a := range nc.Status.AMIs {
		if a.Arch != "" && a.Arch != f.arch {
			continue
		}
		variant := a.Variant
		if variant == "" {
			variant = awsv1.VariantStandard
		}
		if variant == f.variant {
			return a.ID, true
		}
		if fallback == "" {
			fallback = a.ID
		}
	}
	if slices.ContainsFunc(nc.Spec.AMISelectorTerms, func(t awsv1.AMISelectorTerm) bool { return t.Alias != "" }) {
		return "", false
	}
	return fallback, fallback != ""
}

func (p *Provider) instanceTags(claim *v1.NodeClaim, nc *awsv1.EC2NodeClass) []ec2types.Tag {
	tags := map[string]string{}
	maps.Copy(tags, nc.Spec.Tags)
	tags[TagCluster] = p.opts.ClusterName
	tags[TagNodePool] = claim.Labels[v1.LabelNodePool]
	tags[TagNodeClaim] = claim.Name
	tags[TagNodeClass] = nc.Name
	tags[TagName] = claim.Name
	return toTags(tags)
}

func toTags(m map[string]string) []ec2types.Tag {
	out := make([]ec2types.Tag, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

// launchTemplateData is the template for one capacity group of a claim:
// image, network (with efa EFA interfaces when above zero), identity, disks,
// user data with the pool's labels and taints, and reservation targeting.
func (p *Provider) launchTemplateData(claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, g *offeringGroup, block bool, efa int) (*ec2types.RequestLaunchTemplateData, error) {
	labels := map[string]string{}
	for k, v := range claim.Labels {
		// Per claim, the claim's label would make one template per machine;
		// the kubelet does not start with a kubernetes.io label it may not
		// set. Registration puts both on the Node.
		if k != v1.LabelNodeClaim && kubelet.MaySetLabel(k) {
			labels[k] = v
		}
	}
	taints := v1.RegistrationTaints(claim.Spec.Taints, claim.Spec.StartupTaints)
	userData, err := renderUserData(nc.Family(), aws.ToString(nc.Spec.UserData), joinConfig{
		ClusterName: p.opts.ClusterName, Endpoint: p.opts.ClusterEndpoint, CABundle: p.opts.ClusterCABundle, CIDR: p.opts.ClusterCIDR,
		Labels: labels, Taints: taints, Kubelet: nc.Spec.Kubelet,
	})
	if err != nil {
		return nil, fmt.Errorf("EC2NodeClass %s spec.userData: %w", nc.Name, err)
	}
	bdms, err := blockDevices(nc)
	if err != nil {
		return nil, err
	}
	profile := nc.Status.InstanceProfile
	if profile == "" {
		profile = nc.Spec.InstanceProfile
	}
	// Volumes and interfaces carry the node class's tags too (cost
	// allocation, policies that refuse untagged volumes), under Stowage's.
	resourceTags := maps.Clone(nc.Spec.Tags)
	if resourceTags == nil {
		resourceTags = map[string]string{}
	}
	resourceTags[TagCluster], resourceTags[TagNodeClass] = p.opts.ClusterName, nc.Name
	data := &ec2types.RequestLaunchTemplateData{
		ImageId:             aws.String(nc.Status.AMIs[0].ID),
		UserData:            aws.String(userData),
		BlockDeviceMappings: bdms,
		MetadataOptions:     metadataOptions(nc.Spec.MetadataOptions),
		TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{
			{ResourceType: ec2types.ResourceTypeVolume, Tags: toTags(resourceTags)},
			{ResourceType: ec2types.ResourceTypeNetworkInterface, Tags: toTags(resourceTags)},
		},
	}
	if efa > 0 {
		data.NetworkInterfaces = efaInterfaces(sgIDs(nc), efa)
	} else {
		data.SecurityGroupIds = sgIDs(nc)
	}
	if profile != "" {
		data.IamInstanceProfile = &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(profile)}
	}
	switch {
	case g.reservationID != "":
		data.CapacityReservationSpecification = &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationTarget: &ec2types.CapacityReservationTarget{CapacityReservationId: aws.String(g.reservationID)},
		}
		if block {
			data.InstanceMarketOptions = &ec2types.LaunchTemplateInstanceMarketOptionsRequest{MarketType: ec2types.MarketTypeCapacityBlock}
		}
	case g.capacityType == v1.CapacityTypeOnDemand:
		// An on-demand machine must not quietly use an open reservation the
		// node class did not select: another team may be counting on it.
		data.CapacityReservationSpecification = &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationPreference: ec2types.CapacityReservationPreferenceNone,
		}
	}
	return data, nil
}

// efaInterfaces lays out EFA the way EC2 recommends for types with several
// network cards: an ENA interface as the primary (card 0, device 0) for IP
// traffic, an EFA-only interface beside it on card 0 (device 1), and one
// EFA-only interface on each further card (device 0). EFA-only interfaces
// take no IP address, so a 32-card p5 does not drain the subnet.
func efaInterfaces(groups []string, efa int) []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest {
	out := []ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{{
		NetworkCardIndex: aws.Int32(0), DeviceIndex: aws.Int32(0), InterfaceType: aws.String("interface"), Groups: groups,
	}}
	for card := range efa {
		device := int32(0)
		if card == 0 {
			device = 1
		}
		out = append(out, ec2types.LaunchTemplateInstanceNetworkInterfaceSpecificationRequest{
			NetworkCardIndex: aws.Int32(int32(card)), DeviceIndex: aws.Int32(device),
			InterfaceType: aws.String(string(ec2types.NetworkInterfaceTypeEfaOnly)), Groups: groups,
		})
	}
	return out
}

// sgIDs are the node class's security groups, sorted.
func sgIDs(nc *awsv1.EC2NodeClass) []string {
	out := make([]string, len(nc.Status.SecurityGroups))
	for i, sg := range nc.Status.SecurityGroups {
		out[i] = sg.ID
	}
	slices.Sort(out)
	return out
}

func metadataOptions(m *awsv1.MetadataOptions) *ec2types.LaunchTemplateInstanceMetadataOptionsRequest {
	// IMDSv2 with one hop unless the node class says otherwise: pods must not
	// reach the node's credentials.
	out := &ec2types.LaunchTemplateInstanceMetadataOptionsRequest{
		HttpEndpoint:            ec2types.LaunchTemplateInstanceMetadataEndpointStateEnabled,
		HttpTokens:              ec2types.LaunchTemplateHttpTokensStateRequired,
		HttpPutResponseHopLimit: aws.Int32(1),
	}
	if m == nil {
		return out
	}
	if m.HTTPEndpoint != "" {
		out.HttpEndpoint = ec2types.LaunchTemplateInstanceMetadataEndpointState(m.HTTPEndpoint)
	}
	if m.HTTPTokens != "" {
		out.HttpTokens = ec2types.LaunchTemplateHttpTokensState(m.HTTPTokens)
	}
	if m.HTTPPutResponseHopLimit != nil {
		out.HttpPutResponseHopLimit = m.HTTPPutResponseHopLimit
	}
	return out
}

func blockDevices(nc *awsv1.EC2NodeClass) ([]ec2types.LaunchTemplateBlockDeviceMappingRequest, error) {
	in := volumes(nc)
	out := make([]ec2types.LaunchTemplateBlockDeviceMappingRequest, 0, len(in))
	for i, b := range in {
		q, err := resource.ParseQuantity(b.EBS.VolumeSize)
		if err != nil {
			return nil, fmt.Errorf("EC2NodeClass %s spec.blockDeviceMappings[%d].ebs.volumeSize %q: %w", nc.Name, i, b.EBS.VolumeSize, err)
		}
		gib := (q.Value() + (1<<30 - 1)) >> 30
		vt := b.EBS.VolumeType
		if vt == "" {
			vt = "gp3"
		}
		out = append(out, ec2types.LaunchTemplateBlockDeviceMappingRequest{
			DeviceName: aws.String(b.DeviceName),
			Ebs: &ec2types.LaunchTemplateEbsBlockDeviceRequest{
				VolumeSize:          aws.Int32(int32(gib)),
				VolumeType:          ec2types.VolumeType(vt),
				Iops:                b.EBS.IOPS,
				Throughput:          b.EBS.Throughput,
				Encrypted:           orTrue(b.EBS.Encrypted),
				DeleteOnTermination: orTrue(b.EBS.DeleteOnTermination),
				KmsKeyId:            nonEmpty(b.EBS.KMSKeyID),
				SnapshotId:          nonEmpty(b.EBS.SnapshotID),
			},
		})
	}
	return out, nil
}

func orTrue(b *bool) *bool {
	if b == nil {
		return aws.Bool(true)
	}
	return b
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return aws.String(s)
}

// launched is what a CreateFleet answer says about the new machine.
type launched struct {
	id, instanceType, zone, capacityType, imageID string
}

// launchedClaim is the claim with status filled from a fresh launch.
func (p *Provider) launchedClaim(claim *v1.NodeClaim, l launched) *v1.NodeClaim {
	out := claim.DeepCopy()
	out.Status.ProviderID = providerID(l.zone, l.id)
	out.Status.InstanceType = l.instanceType
	out.Status.Zone = l.zone
	out.Status.CapacityType = l.capacityType
	out.Status.ImageID = l.imageID
	out.Status.PricePerHour = catalog.PlannedPrice(claim, l.instanceType, l.zone, l.capacityType)
	if out.Status.PricePerHour == "" {
		if price, ok := p.price(l.instanceType, l.zone, l.capacityType); ok {
			out.Status.PricePerHour = v1.FormatPrice(price)
		}
	}
	catalog.FillCapacity(out, l.instanceType, p.lookupType(l.instanceType))
	return out
}
