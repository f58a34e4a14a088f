package aws

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// maxTopologyIDs is DescribeInstanceTopology's limit on instance IDs per call.
const maxTopologyIDs = 100

// NetworkTopology returns, by providerID, the network nodes EC2 reports above
// each machine, top layer first. Machines EC2 says nothing about (types
// without topology, instances not running yet) are left out.
func (p *Provider) NetworkTopology(ctx context.Context, providerIDs []string) (map[string][]string, error) {
	byInstance := map[string]string{}
	var ids []string
	for _, pid := range providerIDs {
		id, err := ParseProviderID(pid)
		if err != nil {
			return nil, err
		}
		byInstance[id] = pid
		ids = append(ids, id)
	}
	out := map[string][]string{}
	for start := 0; start < len(ids); start += maxTopologyIDs {
		batch := ids[start:min(start+maxTopologyIDs, len(ids))]
		pages := ec2.NewDescribeInstanceTopologyPaginator(p.opts.EC2, &ec2.DescribeInstanceTopologyInput{InstanceIds: batch})
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing instance topology: %w", err)
			}
			for _, it := range page.Instances {
				if pid, ok := byInstance[aws.ToString(it.InstanceId)]; ok && len(it.NetworkNodes) > 0 {
					out[pid] = it.NetworkNodes
				}
			}
		}
	}
	return out, nil
}
