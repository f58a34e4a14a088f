package nodeclass

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// EC2API is exactly the EC2 calls the controller makes. *ec2.Client implements it.
type EC2API interface {
	DescribeSubnets(context.Context, *ec2.DescribeSubnetsInput, ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
	DescribeSecurityGroups(context.Context, *ec2.DescribeSecurityGroupsInput, ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error)
	DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
	DescribeCapacityReservations(context.Context, *ec2.DescribeCapacityReservationsInput, ...func(*ec2.Options)) (*ec2.DescribeCapacityReservationsOutput, error)
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

var _ EC2API = (*ec2.Client)(nil)

// tagFilters turns a tag selector into EC2 filters; "*" matches any value.
func tagFilters(tags map[string]string) []ec2types.Filter {
	out := make([]ec2types.Filter, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if v := tags[k]; v == "*" {
			out = append(out, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{k}})
		} else {
			out = append(out, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
		}
	}
	return out
}

// describeTerm renders a selector term for condition messages.
func describeTerm(id string, tags map[string]string) string {
	if id != "" {
		return "id " + id
	}
	parts := make([]string, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return "tags {" + strings.Join(parts, ", ") + "}"
}

func resolveSubnets(ctx context.Context, api EC2API, terms []awsv1.SelectorTerm) ([]awsv1.Subnet, error) {
	seen := map[string]awsv1.Subnet{}
	for i, t := range terms {
		in := &ec2.DescribeSubnetsInput{Filters: tagFilters(t.Tags)}
		if t.ID != "" {
			in = &ec2.DescribeSubnetsInput{SubnetIds: []string{t.ID}}
		}
		pages := ec2.NewDescribeSubnetsPaginator(api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("spec.subnetSelectorTerms[%d] (%s): describing subnets: %w", i, describeTerm(t.ID, t.Tags), err)
			}
			for _, s := range page.Subnets {
				seen[aws.ToString(s.SubnetId)] = awsv1.Subnet{ID: aws.ToString(s.SubnetId), Zone: aws.ToString(s.AvailabilityZone), ZoneID: aws.ToString(s.AvailabilityZoneId)}
			}
		}
	}
	out := slices.Collect(maps.Values(seen))
	sort.Slice(out, func(i, j int) bool {
		if out[i].Zone != out[j].Zone {
			return out[i].Zone < out[j].Zone
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func resolveSecurityGroups(ctx context.Context, api EC2API, terms []awsv1.SelectorTerm) ([]ec2types.SecurityGroup, error) {
	seen := map[string]ec2types.SecurityGroup{}
	for i, t := range terms {
		in := &ec2.DescribeSecurityGroupsInput{Filters: tagFilters(t.Tags)}
		if t.ID != "" {
			in = &ec2.DescribeSecurityGroupsInput{GroupIds: []string{t.ID}}
		}
		pages := ec2.NewDescribeSecurityGroupsPaginator(api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("spec.securityGroupSelectorTerms[%d] (%s): describing security groups: %w", i, describeTerm(t.ID, t.Tags), err)
			}
			for _, g := range page.SecurityGroups {
				seen[aws.ToString(g.GroupId)] = g
			}
		}
	}
	out := slices.Collect(maps.Values(seen))
	sort.Slice(out, func(i, j int) bool { return aws.ToString(out[i].GroupId) < aws.ToString(out[j].GroupId) })
	return out, nil
}

// efaReady reports whether one of the groups allows all traffic to and from
// itself in both directions, which EFA's OS-bypass traffic needs; the message
// says which group does, or what rule is missing.
func efaReady(groups []ec2types.SecurityGroup) (bool, string) {
	selfAll := func(g ec2types.SecurityGroup, perms []ec2types.IpPermission) bool {
		for _, p := range perms {
			if aws.ToString(p.IpProtocol) != "-1" {
				continue
			}
			for _, pair := range p.UserIdGroupPairs {
				if aws.ToString(pair.GroupId) == aws.ToString(g.GroupId) {
					return true
				}
			}
		}
		return false
	}
	for _, g := range groups {
		if selfAll(g, g.IpPermissions) && selfAll(g, g.IpPermissionsEgress) {
			return true, "security group " + aws.ToString(g.GroupId) + " allows all traffic to and from itself"
		}
	}
	ids := make([]string, len(groups))
	for i, g := range groups {
		ids[i] = aws.ToString(g.GroupId)
	}
	return false, fmt.Sprintf("none of %v allows all traffic (protocol -1) inbound and outbound from itself; "+
		"EFA interfaces launch but their traffic is dropped (docs/install-aws.md, EFA)", ids)
}

// resolveReservations returns the active reservations the terms select.
func resolveReservations(ctx context.Context, api EC2API, terms []awsv1.CapacityReservationSelectorTerm) ([]awsv1.CapacityReservation, error) {
	seen := map[string]awsv1.CapacityReservation{}
	active := ec2types.Filter{Name: aws.String("state"), Values: []string{string(ec2types.CapacityReservationStateActive)}}
	for i, t := range terms {
		in := &ec2.DescribeCapacityReservationsInput{Filters: append([]ec2types.Filter{active}, tagFilters(t.Tags)...)}
		if t.ID != "" {
			in = &ec2.DescribeCapacityReservationsInput{CapacityReservationIds: []string{t.ID}, Filters: []ec2types.Filter{active}}
		}
		if t.OwnerID != "" {
			in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("owner-id"), Values: []string{t.OwnerID}})
		}
		pages := ec2.NewDescribeCapacityReservationsPaginator(api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("spec.capacityReservationSelectorTerms[%d] (%s): describing capacity reservations: %w", i, describeTerm(t.ID, t.Tags), err)
			}
			for _, cr := range page.CapacityReservations {
				if cr.State != "" && cr.State != ec2types.CapacityReservationStateActive {
					continue
				}
				r := awsv1.CapacityReservation{
					ID: aws.ToString(cr.CapacityReservationId), InstanceType: aws.ToString(cr.InstanceType),
					Zone: aws.ToString(cr.AvailabilityZone), OwnerID: aws.ToString(cr.OwnerId),
					Type: string(cr.ReservationType), InstanceMatchCriteria: string(cr.InstanceMatchCriteria),
				}
				if r.Type == "" {
					r.Type = string(ec2types.CapacityReservationTypeDefault)
				}
				if cr.EndDate != nil {
					end := metav1.NewTime(*cr.EndDate)
					r.EndTime = &end
				}
				seen[r.ID] = r
			}
		}
	}
	out := slices.Collect(maps.Values(seen))
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
