package aws

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// TagPlacementGroup names the NodeClaim placement group a cluster placement
// group was made for.
const TagPlacementGroup = v1.Group + "/placement-group"

// PlacementGroupGrace keeps a new placement group at least this long even
// with no claim naming it, so a gang whose claims are still being written is
// never left without its group.
const PlacementGroupGrace = 10 * time.Minute

// HonoursPlacement implements cloudprovider.PlacementHonourer: claims with
// spec.placement.group launch into one cluster placement group.
func (p *Provider) HonoursPlacement() bool { return true }

// placementGroupName is the EC2 cluster placement group of a claim group.
// Cluster names and groups are DNS labels, so the name is too.
func (p *Provider) placementGroupName(group string) string {
	return "stowage-" + p.opts.ClusterName + "-" + group
}

// ensurePlacementGroup creates the cluster placement group on first use,
// tagged so it is found and deleted once no claim needs it.
func (p *Provider) ensurePlacementGroup(ctx context.Context, group string) (string, error) {
	name := p.placementGroupName(group)
	p.mu.Lock()
	_, known := p.placementGroups[name]
	p.mu.Unlock()
	if known {
		return name, nil
	}
	_, err := p.opts.EC2.CreatePlacementGroup(ctx, &ec2.CreatePlacementGroupInput{
		GroupName: aws.String(name),
		Strategy:  ec2types.PlacementStrategyCluster,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypePlacementGroup, Tags: toTags(map[string]string{
			TagCluster: p.opts.ClusterName, TagPlacementGroup: group,
		})}},
	})
	if err != nil && errorCode(err) != codePlacementGroupDuplicate {
		return "", fmt.Errorf("creating cluster placement group %s: %w", name, err)
	}
	p.mu.Lock()
	p.placementGroups[name] = p.clock.Now()
	p.mu.Unlock()
	return name, nil
}

// CollectPlacementGroups deletes the cluster's placement groups that no
// NodeClaim names any more. EC2 refuses to delete a group with instances in
// it, which keeps a group whose claims are gone but machines are not.
func (p *Provider) CollectPlacementGroups(ctx context.Context) error {
	if p.opts.Kube == nil {
		return nil
	}
	out, err := p.opts.EC2.DescribePlacementGroups(ctx, &ec2.DescribePlacementGroupsInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + TagCluster), Values: []string{p.opts.ClusterName}},
	}})
	if err != nil {
		return fmt.Errorf("listing placement groups of cluster %s: %w", p.opts.ClusterName, err)
	}
	claims := &v1.NodeClaimList{}
	if err := p.opts.Kube.List(ctx, claims); err != nil {
		return fmt.Errorf("listing nodeclaims: %w", err)
	}
	wanted := map[string]bool{}
	for _, c := range claims.Items {
		if c.Spec.Placement != nil {
			wanted[p.placementGroupName(c.Spec.Placement.Group)] = true
		}
	}
	now := p.clock.Now()
	var errs []error
	for _, pg := range out.PlacementGroups {
		name := aws.ToString(pg.GroupName)
		p.mu.Lock()
		first, seen := p.placementGroups[name]
		if !seen {
			// Made before a restart: the grace starts now.
			first = now
			p.placementGroups[name] = now
		}
		p.mu.Unlock()
		if wanted[name] || now.Sub(first) < PlacementGroupGrace {
			continue
		}
		_, err := p.opts.EC2.DeletePlacementGroup(ctx, &ec2.DeletePlacementGroupInput{GroupName: aws.String(name)})
		switch code := errorCode(err); {
		case err == nil, code == codePlacementGroupUnknown:
			log.FromContext(ctx).WithName(Name).Info("deleted unused placement group", "placementGroup", name)
			p.mu.Lock()
			delete(p.placementGroups, name)
			p.mu.Unlock()
		case code == codePlacementGroupInUse:
			// Machines are still in it; try again next pass.
		default:
			errs = append(errs, fmt.Errorf("deleting placement group %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
