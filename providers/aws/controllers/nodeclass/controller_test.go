package nodeclass

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// fakeEC2 answers from fixed lists, applying tag, name and ID filters.
type fakeEC2 struct {
	subnets []ec2types.Subnet
	groups  []ec2types.SecurityGroup
	images  []ec2types.Image
	err     error
	queries []string // name filters of DescribeImages calls
}

func hasTags(tags []ec2types.Tag, filters []ec2types.Filter) bool {
	for _, f := range filters {
		name := aws.ToString(f.Name)
		switch {
		case name == "tag-key":
			if !slices.ContainsFunc(tags, func(t ec2types.Tag) bool { return aws.ToString(t.Key) == f.Values[0] }) {
				return false
			}
		case strings.HasPrefix(name, "tag:"):
			if !slices.ContainsFunc(tags, func(t ec2types.Tag) bool {
				return aws.ToString(t.Key) == strings.TrimPrefix(name, "tag:") && aws.ToString(t.Value) == f.Values[0]
			}) {
				return false
			}
		}
	}
	return true
}

func (f *fakeEC2) DescribeSubnets(_ context.Context, in *ec2.DescribeSubnetsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := &ec2.DescribeSubnetsOutput{}
	for _, s := range f.subnets {
		if (len(in.SubnetIds) == 0 || slices.Contains(in.SubnetIds, aws.ToString(s.SubnetId))) && hasTags(s.Tags, in.Filters) {
			out.Subnets = append(out.Subnets, s)
		}
	}
	return out, nil
}

func (f *fakeEC2) DescribeSecurityGroups(_ context.Context, in *ec2.DescribeSecurityGroupsInput, _ ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error) {
	out := &ec2.DescribeSecurityGroupsOutput{}
	for _, g := range f.groups {
		if (len(in.GroupIds) == 0 || slices.Contains(in.GroupIds, aws.ToString(g.GroupId))) && hasTags(g.Tags, in.Filters) {
			out.SecurityGroups = append(out.SecurityGroups, g)
		}
	}
	return out, nil
}

// glob matches * wildcards only, enough for EC2 name filters.
func glob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, p)
		}
		j := strings.Index(s, p)
		if j < 0 {
			return false
		}
		s = s[j+len(p):]
	}
	return true
}

func (f *fakeEC2) DescribeImages(_ context.Context, in *ec2.DescribeImagesInput, _ ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error) {
	out := &ec2.DescribeImagesOutput{}
	for _, img := range f.images {
		if len(in.ImageIds) > 0 && !slices.Contains(in.ImageIds, aws.ToString(img.ImageId)) {
			continue
		}
		if len(in.Owners) > 0 && !slices.Contains(in.Owners, aws.ToString(img.ImageOwnerAlias)) {
			continue
		}
		ok := hasTags(img.Tags, in.Filters)
		for _, flt := range in.Filters {
			if aws.ToString(flt.Name) == "name" {
				f.queries = append(f.queries, flt.Values[0])
				ok = ok && glob(flt.Values[0], aws.ToString(img.Name))
			}
		}
		if ok {
			out.Images = append(out.Images, img)
		}
	}
	return out, nil
}

func image(id, name, created string, arch ec2types.ArchitectureValues) ec2types.Image {
	return ec2types.Image{ImageId: aws.String(id), Name: aws.String(name), CreationDate: aws.String(created), Architecture: arch, ImageOwnerAlias: aws.String("amazon")}
}

func tag(k, v string) []ec2types.Tag {
	return []ec2types.Tag{{Key: aws.String(k), Value: aws.String(v)}}
}

func newFake() *fakeEC2 {
	return &fakeEC2{
		subnets: []ec2types.Subnet{
			{SubnetId: aws.String("subnet-b"), AvailabilityZone: aws.String("us-east-1b"), Tags: tag("stowage.dev/discovery", "prod")},
			{SubnetId: aws.String("subnet-a"), AvailabilityZone: aws.String("us-east-1a"), Tags: tag("stowage.dev/discovery", "prod")},
			{SubnetId: aws.String("subnet-x"), AvailabilityZone: aws.String("us-east-1c"), Tags: tag("stowage.dev/discovery", "dev")},
		},
		groups: []ec2types.SecurityGroup{{GroupId: aws.String("sg-1"), GroupName: aws.String("nodes"), Tags: tag("stowage.dev/discovery", "prod")}},
		images: []ec2types.Image{
			image("ami-old", "amazon-eks-node-al2023-x86_64-standard-1.34-v20261001", "2026-10-01T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-new", "amazon-eks-node-al2023-x86_64-standard-1.34-v20261101", "2026-11-01T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-arm", "amazon-eks-node-al2023-arm64-standard-1.34-v20261101", "2026-11-01T00:00:00.000Z", ec2types.ArchitectureValuesArm64),
			image("ami-gpu", "amazon-eks-node-al2023-x86_64-nvidia-1.34-v20261101", "2026-11-01T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-br", "bottlerocket-aws-k8s-1.34-x86_64-v1.50.0-abc", "2026-11-02T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-br-gpu", "bottlerocket-aws-k8s-1.34-nvidia-x86_64-v1.50.0-abc", "2026-11-03T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
		},
	}
}

func nodeClass(amis ...awsv1.AMISelectorTerm) *awsv1.EC2NodeClass {
	return &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "default", Generation: 3},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           amis,
			SubnetSelectorTerms:        []awsv1.SelectorTerm{{Tags: map[string]string{"stowage.dev/discovery": "prod"}}},
			SecurityGroupSelectorTerms: []awsv1.SelectorTerm{{Tags: map[string]string{"stowage.dev/discovery": "*"}}},
			Role:                       "KarpenterNodeRole",
		},
	}
}

