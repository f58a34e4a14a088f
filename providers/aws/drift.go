package aws

import (
	"context"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// Drift reasons the provider reports, in the order they are checked.
const (
	DriftImage         cloudprovider.DriftReason = "ImageDrift"
	DriftSubnet        cloudprovider.DriftReason = "SubnetDrift"
	DriftSecurityGroup cloudprovider.DriftReason = "SecurityGroupDrift"
)

// IsDrifted implements cloudprovider.DriftChecker: the claim's machine runs
// an image other than the one its node class now picks for its type, sits in
// a subnet the node class no longer selects, or has other security groups.
// A node class that is not Ready reports no drift: its status may be empty
// because of a typo, and replacing machines would buy nothing that can launch.
func (p *Provider) IsDrifted(ctx context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	if claim.Spec.NodeClassRef == nil || claim.Status.ProviderID == "" {
		return "", nil
	}
	nc, err := p.nodeClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return "", fmt.Errorf("drift of nodeclaim %s: %w", claim.Name, err)
	}
	if launchable(nc) != nil {
		return "", nil
	}
	// The image a type wants depends on its architecture and accelerators:
	// read from the catalog, loaded here if a drift check comes first after
	// a start. Without it every GPU, Neuron and arm64 node would read as
	// running the wrong image.
	p.refresh(ctx)
	if claim.Status.ImageID != "" && claim.Status.InstanceType != "" && p.typeFacts(claim.Status.InstanceType).known {
		if want, ok := p.amiFor(nc, claim.Status.InstanceType); ok && want != claim.Status.ImageID {
			return DriftImage, nil
		}
	}
	id, err := ParseProviderID(claim.Status.ProviderID)
	if err != nil {
		return "", fmt.Errorf("drift of nodeclaim %s: %w", claim.Name, err)
	}
	out, err := p.opts.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if errorCode(err) == codeInstanceNotFound {
			return "", nil // gone: garbage collection's business, not drift
		}
		return "", fmt.Errorf("drift of nodeclaim %s: describing %s: %w", claim.Name, id, err)
	}
	inst := firstInstance(out, id)
	if inst == nil || inst.State != nil && inst.State.Name == ec2types.InstanceStateNameTerminated {
		return "", nil
	}
	if subnet := aws.ToString(inst.SubnetId); subnet != "" &&
		!slices.ContainsFunc(nc.Status.Subnets, func(s awsv1.Subnet) bool { return s.ID == subnet }) {
		return DriftSubnet, nil
	}
	have := make([]string, 0, len(inst.SecurityGroups))
	for _, g := range inst.SecurityGroups {
		have = append(have, aws.ToString(g.GroupId))
	}
	slices.Sort(have)
	// Every EC2 instance has a security group; an answer without any (moto's
	// fleet instances) says nothing either way.
	if len(have) > 0 && !slices.Equal(have, sgIDs(nc)) {
		return DriftSecurityGroup, nil
	}
	return "", nil
}

func firstInstance(out *ec2.DescribeInstancesOutput, id string) *ec2types.Instance {
	for _, r := range out.Reservations {
		for i := range r.Instances {
			if aws.ToString(r.Instances[i].InstanceId) == id {
				return &r.Instances[i]
			}
		}
	}
	return nil
}
