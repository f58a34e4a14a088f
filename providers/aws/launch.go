package aws

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
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

// defaultRootVolume is the root volume when a node class sets none: GPU
// images, container layers and model weights outgrow the AMI default.
var defaultRootVolume = awsv1.BlockDeviceMapping{
	DeviceName: "/dev/xvda",
	EBS:        awsv1.BlockDevice{VolumeSize: "100Gi", VolumeType: "gp3", Encrypted: aws.Bool(true), DeleteOnTermination: aws.Bool(true)},
	RootVolume: true,
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
	if err := launchable(nc); err != nil {
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

// launchable says what a node class still lacks before it can launch.
func launchable(nc *awsv1.EC2NodeClass) error {
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

func (p *Provider) launchGroup(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, g *offeringGroup) (groupResult, error) {
	var res groupResult
	if g.capacityType == v1.CapacityTypeReserved && g.reservationID == "" {
		return res, fmt.Errorf("reserved offerings need a reservationID (offering %s)", cloudprovider.ChoiceID(g.choices[0]))
	}
	block := p.isCapacityBlock(g.reservationID)
	lt, err := p.ensureLaunchTemplate(ctx, claim, nc, g.reservationID, block)
	if err != nil {
		return res, err
	}
	subnetZone := map[string]string{}
	var overrides []ec2types.FleetLaunchTemplateOverridesRequest
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
			skipped = append(skipped, fmt.Errorf("EC2NodeClass %s has no image for %s (architecture)", nc.Name, c.InstanceType))
			continue
		}
		tried = append(tried, id)
		for _, s := range nc.Status.Subnets {
			if s.Zone != c.Zone {
				continue
			}
			subnetZone[s.ID] = s.Zone
			overrides = append(overrides, ec2types.FleetLaunchTemplateOverridesRequest{
				InstanceType: ec2types.InstanceType(c.InstanceType),
				SubnetId:     aws.String(s.ID),
				ImageId:      aws.String(ami),
				Priority:     aws.Float64(float64(g.priorities[i])),
			})
		}
	}
	if len(overrides) == 0 {
		return res, errors.Join(skipped...)
	}
	in := &ec2.CreateFleetInput{
		Type:        ec2types.FleetTypeInstant,
		ClientToken: aws.String(fleetClientToken(claim, g)),
		LaunchTemplateConfigs: []ec2types.FleetLaunchTemplateConfigRequest{{
			LaunchTemplateSpecification: &ec2types.FleetLaunchTemplateSpecificationRequest{LaunchTemplateName: aws.String(lt), Version: aws.String("$Latest")},
			Overrides:                   overrides,
		}},
		TargetCapacitySpecification: &ec2types.TargetCapacitySpecificationRequest{TotalTargetCapacity: aws.Int32(1)},
		TagSpecifications: []ec2types.TagSpecification{
			{ResourceType: ec2types.ResourceTypeInstance, Tags: p.instanceTags(claim, nc)},
			{ResourceType: ec2types.ResourceTypeFleet, Tags: p.instanceTags(claim, nc)},
		},
	}
	switch {
	case g.capacityType == v1.CapacityTypeSpot:
		in.TargetCapacitySpecification.DefaultTargetCapacityType = ec2types.DefaultTargetCapacityTypeSpot
		in.SpotOptions = &ec2types.SpotOptionsRequest{AllocationStrategy: ec2types.SpotAllocationStrategyCapacityOptimizedPrioritized}
	case block:
		in.TargetCapacitySpecification.DefaultTargetCapacityType = ec2types.DefaultTargetCapacityTypeCapacityBlock
		in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyPrioritized}
	default:
		in.TargetCapacitySpecification.DefaultTargetCapacityType = ec2types.DefaultTargetCapacityTypeOnDemand
		in.OnDemandOptions = &ec2types.OnDemandOptionsRequest{AllocationStrategy: ec2types.FleetOnDemandAllocationStrategyPrioritized}
	}
	out, err := p.opts.EC2.CreateFleet(ctx, in)
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
			id := cloudprovider.OfferingID{InstanceType: string(ov.InstanceType), Zone: zone, CapacityType: g.capacityType}
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
		res.claim = p.launchedClaim(claim, launched{
			id: fi.InstanceIds[0], instanceType: instanceType, zone: zone,
			capacityType: g.capacityType, imageID: aws.ToString(ov.ImageId),
		})
		return res, nil
	}
	if len(other) > 0 {
		return res, fmt.Errorf("CreateFleet (%s): %w", g.capacityType, errors.Join(append(other, skipped...)...))
	}
	return res, errors.Join(skipped...)
}

