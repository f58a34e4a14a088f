package aws

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// EC2NodeClass spec.tags promise to tag every instance and volume: cost
// allocation by team and tag-enforcing policies (an SCP that refuses an
// untagged volume) see the volumes and network interfaces too.
func TestNodeClassTagsReachVolumesAndInterfaces(t *testing.T) {
	e := newEnv(t)
	if _, err := e.p.Create(context.Background(), claim("tagged", choice("m5.large", zoneA, "on-demand"))); err != nil {
		t.Fatal(err)
	}
	lt := e.ec2.templates[aws.ToString(e.ec2.fleets[0].LaunchTemplateConfigs[0].LaunchTemplateSpecification.LaunchTemplateName)]
	for _, rt := range []ec2types.ResourceType{ec2types.ResourceTypeVolume, ec2types.ResourceTypeNetworkInterface} {
		found := false
		for _, ts := range lt.TagSpecifications {
			if ts.ResourceType == rt {
				found = tagValue(ts.Tags, "team") == "ml"
			}
		}
		if !found {
			t.Errorf("%s tags lack the node class's team=ml", rt)
		}
	}
}
