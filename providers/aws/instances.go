package aws

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

const providerIDPrefix = "aws:///"

// liveStates are the instance states List considers. Terminated instances
// linger in DescribeInstances for an hour and are gone for us; shutting-down
// ones are on their way there: listing them would have garbage collection
// take a machine termination just ended for a leaked one and terminate it
// again.
var liveStates = []string{"pending", "running", "stopping", "stopped"}

// ErrInvalidProviderID is wrapped when a providerID is not aws:///<zone>/<id>.
var ErrInvalidProviderID = errors.New("invalid aws providerID")

func providerID(zone, instanceID string) string {
	return providerIDPrefix + zone + "/" + instanceID
}

// ParseProviderID returns the instance ID of aws:///<zone>/<instance-id>.
func ParseProviderID(id string) (string, error) {
	rest, ok := strings.CutPrefix(id, providerIDPrefix)
	if !ok {
		return "", fmt.Errorf("%w %q: want %s<zone>/<instance-id>", ErrInvalidProviderID, id, providerIDPrefix)
	}
	_, instance, ok := strings.Cut(rest, "/")
	if !ok || !strings.HasPrefix(instance, "i-") || strings.Contains(instance, "/") {
		return "", fmt.Errorf("%w %q: want %s<zone>/<instance-id>", ErrInvalidProviderID, id, providerIDPrefix)
	}
	return instance, nil
}

// Delete implements cloudprovider.CloudProvider. A claim without a
// providerID may still have a machine (launched, then the status write was
// lost): it is found by its tag.
func (p *Provider) Delete(ctx context.Context, claim *v1.NodeClaim) error {
	if claim.Status.ProviderID == "" {
		inst, err := p.findClaimInstance(ctx, claim.Name)
		if err != nil {
			return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
		}
		if inst == nil {
			return cloudprovider.NewNotFoundError("nodeclaim " + claim.Name)
		}
		claim = p.claimFromInstance(inst, claim)
	}
	id, err := ParseProviderID(claim.Status.ProviderID)
	if err != nil {
		return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
	}
	// The IAM policy lets the controller terminate only machines tagged with
	// its cluster; the same check here keeps a claim that names another
	// cluster's machine (a copied Node, a hand-edited status) from trying,
	// even under a broader policy.
	if err := p.checkOwned(ctx, id); err != nil {
		if cloudprovider.IsNotFound(err) {
			return cloudprovider.NewNotFoundError(claim.Status.ProviderID)
		}
		return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
	}
	out, err := p.opts.EC2.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if errorCode(err) == codeInstanceNotFound {
			return cloudprovider.NewNotFoundError(claim.Status.ProviderID)
		}
		return fmt.Errorf("terminating %s for nodeclaim %s: %w", id, claim.Name, err)
	}
	for _, c := range out.TerminatingInstances {
		if aws.ToString(c.InstanceId) == id && c.PreviousState != nil && c.PreviousState.Name == ec2types.InstanceStateNameTerminated {
			return cloudprovider.NewNotFoundError(claim.Status.ProviderID)
		}
	}
	return nil
}

// ErrForeignInstance is wrapped when a claim names an instance this
// cluster's Stowage did not launch.
var ErrForeignInstance = errors.New("instance belongs to another cluster")

// checkOwned returns nil when the instance carries this cluster's tag, a
// NotFoundError when it is gone, and ErrForeignInstance otherwise.
func (p *Provider) checkOwned(ctx context.Context, id string) error {
	out, err := p.opts.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if errorCode(err) == codeInstanceNotFound {
			return cloudprovider.NewNotFoundError(id)
		}
		return fmt.Errorf("describing %s: %w", id, err)
	}
	inst := firstInstance(out, id)
	if inst == nil || inst.State != nil && inst.State.Name == ec2types.InstanceStateNameTerminated {
		return cloudprovider.NewNotFoundError(id)
	}
	if owner := tagValue(inst.Tags, TagCluster); owner != p.opts.ClusterName {
		return fmt.Errorf("%w: %s is tagged %s=%q, this is cluster %q; not terminating it", ErrForeignInstance, id, TagCluster, owner, p.opts.ClusterName)
	}
	return nil
}

// Get implements cloudprovider.CloudProvider.
func (p *Provider) Get(ctx context.Context, pid string) (*v1.NodeClaim, error) {
	id, err := ParseProviderID(pid)
	if err != nil {
		return nil, err
	}
	out, err := p.opts.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if errorCode(err) == codeInstanceNotFound {
			return nil, cloudprovider.NewNotFoundError(pid)
		}
		return nil, fmt.Errorf("describing instance %s: %w", id, err)
	}
	for _, r := range out.Reservations {
		for i := range r.Instances {
			inst := &r.Instances[i]
			if aws.ToString(inst.InstanceId) != id {
				continue
			}
			if inst.State != nil && inst.State.Name == ec2types.InstanceStateNameTerminated {
				return nil, cloudprovider.NewNotFoundError(pid)
			}
			return p.claimFromInstance(inst, nil), nil
		}
	}
	return nil, cloudprovider.NewNotFoundError(pid)
}

