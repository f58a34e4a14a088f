package contract

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
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

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := v1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := awsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// network makes a VPC with a tagged subnet in each of two zones, a tagged
// security group and a tagged image, as a user's cluster would have.
type network struct {
	subnets map[string]string // zone -> subnet ID
	sg      string
	ami     string
}

func makeNetwork(ctx context.Context, t *testing.T, api *ec2.Client, cluster string) network {
	t.Helper()
	discovery := []ec2types.Tag{{Key: aws.String("stowage.dev/discovery"), Value: aws.String(cluster)}}
	vpc, err := api.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.0.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	vpcID := vpc.Vpc.VpcId
	n := network{subnets: map[string]string{}}
	for i, zone := range []string{"us-east-1a", "us-east-1b"} {
		s, err := api.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, AvailabilityZone: aws.String(zone),
			CidrBlock:         aws.String("10.0." + string(rune('1'+i)) + ".0/24"),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSubnet, Tags: discovery}}})
		if err != nil {
			t.Fatal(err)
		}
		n.subnets[zone] = aws.ToString(s.Subnet.SubnetId)
	}
	// An untagged subnet must not be selected.
	if _, err := api.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpcID, AvailabilityZone: aws.String("us-east-1c"), CidrBlock: aws.String("10.0.9.0/24")}); err != nil {
		t.Fatal(err)
	}
	sg, err := api.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("nodes"), Description: aws.String("nodes"), VpcId: vpcID,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: discovery}}})
	if err != nil {
		t.Fatal(err)
	}
	n.sg = aws.ToString(sg.GroupId)
	// moto's RegisterImage leaves Architecture empty; an image made from an
	// instance of one of moto's Amazon images carries it, like real EC2 images.
	base, err := api.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("architecture"), Values: []string{"x86_64"}}}})
	if err != nil || len(base.Images) == 0 {
		t.Fatalf("moto has no Amazon x86_64 image: %v", err)
	}
	src, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: base.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := api.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: src.Instances[0].InstanceId, Name: aws.String(cluster + "-al2023-nvidia-x86_64")})
	if err != nil {
		t.Fatal(err)
	}
	n.ami = aws.ToString(img.ImageId)
	if _, err := api.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{n.ami}, Tags: discovery}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(src.Instances[0].InstanceId)}}); err != nil {
		t.Fatal(err)
	}
	return n
}

func ec2NodeClass(cluster string) *awsv1.EC2NodeClass {
	sel := map[string]string{"stowage.dev/discovery": cluster}
	return &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Tags: sel}},
			SubnetSelectorTerms:        []awsv1.SelectorTerm{{Tags: sel}},
			SecurityGroupSelectorTerms: []awsv1.SelectorTerm{{Tags: sel}},
			InstanceProfile:            "stowage-nodes",
			Tags:                       map[string]string{"team": "ml"},
		},
	}
}

// resolvedNodeClass runs the nodeclass controller against moto.
func resolvedNodeClass(ctx context.Context, t *testing.T, api *ec2.Client, cluster string) client.Client {
	t.Helper()
	nc := ec2NodeClass(cluster)
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc).WithStatusSubresource(nc).Build()
	c := nodeclass.NewController(nodeclass.Deps{Client: kube, EC2: api, Join: joinSettings(t), Clock: clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))})
	if err := kube.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reconcile(ctx, nc); err != nil {
		t.Fatal(err)
	}
	return kube
}

