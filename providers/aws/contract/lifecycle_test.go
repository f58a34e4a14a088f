package contract

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
)

// copyImage makes another x86_64 image in moto (moto's RegisterImage leaves
// the architecture empty; an image of an instance carries it).
func copyImage(ctx context.Context, t *testing.T, api *ec2.Client, name string) string {
	t.Helper()
	base, err := api.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("architecture"), Values: []string{"x86_64"}}}})
	if err != nil || len(base.Images) == 0 {
		t.Fatalf("moto has no Amazon x86_64 image: %v", err)
	}
	src, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: base.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := api.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: src.Instances[0].InstanceId, Name: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(src.Instances[0].InstanceId)}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(img.ImageId)
}

// publish writes an image parameter under a test root: moto refuses names
// under /aws, so the controller reads <root>/eks/... instead of
// /aws/service/eks/...; the rest of the path is Amazon's.
func publish(ctx context.Context, t *testing.T, api *ssm.Client, name, imageID string) {
	t.Helper()
	if _, err := api.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(imageID),
		Type: ssmtypes.ParameterTypeString, DataType: aws.String("aws:ec2:image"), Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
}

// TestAliasResolvesTheClusterVersionsImage reads Amazon's parameter layout
// from moto's SSM: a 1.33 cluster gets the 1.33 image although a 1.34 image
// is newer, and the NVIDIA variant comes from its own parameter.
func TestAliasResolvesTheClusterVersionsImage(t *testing.T) {
	ctx, cluster := begin(t)
	api, ssmAPI := moto.EC2(), moto.SSM()
	makeNetwork(ctx, t, api, cluster)
	root := "/stowage-test/" + cluster
	std133 := copyImage(ctx, t, api, cluster+"-al2023-x86_64-standard-1.33")
	gpu133 := copyImage(ctx, t, api, cluster+"-al2023-x86_64-nvidia-1.33")
	std134 := copyImage(ctx, t, api, cluster+"-al2023-x86_64-standard-1.34")
	publish(ctx, t, ssmAPI, root+"/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id", std133)
	publish(ctx, t, ssmAPI, root+"/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/nvidia/recommended/image_id", gpu133)
	publish(ctx, t, ssmAPI, root+"/eks/optimized-ami/1.34/amazon-linux-2023/x86_64/standard/recommended/image_id", std134)

	nc := ec2NodeClass(cluster)
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}}
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc).WithStatusSubresource(nc).Build()
	c := nodeclass.NewController(nodeclass.Deps{Client: kube, EC2: api, SSM: ssmAPI, ParameterRoot: root, Join: joinSettings(t),
		KubernetesVersion: func(context.Context) (string, error) { return "1.33", nil }})
	if err := kube.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if err := kube.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range nc.Status.AMIs {
		got = append(got, a.ID+"/"+a.Arch+"/"+a.Variant)
	}
	if diff := cmp.Diff([]string{std133 + "/amd64/standard", gpu133 + "/amd64/nvidia"}, got); diff != "" {
		t.Errorf("AMIs for Kubernetes 1.33 (-want +got):\n%s", diff)
	}
	if nc.Status.KubernetesVersion != "1.33" || !conditions.IsTrue(nc.Status.Conditions, awsv1.ConditionReady) {
		t.Errorf("status = %+v, want Ready for 1.33", nc.Status)
	}
}

// TestTemplatesAreCleanedUp: launch templates survive a restart (found by
// tag, not made again), idle ones are deleted, and deleting a node class's
// templates leaves other clusters' alone.
func TestTemplatesAreCleanedUp(t *testing.T) {
	ctx, cluster := begin(t)
	api := moto.EC2()
	makeNetwork(ctx, t, api, cluster)
	kube := resolvedNodeClass(ctx, t, api, cluster)
	clk := clocktesting.NewFakeClock(time.Now())
	newP := func() *awsprovider.Provider {
		p, err := awsprovider.New(awsprovider.Options{ClusterName: cluster, Region: "us-east-1", EC2: api, Kube: kube, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	templates := func() []string {
		out, err := api.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + awsprovider.TagCluster), Values: []string{cluster}}}})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, lt := range out.LaunchTemplates {
			names = append(names, aws.ToString(lt.LaunchTemplateName))
		}
		return names
	}
	p := newP()
	a, err := p.Create(ctx, launchClaim("a", v1.OfferingChoice{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand}))
	if err != nil {
		t.Fatal(err)
	}
	first := templates()
	if len(first) != 1 {
		t.Fatalf("templates = %v, want 1", first)
	}
	// Restarted: the same template is reused.
	p = newP()
	if _, err := p.Create(ctx, launchClaim("b", v1.OfferingChoice{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand})); err != nil {
		t.Fatal(err)
	}
	if got := templates(); !cmp.Equal(first, got) {
		t.Fatalf("templates after restart = %v, want %v", got, first)
	}
	clk.Step(awsprovider.TemplateIdleTTL + time.Minute)
	// Launch templates only: moto does not serve placement groups.
	if err := p.CollectLaunchTemplates(ctx); err != nil {
		t.Fatal(err)
	}
	if got := templates(); len(got) != 0 {
		t.Errorf("idle templates left: %v", got)
	}
	// The machines launched from it keep running.
	if state := describe(ctx, t, api, a.Status.ProviderID).State.Name; state != ec2types.InstanceStateNameRunning {
		t.Errorf("instance is %s after its template went", state)
	}
	if _, err := p.Create(ctx, launchClaim("c", v1.OfferingChoice{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand})); err != nil {
		t.Fatal(err)
	}
	if err := p.DeleteLaunchTemplates(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if got := templates(); len(got) != 0 {
		t.Errorf("templates of the deleted node class left: %v", got)
	}
}