func reconcileOnce(t *testing.T, api EC2API, nc *awsv1.EC2NodeClass) (*awsv1.EC2NodeClass, error) {
	t.Helper()
	return reconcileWith(t, Deps{EC2: api}, nc)
}

func reconcileWith(t *testing.T, d Deps, nc *awsv1.EC2NodeClass) (*awsv1.EC2NodeClass, error) {
	t.Helper()
	s := runtime.NewScheme()
	if err := awsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	kube := fake.NewClientBuilder().WithScheme(s).WithObjects(nc).WithStatusSubresource(nc).Build()
	d.Client, d.Clock = kube, clocktesting.NewFakeClock(time.Unix(0, 0))
	c := NewController(d)
	obj := &awsv1.EC2NodeClass{}
	if err := kube.Get(context.Background(), client.ObjectKeyFromObject(nc), obj); err != nil {
		t.Fatal(err)
	}
	_, rerr := c.Reconcile(context.Background(), obj)
	got := &awsv1.EC2NodeClass{}
	if err := kube.Get(context.Background(), client.ObjectKeyFromObject(nc), got); err != nil {
		t.Fatal(err)
	}
	return got, rerr
}

func TestResolvesEverything(t *testing.T) {
	got, err := reconcileOnce(t, newFake(), nodeClass(awsv1.AMISelectorTerm{Alias: "al2023@latest"}))
	if err != nil {
		t.Fatal(err)
	}
	want := awsv1.EC2NodeClassStatus{
		Subnets:        []awsv1.Subnet{{ID: "subnet-a", Zone: "us-east-1a"}, {ID: "subnet-b", Zone: "us-east-1b"}},
		SecurityGroups: []awsv1.SecurityGroup{{ID: "sg-1", Name: "nodes"}},
		AMIs: []awsv1.AMI{
			{ID: "ami-new", Name: "amazon-eks-node-al2023-x86_64-standard-1.34-v20261101", Arch: "amd64"},
			{ID: "ami-gpu", Name: "amazon-eks-node-al2023-x86_64-nvidia-1.34-v20261101", Arch: "amd64", NVIDIA: true},
			{ID: "ami-arm", Name: "amazon-eks-node-al2023-arm64-standard-1.34-v20261101", Arch: "arm64"},
		},
		InstanceProfile: "KarpenterNodeRole",
	}
	// amd64 sorts before arm64.
	if diff := cmp.Diff(want, got.Status, cmpIgnoreConditions()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	for _, c := range []string{awsv1.ConditionSubnetsReady, awsv1.ConditionSecurityGroupsReady, awsv1.ConditionAMIsReady, awsv1.ConditionReady} {
		cond := conditions.Get(got.Status.Conditions, c)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != 3 {
			t.Errorf("condition %s = %+v, want True at generation 3", c, cond)
		}
	}
}

func TestAliasVariants(t *testing.T) {
	tests := []struct {
		alias string
		want  []string
	}{
		{"al2023-nvidia", []string{"ami-gpu"}},
		{"al2023@v20261001", []string{"ami-old"}},
		{"bottlerocket", []string{"ami-br", "ami-br-gpu"}},
		{"bottlerocket-nvidia@latest", []string{"ami-br-gpu"}},
	}
	for _, tt := range tests {
		t.Run(tt.alias, func(t *testing.T) {
			got, err := reconcileOnce(t, newFake(), nodeClass(awsv1.AMISelectorTerm{Alias: tt.alias}))
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, a := range got.Status.AMIs {
				ids = append(ids, a.ID)
			}
			if diff := cmp.Diff(tt.want, ids); diff != "" {
				t.Errorf("AMIs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestConditionsSayWhatIsMissing(t *testing.T) {
	nc := nodeClass(awsv1.AMISelectorTerm{Tags: map[string]string{"team": "ml"}})
	nc.Spec.SubnetSelectorTerms = []awsv1.SelectorTerm{{ID: "subnet-nope"}}
	got, err := reconcileOnce(t, newFake(), nc)
	if err != nil {
		t.Fatal(err)
	}
	ready := conditions.Get(got.Status.Conditions, awsv1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionFalse {
		t.Fatalf("Ready = %+v, want False", ready)
	}
	for _, want := range []string{"SubnetsReady", "id subnet-nope", "AMIsReady", "tags {team=ml}"} {
		if !strings.Contains(ready.Message, want) {
			t.Errorf("Ready message %q lacks %q", ready.Message, want)
		}
	}
	if conditions.IsTrue(got.Status.Conditions, awsv1.ConditionSecurityGroupsReady) == false {
		t.Error("security groups resolved and must be Ready")
	}
}

func TestAPIErrorIsReturnedAndRecorded(t *testing.T) {
	f := newFake()
	f.err = errors.New("UnauthorizedOperation")
	got, err := reconcileOnce(t, f, nodeClass(awsv1.AMISelectorTerm{Alias: "al2023"}))
	if err == nil || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Fatalf("err = %v, want the API error", err)
	}
	cond := conditions.Get(got.Status.Conditions, awsv1.ConditionSubnetsReady)
	if cond == nil || cond.Reason != ReasonAPIError || !strings.Contains(cond.Message, "spec.subnetSelectorTerms[0]") {
		t.Errorf("SubnetsReady = %+v, want DescribeFailed naming the term", cond)
	}
}