func TestNodeClassResolution(t *testing.T) {
	ctx, cluster := begin(t)
	api := moto.EC2()
	n := makeNetwork(ctx, t, api, cluster)
	kube := resolvedNodeClass(ctx, t, api, cluster)
	nc := &awsv1.EC2NodeClass{}
	if err := kube.Get(ctx, client.ObjectKey{Name: "default"}, nc); err != nil {
		t.Fatal(err)
	}
	if !conditions.IsTrue(nc.Status.Conditions, awsv1.ConditionReady) {
		t.Fatalf("not Ready: %+v", nc.Status.Conditions)
	}
	got := map[string]string{}
	for _, s := range nc.Status.Subnets {
		got[s.Zone] = s.ID
	}
	if len(got) != 2 || got["us-east-1a"] != n.subnets["us-east-1a"] || got["us-east-1b"] != n.subnets["us-east-1b"] {
		t.Errorf("subnets = %+v, want the two tagged ones %v", nc.Status.Subnets, n.subnets)
	}
	if len(nc.Status.SecurityGroups) != 1 || nc.Status.SecurityGroups[0].ID != n.sg {
		t.Errorf("security groups = %+v, want %s", nc.Status.SecurityGroups, n.sg)
	}
	if len(nc.Status.AMIs) != 1 || nc.Status.AMIs[0].ID != n.ami || nc.Status.AMIs[0].Arch != "amd64" || nc.Status.AMIs[0].Variant != awsv1.VariantNVIDIA {
		t.Errorf("AMIs = %+v, want %s (amd64, nvidia by name)", nc.Status.AMIs, n.ami)
	}

	// A selector nothing matches says so.
	nc.Spec.SubnetSelectorTerms = []awsv1.SelectorTerm{{Tags: map[string]string{"missing": "yes"}}}
	if err := kube.Update(ctx, nc); err != nil {
		t.Fatal(err)
	}
	c := nodeclass.NewController(nodeclass.Deps{Client: kube, EC2: api, Join: joinSettings(t)})
	if _, err := c.Reconcile(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if err := kube.Get(ctx, client.ObjectKey{Name: "default"}, nc); err != nil {
		t.Fatal(err)
	}
	ready := conditions.Get(nc.Status.Conditions, awsv1.ConditionReady)
	if ready.Status != metav1.ConditionFalse || !strings.Contains(ready.Message, "missing=yes") {
		t.Errorf("Ready = %+v, want False naming the unmatched selector", ready)
	}
}

func newProvider(t *testing.T, api *ec2.Client, kube client.Client, cluster string) *awsprovider.Provider {
	t.Helper()
	p, err := awsprovider.New(awsprovider.Options{ClusterName: cluster, Region: "us-east-1", EC2: api, Kube: kube,
		ClusterEndpoint: "https://127.0.0.1:6443"})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCatalogHasGPUFacts(t *testing.T) {
	ctx, cluster := begin(t)
	p := newProvider(t, moto.EC2(), nil, cluster)
	its, err := p.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*cloudprovider.InstanceType{}
	for _, it := range its {
		byName[it.Name] = it
	}
	tests := []struct {
		name, gpu, count, memory string
	}{
		{"p5.48xlarge", "h100", "8", "81920"},
		{"g5.xlarge", "a10g", "1", "22888"},
	}
	for _, tt := range tests {
		it := byName[tt.name]
		if it == nil {
			t.Fatalf("%s missing from the moto catalog (%d types)", tt.name, len(its))
		}
		got := [3]string{it.Labels[v1.LabelGPUName], it.Labels[v1.LabelGPUCount], it.Labels[v1.LabelGPUMemory]}
		if got != [3]string{tt.gpu, tt.count, tt.memory} {
			t.Errorf("%s GPU labels = %v, want %s x%s %s MiB", tt.name, got, tt.gpu, tt.count, tt.memory)
		}
		if len(it.Offerings) == 0 {
			t.Errorf("%s has no offerings", tt.name)
		}
		for _, o := range it.Offerings {
			if o.PricePerHour <= 0 {
				t.Errorf("%s offering %+v has no price", tt.name, o)
			}
		}
	}
	if len(its) < 500 {
		t.Errorf("only %d instance types; moto serves the full region list", len(its))
	}
	// EBS attach limits, less the root volume: shared with the instance
	// store on g5 (EC2 says 25), dedicated on m7i.48xlarge (128).
	ebs := cloudprovider.AttachLimitResource("ebs.csi.aws.com")
	for name, want := range map[string]int64{"g5.xlarge": 24, "m7i.48xlarge": 127} {
		if it := byName[name]; it == nil {
			t.Errorf("%s missing from the moto catalog", name)
		} else if q := it.Capacity[ebs]; q.Value() != want {
			t.Errorf("%s attaches %s EBS volumes, want %d", name, q.String(), want)
		}
	}
}

func launchClaim(name string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid"), Labels: map[string]string{v1.LabelNodePool: "gpu"}},
		Spec: v1.NodeClaimSpec{
			Offerings:    offerings,
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "default"},
		},
	}
}