// TestDriftAndOwnership: a new image makes a machine drift; a machine of
// another cluster is neither listed nor terminated, even when a claim names it.
func TestDriftAndOwnership(t *testing.T) {
	ctx, cluster := begin(t)
	api := moto.EC2()
	n := makeNetwork(ctx, t, api, cluster)
	kube := resolvedNodeClass(ctx, t, api, cluster)
	p := newProvider(t, api, kube, cluster)
	c, err := p.Create(ctx, launchClaim("drift", v1.OfferingChoice{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand}))
	if err != nil {
		t.Fatal(err)
	}
	c.Spec.NodeClassRef = &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "default"}
	// moto reports fleet instances without security groups, so security
	// group drift is covered by the unit tests; subnet and image here.
	nc := &awsv1.EC2NodeClass{}
	if err := kube.Get(ctx, client.ObjectKey{Name: "default"}, nc); err != nil {
		t.Fatal(err)
	}
	if got, err := p.IsDrifted(ctx, c); err != nil || got != "" {
		t.Fatalf("IsDrifted right after launch = %q, %v; want no drift", got, err)
	}
	// A newer tagged image appears and the node class resolves it.
	newer := copyImage(ctx, t, api, cluster+"-al2023-nvidia-newer")
	if _, err := api.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{newer},
		Tags: []ec2types.Tag{{Key: aws.String("stowage.dev/discovery"), Value: aws.String(cluster)}}}); err != nil {
		t.Fatal(err)
	}
	nc.Status.AMIs = []awsv1.AMI{{ID: newer, Arch: "amd64", Variant: awsv1.VariantStandard}}
	if err := kube.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if got, err := p.IsDrifted(ctx, c); err != nil || got != awsprovider.DriftImage {
		t.Errorf("IsDrifted after the image changed = %q, %v; want %s (was %s)", got, err, awsprovider.DriftImage, n.ami)
	}
	nc.Status.AMIs = []awsv1.AMI{{ID: n.ami, Arch: "amd64", Variant: awsv1.VariantNVIDIA}}
	nc.Status.Subnets = []awsv1.Subnet{{ID: n.subnets["us-east-1b"], Zone: "us-east-1b"}}
	if err := kube.Status().Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if got, err := p.IsDrifted(ctx, c); err != nil || got != awsprovider.DriftSubnet {
		t.Errorf("IsDrifted after us-east-1a's subnet was deselected = %q, %v; want %s", got, err, awsprovider.DriftSubnet)
	}

	other, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(n.ami), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance,
			Tags: []ec2types.Tag{{Key: aws.String(awsprovider.TagCluster), Value: aws.String("someone-else")}}}}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(other.Instances[0].InstanceId)
	stolen := launchClaim("stolen")
	stolen.Status.ProviderID = "aws:///us-east-1a/" + id
	if err := p.Delete(ctx, stolen); !errors.Is(err, awsprovider.ErrForeignInstance) {
		t.Fatalf("Delete of another cluster's machine: err = %v, want ErrForeignInstance", err)
	}
	if state := describe(ctx, t, api, stolen.Status.ProviderID).State.Name; state != ec2types.InstanceStateNameRunning {
		t.Errorf("another cluster's machine is %s", state)
	}
	if _, err := p.Get(ctx, stolen.Status.ProviderID); err != nil && !cloudprovider.IsNotFound(err) {
		t.Fatal(err)
	}
}