// List implements cloudprovider.CloudProvider: every live instance tagged
// with this cluster's name.
func (p *Provider) List(ctx context.Context) ([]*v1.NodeClaim, error) {
	insts, err := p.describeTagged(ctx, liveStates, map[string]string{TagCluster: p.opts.ClusterName})
	if err != nil {
		return nil, fmt.Errorf("listing instances of cluster %s: %w", p.opts.ClusterName, err)
	}
	out := make([]*v1.NodeClaim, 0, len(insts))
	for i := range insts {
		out = append(out, p.claimFromInstance(&insts[i], nil))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Status.ProviderID < out[j].Status.ProviderID })
	return out, nil
}

// findClaimInstance returns the live instance an earlier launch made for the
// claim, or nil.
func (p *Provider) findClaimInstance(ctx context.Context, claimName string) (*ec2types.Instance, error) {
	// Only pending and running: a stopping or shutting-down instance with the
	// name belongs to an earlier claim of the same name that is going away.
	insts, err := p.describeTagged(ctx, []string{"pending", "running"}, map[string]string{TagCluster: p.opts.ClusterName, TagNodeClaim: claimName})
	if err != nil {
		return nil, fmt.Errorf("looking for an earlier instance: %w", err)
	}
	if len(insts) == 0 {
		return nil, nil
	}
	return &insts[0], nil
}

func (p *Provider) describeTagged(ctx context.Context, states []string, tags map[string]string) ([]ec2types.Instance, error) {
	filters := []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: states}}
	for k, v := range tags {
		filters = append(filters, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
	}
	var out []ec2types.Instance
	pages := ec2.NewDescribeInstancesPaginator(p.opts.EC2, &ec2.DescribeInstancesInput{Filters: filters})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Reservations {
			out = append(out, r.Instances...)
		}
	}
	return out, nil
}

// claimFromInstance describes an instance as a NodeClaim. With a claim, that
// claim is copied and its status filled; otherwise a claim named by the
// instance's tag is made up, as List and Get return.
func (p *Provider) claimFromInstance(inst *ec2types.Instance, claim *v1.NodeClaim) *v1.NodeClaim {
	tags := map[string]string{}
	for _, t := range inst.Tags {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	zone := ""
	if inst.Placement != nil {
		zone = aws.ToString(inst.Placement.AvailabilityZone)
	}
	l := launched{
		id: aws.ToString(inst.InstanceId), instanceType: string(inst.InstanceType), zone: zone,
		capacityType: capacityTypeOf(inst), imageID: aws.ToString(inst.ImageId),
	}
	if claim != nil {
		return p.launchedClaim(claim, l)
	}
	out := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{
		Name:   tags[TagNodeClaim],
		Labels: map[string]string{v1.LabelNodeClaim: tags[TagNodeClaim]},
	}}
	if np := tags[TagNodePool]; np != "" {
		out.Labels[v1.LabelNodePool] = np
	}
	if inst.LaunchTime != nil {
		out.CreationTimestamp = metav1.NewTime(*inst.LaunchTime)
	}
	return p.launchedClaim(out, l)
}

// lookupType finds a type in the live catalog, else the built-in one.
func (p *Provider) lookupType(name string) *cloudprovider.InstanceType {
	p.mu.Lock()
	defer p.mu.Unlock()
	return catalog.Find(name, p.types, p.static.Catalog())
}

// price is the current hourly price of one pool, as InstanceTypes offers it.
func (p *Provider) price(instanceType, zone, capacityType string) (float64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	od, ok := p.onDemand[instanceType]
	if !ok {
		if o, found := pricing.LookupOffering(p.static.Catalog(), cloudprovider.OfferingID{InstanceType: instanceType, Zone: zone, CapacityType: v1.CapacityTypeOnDemand}); found {
			od, ok = o.PricePerHour, true
		}
	}
	switch capacityType {
	case v1.CapacityTypeReserved:
		return od / reservedPriceDivisor, ok
	case v1.CapacityTypeSpot:
		if sp, found := p.spot[spotKey{instanceType, zone}]; found {
			return sp, true
		}
		if o, found := pricing.LookupOffering(p.static.Catalog(), cloudprovider.OfferingID{InstanceType: instanceType, Zone: zone, CapacityType: v1.CapacityTypeSpot}); found {
			return o.PricePerHour, true
		}
		return 0, false
	}
	return od, ok
}