func overridesOf(r *ec2types.LaunchTemplateAndOverridesResponse) ec2types.FleetLaunchTemplateOverrides {
	if r == nil || r.Overrides == nil {
		return ec2types.FleetLaunchTemplateOverrides{}
	}
	return *r.Overrides
}

// fleetClientToken is stable for one claim and group, so a retried call
// returns the first call's instance; groups differ because EC2 rejects a
// reused token with different parameters.
func fleetClientToken(claim *v1.NodeClaim, g *offeringGroup) string {
	base := cloudprovider.ClientToken(claim.Name, string(claim.UID))
	key := base + "/" + g.capacityType + "/" + g.reservationID
	sum := sha256.Sum256([]byte(key))
	suffix := "-" + hex.EncodeToString(sum[:])[:16]
	if len(base) > maxClientTokenLen-len(suffix) {
		base = base[:maxClientTokenLen-len(suffix)]
	}
	return base + suffix
}

func (p *Provider) isCapacityBlock(reservationID string) bool {
	if reservationID == "" {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.reservations {
		if r.ID == reservationID {
			return r.Block
		}
	}
	return false
}

// amiFor picks the node class's image for a type: matching architecture,
// and with the NVIDIA driver exactly when the type has NVIDIA GPUs; an image
// of the right architecture is the fallback.
func (p *Provider) amiFor(nc *awsv1.EC2NodeClass, instanceType string) (string, bool) {
	arch, nvidia := "amd64", false
	p.mu.Lock()
	if s, ok := p.shapes[instanceType]; ok {
		arch = s.Arch
		nvidia = s.GPU != nil && s.GPU.Manufacturer == "nvidia"
	} else if p.staticCatalog != nil {
		for _, it := range p.staticCatalog.InstanceTypes {
			if it.Name == instanceType {
				arch = it.Labels[v1.LabelArch]
				nvidia = it.GPU != nil && it.GPU.Manufacturer == "nvidia"
			}
		}
	}
	p.mu.Unlock()
	fallback := ""
	for _, a := range nc.Status.AMIs {
		if a.Arch != "" && a.Arch != arch {
			continue
		}
		if a.NVIDIA == nvidia {
			return a.ID, true
		}
		if fallback == "" {
			fallback = a.ID
		}
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

// ensureLaunchTemplate returns the name of the launch template for this node
// class, pool and reservation, creating it if needed. The name carries a hash
// of the template's content, so a changed node class gets a new template and
// running fleets are never edited under them.
func (p *Provider) ensureLaunchTemplate(ctx context.Context, claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, reservationID string, block bool) (string, error) {
	data, err := p.launchTemplateData(claim, nc, reservationID, block)
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return "", fmt.Errorf("hashing launch template: %w", err)
	}
	sum := sha256.Sum256(raw)
	name := fmt.Sprintf("stowage/%s/%s", p.opts.ClusterName, hex.EncodeToString(sum[:])[:20])
	p.mu.Lock()
	known := p.templates[name]
	p.mu.Unlock()
	if known {
		return name, nil
	}
	_, err = p.opts.EC2.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{LaunchTemplateNames: []string{name}})
	switch code := errorCode(err); {
	case err == nil:
	case code == codeLaunchTemplateNotFound:
		_, err = p.opts.EC2.CreateLaunchTemplate(ctx, &ec2.CreateLaunchTemplateInput{
			LaunchTemplateName: aws.String(name),
			LaunchTemplateData: data,
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeLaunchTemplate, Tags: toTags(map[string]string{
				TagCluster: p.opts.ClusterName, TagNodeClass: nc.Name, TagNodePool: claim.Labels[v1.LabelNodePool],
			})}},
		})
		if err != nil && errorCode(err) != codeLaunchTemplateAlreadyExists {
			return "", fmt.Errorf("creating launch template %s: %w", name, err)
		}
	default:
		return "", fmt.Errorf("describing launch template %s: %w", name, err)
	}
	p.mu.Lock()
	p.templates[name] = true
	p.mu.Unlock()
	return name, nil
}

