package aws

import (
	"context"
	"fmt"
	"slices"
	"time"

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
	net, ok, err := p.instanceNetwork(ctx, id)
	if err != nil {
		return "", fmt.Errorf("drift of nodeclaim %s: describing %s: %w", claim.Name, id, err)
	}
	if !ok {
		return "", nil // gone: garbage collection's business, not drift
	}
	if net.subnet != "" && !slices.ContainsFunc(nc.Status.Subnets, func(s awsv1.Subnet) bool { return s.ID == net.subnet }) {
		return DriftSubnet, nil
	}
	// Every EC2 instance has a security group; an answer without any (moto's
	// fleet instances) says nothing either way.
	if len(net.sgs) > 0 && !slices.Equal(net.sgs, sgIDs(nc)) {
		return DriftSecurityGroup, nil
	}
	return "", nil
}

// networkTTL is how long an instance's subnet and security groups, read for
// drift, are reused: they do not change after launch unless someone edits
// the instance, and reading them for every claim at every check is about 80
// DescribeInstances a second at 5,000 nodes, past EC2's request limits. The
// node class's side is compared afresh at every check.
const networkTTL = 15 * time.Minute

// instanceNetwork is where an instance sits, as drift compares it.
type instanceNetwork struct {
	subnet string
	sgs    []string // sorted
	at     time.Time
}

// instanceNetwork returns instance id's subnet and security groups, from
// the last networkTTL's answer when there is one; ok is false when the
// instance is gone.
func (p *Provider) instanceNetwork(ctx context.Context, id string) (instanceNetwork, bool, error) {
	now := p.clock.Now()
	p.mu.Lock()
	net, cached := p.networks[id]
	p.mu.Unlock()
	if cached && now.Sub(net.at) < networkTTL {
		return net, true, nil
	}
	out, err := p.opts.EC2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		if errorCode(err) == codeInstanceNotFound {
			return instanceNetwork{}, false, nil
		}
		return instanceNetwork{}, false, err
	}
	inst := firstInstance(out, id)
	if inst == nil || inst.State != nil && inst.State.Name == ec2types.InstanceStateNameTerminated {
		return instanceNetwork{}, false, nil
	}
	net = instanceNetwork{subnet: aws.ToString(inst.SubnetId), at: now}
	for _, g := range inst.SecurityGroups {
		net.sgs = append(net.sgs, aws.ToString(g.GroupId))
	}
	slices.Sort(net.sgs)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.networks == nil || now.Sub(p.networksPruned) >= networkTTL {
		// Instances no longer checked (terminated, their claims gone) are
		// dropped once per TTL.
		for k, v := range p.networks {
			if now.Sub(v.at) >= networkTTL {
				delete(p.networks, k)
			}
		}
		if p.networks == nil {
			p.networks = map[string]instanceNetwork{}
		}
		p.networksPruned = now
	}
	p.networks[id] = net
	return net, true, nil
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
