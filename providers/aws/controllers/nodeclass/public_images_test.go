package nodeclass

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// Anyone can publish a public image with any name. A name term without an
// owner must not pick a stranger's newer image that happens to match (the
// "whoAMI" name-confusion attack): every node would drift to it and boot it
// with the node role's credentials. Without an owner, a name term searches
// this account's images and Amazon's, as Karpenter's does.
func TestNameTermIgnoresStrangersPublicImages(t *testing.T) {
	api := newFake()
	api.images = append(api.images, ec2types.Image{
		ImageId: aws.String("ami-stranger"), Name: aws.String("team-ml-gpu-nvidia-2099"), CreationDate: aws.String("2026-12-01T00:00:00.000Z"),
		Architecture: ec2types.ArchitectureValuesX8664, OwnerId: aws.String("999988887777"), Public: aws.Bool(true),
		State: ec2types.ImageStateAvailable,
	})
	got, err := reconcileOnce(t, api, nodeClass(awsv1.AMISelectorTerm{Name: "team-ml-*"}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"ami-mine/amd64/nvidia"}, amiIDs(got.Status.AMIs)); diff != "" {
		t.Errorf("AMIs (-want +got):\n%s", diff)
	}
}