func (p *Provider) launchTemplateData(claim *v1.NodeClaim, nc *awsv1.EC2NodeClass, reservationID string, block bool) (*ec2types.RequestLaunchTemplateData, error) {
	labels := map[string]string{}
	for k, v := range claim.Labels {
		if k != v1.LabelNodeClaim { // per claim: would make one template per machine
			labels[k] = v
		}
	}
	taints := append([]corev1.Taint{{Key: v1.UnregisteredTaintKey, Effect: corev1.TaintEffectNoExecute}}, claim.Spec.Taints...)
	taints = append(taints, claim.Spec.StartupTaints...)
	userData, err := renderUserData(familyOf(nc), aws.ToString(nc.Spec.UserData), joinConfig{
		ClusterName: p.opts.ClusterName, Endpoint: p.opts.ClusterEndpoint, CABundle: p.opts.ClusterCABundle, CIDR: p.opts.ClusterCIDR,
		Labels: labels, Taints: taints,
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
	data := &ec2types.RequestLaunchTemplateData{
		ImageId:             aws.String(nc.Status.AMIs[0].ID),
		SecurityGroupIds:    sgIDs(nc),
		UserData:            aws.String(userData),
		BlockDeviceMappings: bdms,
		MetadataOptions:     metadataOptions(nc.Spec.MetadataOptions),
		TagSpecifications: []ec2types.LaunchTemplateTagSpecificationRequest{
			{ResourceType: ec2types.ResourceTypeVolume, Tags: toTags(map[string]string{TagCluster: p.opts.ClusterName, TagNodeClass: nc.Name})},
		},
	}
	if profile != "" {
		data.IamInstanceProfile = &ec2types.LaunchTemplateIamInstanceProfileSpecificationRequest{Name: aws.String(profile)}
	}
	if reservationID != "" {
		data.CapacityReservationSpecification = &ec2types.LaunchTemplateCapacityReservationSpecificationRequest{
			CapacityReservationTarget: &ec2types.CapacityReservationTarget{CapacityReservationId: aws.String(reservationID)},
		}
		if block {
			data.InstanceMarketOptions = &ec2types.LaunchTemplateInstanceMarketOptionsRequest{MarketType: ec2types.MarketTypeCapacityBlock}
		}
	}
	return data, nil
}

func sgIDs(nc *awsv1.EC2NodeClass) []string {
	out := make([]string, len(nc.Status.SecurityGroups))
	for i, sg := range nc.Status.SecurityGroups {
		out[i] = sg.ID
	}
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
	in := nc.Spec.BlockDeviceMappings
	if len(in) == 0 {
		in = []awsv1.BlockDeviceMapping{defaultRootVolume}
	}
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
	for _, c := range claim.Spec.Offerings {
		if c.InstanceType == l.instanceType && c.Zone == l.zone && c.CapacityType == l.capacityType {
			out.Status.PricePerHour = c.PricePerHour
		}
	}
	if out.Status.PricePerHour == "" {
		if price, ok := p.price(l.instanceType, l.zone, l.capacityType); ok {
			out.Status.PricePerHour = FormatPrice(price)
		}
	}
	p.fillCapacity(out, l.instanceType)
	return out
}