func describe(ctx context.Context, t *testing.T, api *ec2.Client, providerID string) ec2types.Instance {
	t.Helper()
	id, err := awsprovider.ParseProviderID(providerID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return out.Reservations[0].Instances[0]
}

func TestLaunchListTerminate(t *testing.T) {
	ctx, cluster := begin(t)
	api := moto.EC2()
	n := makeNetwork(ctx, t, api, cluster)
	kube := resolvedNodeClass(ctx, t, api, cluster)
	p := newProvider(t, api, kube, cluster)

	spot, err := p.Create(ctx, launchClaim("spot-1", v1.OfferingChoice{InstanceType: "g5.xlarge", Zone: "us-east-1b", CapacityType: v1.CapacityTypeSpot}))
	if err != nil {
		t.Fatal(err)
	}
	od, err := p.Create(ctx, launchClaim("od-1", v1.OfferingChoice{InstanceType: "p5.48xlarge", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		claim                     *v1.NodeClaim
		zone, instanceType, cType string
		subnet                    string
		spot                      bool
	}{
		{spot, "us-east-1b", "g5.xlarge", v1.CapacityTypeSpot, n.subnets["us-east-1b"], true},
		{od, "us-east-1a", "p5.48xlarge", v1.CapacityTypeOnDemand, n.subnets["us-east-1a"], false},
	}
	for _, tt := range tests {
		c := tt.claim
		if !strings.HasPrefix(c.Status.ProviderID, "aws:///"+tt.zone+"/i-") || c.Status.InstanceType != tt.instanceType || c.Status.CapacityType != tt.cType {
			t.Errorf("claim %s status = %+v", c.Name, c.Status)
		}
		inst := describe(ctx, t, api, c.Status.ProviderID)
		if string(inst.InstanceType) != tt.instanceType || aws.ToString(inst.SubnetId) != tt.subnet || aws.ToString(inst.ImageId) != n.ami {
			t.Errorf("%s: moto instance %s in %s from %s", c.Name, inst.InstanceType, aws.ToString(inst.SubnetId), aws.ToString(inst.ImageId))
		}
		if (inst.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot) != tt.spot {
			t.Errorf("%s: lifecycle %q, spot=%v", c.Name, inst.InstanceLifecycle, tt.spot)
		}
		tags := map[string]string{}
		for _, tg := range inst.Tags {
			tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
		}
		if tags[awsprovider.TagCluster] != cluster || tags[awsprovider.TagNodeClaim] != c.Name || tags[awsprovider.TagNodePool] != "gpu" || tags["Name"] != c.Name || tags["team"] != "ml" {
			t.Errorf("%s: tags = %v", c.Name, tags)
		}
	}

	// Creating again adopts the tagged instance instead of launching another.
	again, err := p.Create(ctx, launchClaim("spot-1", v1.OfferingChoice{InstanceType: "g5.xlarge", Zone: "us-east-1b", CapacityType: v1.CapacityTypeSpot}))
	if err != nil {
		t.Fatal(err)
	}
	if again.Status.ProviderID != spot.Status.ProviderID {
		t.Errorf("second Create made %s, want the first instance %s", again.Status.ProviderID, spot.Status.ProviderID)
	}

	// An instance another cluster owns stays out of List.
	if _, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(n.ami), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance,
			Tags: []ec2types.Tag{{Key: aws.String(awsprovider.TagCluster), Value: aws.String("someone-else")}}}}}); err != nil {
		t.Fatal(err)
	}
	list, err := p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]string{}
	for _, c := range list {
		names[c.Name] = c.Status.ProviderID
	}
	if len(list) != 2 || names["spot-1"] != spot.Status.ProviderID || names["od-1"] != od.Status.ProviderID {
		t.Fatalf("List = %v, want spot-1 and od-1", names)
	}

	if err := p.Delete(ctx, spot); err != nil {
		t.Fatal(err)
	}
	if state := describe(ctx, t, api, spot.Status.ProviderID).State.Name; state != ec2types.InstanceStateNameTerminated && state != ec2types.InstanceStateNameShuttingDown {
		t.Errorf("after Delete the instance is %s", state)
	}
	if _, err := p.Get(ctx, spot.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get after Delete: err = %v, want NotFound", err)
	}
	if err := p.Delete(ctx, spot); !cloudprovider.IsNotFound(err) {
		t.Errorf("second Delete: err = %v, want NotFound", err)
	}
	if _, err := p.Get(ctx, "aws:///us-east-1a/i-0000000000000dead"); !cloudprovider.IsNotFound(err) {
		t.Errorf("Get unknown: err = %v, want NotFound", err)
	}
	if list, err := p.List(ctx); err != nil || len(list) != 1 {
		t.Errorf("List after Delete = %d claims, %v; want 1", len(list), err)
	}
	if err := p.Delete(ctx, &v1.NodeClaim{Status: v1.NodeClaimStatus{ProviderID: "gce://x"}}); err == nil || errors.Is(err, nil) {
		t.Error("a foreign providerID must be rejected")
	}
}
