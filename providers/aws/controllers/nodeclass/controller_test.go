package nodeclass

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// fakeEC2 answers from fixed lists, applying tag, name and ID filters.
type fakeEC2 struct {
	subnets      []ec2types.Subnet
	groups       []ec2types.SecurityGroup
	images       []ec2types.Image
	reservations []ec2types.CapacityReservation
	instances    []ec2types.Instance
	err          error
	queries      []string // name filters of DescribeImages calls
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

func (f *fakeEC2) DescribeCapacityReservations(_ context.Context, in *ec2.DescribeCapacityReservationsInput, _ ...func(*ec2.Options)) (*ec2.DescribeCapacityReservationsOutput, error) {
	out := &ec2.DescribeCapacityReservationsOutput{}
	for _, r := range f.reservations {
		if len(in.CapacityReservationIds) > 0 && !slices.Contains(in.CapacityReservationIds, aws.ToString(r.CapacityReservationId)) {
			continue
		}
		ok := hasTags(r.Tags, in.Filters)
		for _, flt := range in.Filters {
			switch aws.ToString(flt.Name) {
			case "state":
				ok = ok && slices.Contains(flt.Values, string(r.State))
			case "owner-id":
				ok = ok && slices.Contains(flt.Values, aws.ToString(r.OwnerId))
			}
		}
		if ok {
			out.CapacityReservations = append(out.CapacityReservations, r)
		}
	}
	return out, nil
}

func (f *fakeEC2) DescribeInstances(_ context.Context, in *ec2.DescribeInstancesInput, _ ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error) {
	var res ec2types.Reservation
	for _, inst := range f.instances {
		if hasTags(inst.Tags, in.Filters) {
			res.Instances = append(res.Instances, inst)
		}
	}
	return &ec2.DescribeInstancesOutput{Reservations: []ec2types.Reservation{res}}, nil
}

func image(id, name, created string, arch ec2types.ArchitectureValues) ec2types.Image {
	return ec2types.Image{ImageId: aws.String(id), Name: aws.String(name), CreationDate: aws.String(created), Architecture: arch,
		ImageOwnerAlias: aws.String("amazon"), State: ec2types.ImageStateAvailable}
}

func tag(k, v string) []ec2types.Tag {
	return []ec2types.Tag{{Key: aws.String(k), Value: aws.String(v)}}
}

func selfRule(sg string) []ec2types.IpPermission {
	return []ec2types.IpPermission{{IpProtocol: aws.String("-1"), UserIdGroupPairs: []ec2types.UserIdGroupPair{{GroupId: aws.String(sg)}}}}
}

func newFake() *fakeEC2 {
	return &fakeEC2{
		subnets: []ec2types.Subnet{
			{SubnetId: aws.String("subnet-b"), AvailabilityZone: aws.String("us-east-1b"), Tags: tag("stowage.dev/discovery", "prod")},
			{SubnetId: aws.String("subnet-a"), AvailabilityZone: aws.String("us-east-1a"), Tags: tag("stowage.dev/discovery", "prod")},
			{SubnetId: aws.String("subnet-x"), AvailabilityZone: aws.String("us-east-1c"), Tags: tag("stowage.dev/discovery", "dev")},
		},
		groups: []ec2types.SecurityGroup{{GroupId: aws.String("sg-1"), GroupName: aws.String("nodes"), Tags: tag("stowage.dev/discovery", "prod"),
			IpPermissions: selfRule("sg-1"), IpPermissionsEgress: selfRule("sg-1")}},
		images: []ec2types.Image{
			// Amazon's EKS images for 1.33 and, newer, for 1.34: the newest
			// image is not the one a 1.33 cluster may run.
			image("ami-std-133", "amazon-eks-node-al2023-x86_64-standard-1.33-v20261101", "2026-11-01T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-std-134", "amazon-eks-node-al2023-x86_64-standard-1.34-v20261115", "2026-11-15T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-std-133-old", "amazon-eks-node-al2023-x86_64-standard-1.33-v20261001", "2026-10-01T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-arm-133", "amazon-eks-node-al2023-arm64-standard-1.33-v20261101", "2026-11-01T00:00:00.000Z", ec2types.ArchitectureValuesArm64),
			image("ami-gpu-133", "amazon-eks-node-al2023-x86_64-nvidia-1.33-v20261101", "2026-11-01T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-neuron-133", "amazon-eks-node-al2023-x86_64-neuron-1.33-v20261101", "2026-11-01T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-br-133", "bottlerocket-aws-k8s-1.33-x86_64-v1.50.0-abc", "2026-11-02T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			image("ami-br-gpu-133", "bottlerocket-aws-k8s-1.33-nvidia-x86_64-v1.50.0-abc", "2026-11-03T00:00:00.000Z", ec2types.ArchitectureValuesX8664),
			{ImageId: aws.String("ami-mine"), Name: aws.String("team-ml-gpu-nvidia-2026"), CreationDate: aws.String("2026-11-04T00:00:00.000Z"),
				Architecture: ec2types.ArchitectureValuesX8664, ImageOwnerAlias: aws.String("self"), State: ec2types.ImageStateAvailable},
		},
	}
}

const eks = "/aws/service/eks/optimized-ami"

// newSSM publishes the images above under Amazon's parameter names.
func newSSM() *fakeSSM {
	return &fakeSSM{params: map[string]string{
		eks + "/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id":                                           "ami-std-133",
		eks + "/1.33/amazon-linux-2023/x86_64/standard/amazon-eks-node-al2023-x86_64-standard-1.33-v20261001/image_id": "ami-std-133-old",
		eks + "/1.34/amazon-linux-2023/x86_64/standard/recommended/image_id":                                           "ami-std-134",
		eks + "/1.33/amazon-linux-2023/arm64/standard/recommended/image_id":                                            "ami-arm-133",
		eks + "/1.33/amazon-linux-2023/x86_64/nvidia/recommended/image_id":                                             "ami-gpu-133",
		eks + "/1.33/amazon-linux-2023/x86_64/neuron/recommended/image_id":                                             "ami-neuron-133",
		"/aws/service/bottlerocket/aws-k8s-1.33/x86_64/latest/image_id":                                                "ami-br-133",
		"/aws/service/bottlerocket/aws-k8s-1.33-nvidia/x86_64/latest/image_id":                                         "ami-br-gpu-133",
	}}
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

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := awsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func reconcileOnce(t *testing.T, api EC2API, nc *awsv1.EC2NodeClass) (*awsv1.EC2NodeClass, error) {
	t.Helper()
	return reconcileWith(t, Deps{EC2: api}, nc)
}

// reconcileWith fills in what d leaves out (SSM, a 1.33 cluster, valid join
// settings) and reconciles nc once in a fake API server.
func reconcileWith(t *testing.T, d Deps, nc *awsv1.EC2NodeClass, objs ...client.Object) (*awsv1.EC2NodeClass, error) {
	t.Helper()
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(append(objs, nc)...).WithStatusSubresource(nc).Build()
	got, err := reconcileIn(t, kube, d, nc)
	return got, err
}

func reconcileIn(t *testing.T, kube client.Client, d Deps, nc *awsv1.EC2NodeClass) (*awsv1.EC2NodeClass, error) {
	t.Helper()
	if d.SSM == nil {
		d.SSM = newSSM()
	}
	if d.KubernetesVersion == nil {
		d.KubernetesVersion = version("1.33")
	}
	if d.Join == (JoinSettings{}) {
		d.Join = validJoin(t)
	}
	d.Client, d.Clock = kube, clocktesting.NewFakeClock(time.Unix(0, 0))
	c := NewController(d)
	obj := &awsv1.EC2NodeClass{}
	if err := kube.Get(context.Background(), client.ObjectKeyFromObject(nc), obj); err != nil {
		t.Fatal(err)
	}
	_, rerr := c.Reconcile(context.Background(), obj)
	got := &awsv1.EC2NodeClass{}
	if err := kube.Get(context.Background(), client.ObjectKeyFromObject(nc), got); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, rerr
		}
		t.Fatal(err)
	}
	return got, rerr
}

func amiIDs(amis []awsv1.AMI) []string {
	var out []string
	for _, a := range amis {
		out = append(out, a.ID+"/"+a.Arch+"/"+a.Variant)
	}
	return out
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
			{ID: "ami-std-133", Name: "amazon-eks-node-al2023-x86_64-standard-1.33-v20261101", Arch: "amd64", Variant: "standard"},
			{ID: "ami-gpu-133", Name: "amazon-eks-node-al2023-x86_64-nvidia-1.33-v20261101", Arch: "amd64", Variant: "nvidia"},
			{ID: "ami-neuron-133", Name: "amazon-eks-node-al2023-x86_64-neuron-1.33-v20261101", Arch: "amd64", Variant: "neuron"},
			{ID: "ami-arm-133", Name: "amazon-eks-node-al2023-arm64-standard-1.33-v20261101", Arch: "arm64", Variant: "standard"},
		},
		KubernetesVersion: "1.33",
		InstanceProfile:   "KarpenterNodeRole",
	}
	// amd64 sorts before arm64; standard, nvidia, neuron within.
	if diff := cmp.Diff(want, got.Status, cmpIgnoreConditions()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	for _, c := range []string{awsv1.ConditionSubnetsReady, awsv1.ConditionSecurityGroupsReady, awsv1.ConditionAMIsReady,
		awsv1.ConditionJoinSettingsReady, awsv1.ConditionCapacityReservationsReady, awsv1.ConditionEFAReady, awsv1.ConditionReady} {
		cond := conditions.Get(got.Status.Conditions, c)
		if cond == nil || cond.Status != metav1.ConditionTrue || cond.ObservedGeneration != 3 {
			t.Errorf("condition %s = %+v, want True at generation 3", c, cond)
		}
	}
	if !slices.Contains(got.Finalizers, awsv1.Finalizer) {
		t.Errorf("finalizers = %v, want %s", got.Finalizers, awsv1.Finalizer)
	}
	if r := got.ReadyCondition(); r == nil || r.Status != metav1.ConditionTrue {
		t.Errorf("ReadyCondition() = %+v, want True for the current generation", r)
	}
}

func TestAliasFollowsTheClusterVersion(t *testing.T) {
	tests := []struct {
		version string
		want    []string
	}{
		{"1.33", []string{"ami-std-133/amd64/standard"}},
		{"1.34", []string{"ami-std-134/amd64/standard"}},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			got, err := reconcileWith(t, Deps{EC2: newFake(), KubernetesVersion: version(tt.version)}, nodeClass(awsv1.AMISelectorTerm{Alias: "al2023"}))
			if err != nil {
				t.Fatal(err)
			}
			var std []string
			for _, id := range amiIDs(got.Status.AMIs) {
				if strings.HasSuffix(id, "amd64/standard") {
					std = append(std, id)
				}
			}
			if diff := cmp.Diff(tt.want, std); diff != "" {
				t.Errorf("standard amd64 image for Kubernetes %s (-want +got):\n%s", tt.version, diff)
			}
			if got.Status.KubernetesVersion != tt.version {
				t.Errorf("status.kubernetesVersion = %q, want %q", got.Status.KubernetesVersion, tt.version)
			}
		})
	}
}

func TestAliasVariants(t *testing.T) {
	tests := []struct {
		alias     string
		want      []string
		wantAsked string // one parameter the alias must have read
	}{
		{"al2023-nvidia", []string{"ami-gpu-133/amd64/nvidia"}, eks + "/1.33/amazon-linux-2023/arm64/nvidia/recommended/image_id"},
		{"al2023@v20261001", []string{"ami-std-133-old/amd64/standard"},
			eks + "/1.33/amazon-linux-2023/x86_64/nvidia/amazon-eks-node-al2023-x86_64-nvidia-1.33-v20261001/image_id"},
		{"bottlerocket", []string{"ami-br-133/amd64/standard", "ami-br-gpu-133/amd64/nvidia", "ami-br-133/amd64/neuron"},
			"/aws/service/bottlerocket/aws-k8s-1.33/arm64/latest/image_id"},
		{"bottlerocket-nvidia@v1.50.0", nil, "/aws/service/bottlerocket/aws-k8s-1.33-nvidia/x86_64/1.50.0/image_id"},
	}
	for _, tt := range tests {
		t.Run(tt.alias, func(t *testing.T) {
			ssmAPI := newSSM()
			got, err := reconcileWith(t, Deps{EC2: newFake(), SSM: ssmAPI}, nodeClass(awsv1.AMISelectorTerm{Alias: tt.alias}))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, amiIDs(got.Status.AMIs)); diff != "" {
				t.Errorf("AMIs (-want +got):\n%s", diff)
			}
			if !slices.Contains(ssmAPI.asked, tt.wantAsked) {
				t.Errorf("SSM parameters read %v, want %s among them", ssmAPI.asked, tt.wantAsked)
			}
			if tt.want == nil {
				cond := conditions.Get(got.Status.Conditions, awsv1.ConditionAMIsReady)
				if cond.Status != metav1.ConditionFalse || cond.Reason != ReasonNoMatch || !strings.Contains(cond.Message, tt.wantAsked) {
					t.Errorf("AMIsReady = %+v, want NoMatch naming the parameters", cond)
				}
			}
		})
	}
}

func TestNameAndIDTerms(t *testing.T) {
	tests := []struct {
		name string
		term awsv1.AMISelectorTerm
		want []string
	}{
		{"name alone", awsv1.AMISelectorTerm{Name: "team-ml-*"}, []string{"ami-mine/amd64/nvidia"}},
		{"name and owner", awsv1.AMISelectorTerm{Name: "*1.33-v2026*", Owner: "amazon"}, []string{"ami-std-133/amd64/standard", "ami-gpu-133/amd64/nvidia", "ami-neuron-133/amd64/neuron", "ami-arm-133/arm64/standard"}},
		{"id", awsv1.AMISelectorTerm{ID: "ami-br-133"}, []string{"ami-br-133/amd64/standard"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := reconcileOnce(t, newFake(), nodeClass(tt.term))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, amiIDs(got.Status.AMIs)); diff != "" {
				t.Errorf("AMIs (-want +got):\n%s", diff)
			}
			if got.Status.KubernetesVersion != "" {
				t.Errorf("kubernetesVersion = %q; only aliases depend on it", got.Status.KubernetesVersion)
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
	if !conditions.IsTrue(got.Status.Conditions, awsv1.ConditionSecurityGroupsReady) {
		t.Error("security groups resolved and must be Ready")
	}
}

func TestJoinSettingsGateReady(t *testing.T) {
	tests := []struct {
		name   string
		join   JoinSettings
		family string
		ready  bool
		want   string
	}{
		{"missing endpoint", JoinSettings{CABundle: "x", CIDR: "10.0.0.0/16"}, "", false, "--aws-cluster-endpoint"},
		{"CA not a certificate", JoinSettings{Endpoint: "https://x", CABundle: base64.StdEncoding.EncodeToString([]byte("hello")), CIDR: "10.0.0.0/16"}, "", false, "--aws-cluster-ca-bundle"},
		{"custom images join themselves", JoinSettings{Endpoint: "nope"}, awsv1.AMIFamilyCustom, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"})
			if tt.family != "" {
				nc.Spec.AMIFamily, nc.Spec.UserData = tt.family, aws.String("#!/bin/bash\n/opt/join.sh")
			}
			got, err := reconcileWith(t, Deps{EC2: newFake(), Join: tt.join}, nc)
			if err != nil {
				t.Fatal(err)
			}
			if conditions.IsTrue(got.Status.Conditions, awsv1.ConditionReady) != tt.ready {
				t.Fatalf("Ready = %+v, want %v", conditions.Get(got.Status.Conditions, awsv1.ConditionReady), tt.ready)
			}
			if msg := conditions.Get(got.Status.Conditions, awsv1.ConditionReady).Message; !strings.Contains(msg, tt.want) {
				t.Errorf("Ready message %q lacks %q", msg, tt.want)
			}
		})
	}
}

func TestCapacityReservationSelectors(t *testing.T) {
	end := time.Unix(1_900_000_000, 0).UTC()
	f := newFake()
	f.reservations = []ec2types.CapacityReservation{
		{CapacityReservationId: aws.String("cr-a"), InstanceType: aws.String("p5.48xlarge"), AvailabilityZone: aws.String("us-east-1a"),
			State: ec2types.CapacityReservationStateActive, InstanceMatchCriteria: ec2types.InstanceMatchCriteriaTargeted, OwnerId: aws.String("111122223333")},
		{CapacityReservationId: aws.String("cr-b"), InstanceType: aws.String("p5.48xlarge"), AvailabilityZone: aws.String("us-east-1b"),
			State: ec2types.CapacityReservationStateActive, InstanceMatchCriteria: ec2types.InstanceMatchCriteriaOpen, OwnerId: aws.String("444455556666"),
			ReservationType: ec2types.CapacityReservationTypeCapacityBlock, EndDate: &end, Tags: tag("team", "ml")},
		{CapacityReservationId: aws.String("cr-c"), InstanceType: aws.String("g5.xlarge"), AvailabilityZone: aws.String("us-east-1a"),
			State: ec2types.CapacityReservationStateActive, Tags: tag("team", "web"), OwnerId: aws.String("111122223333")},
		{CapacityReservationId: aws.String("cr-d"), InstanceType: aws.String("p5.48xlarge"), AvailabilityZone: aws.String("us-east-1a"),
			State: ec2types.CapacityReservationStateExpired, Tags: tag("team", "ml")},
	}
	nc := nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"})
	nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: "cr-a"}, {Tags: map[string]string{"team": "ml"}, OwnerID: "444455556666"}}
	got, err := reconcileOnce(t, f, nc)
	if err != nil {
		t.Fatal(err)
	}
	endTime := metav1.NewTime(end)
	want := []awsv1.CapacityReservation{
		{ID: "cr-a", InstanceType: "p5.48xlarge", Zone: "us-east-1a", OwnerID: "111122223333", Type: "default", InstanceMatchCriteria: "targeted"},
		{ID: "cr-b", InstanceType: "p5.48xlarge", Zone: "us-east-1b", OwnerID: "444455556666", Type: "capacity-block", InstanceMatchCriteria: "open", EndTime: &endTime},
	}
	if diff := cmp.Diff(want, got.Status.CapacityReservations); diff != "" {
		t.Errorf("reservations (-want +got):\n%s", diff)
	}
}

func TestEFACondition(t *testing.T) {
	f := newFake()
	got, err := reconcileOnce(t, f, nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"}))
	if err != nil {
		t.Fatal(err)
	}
	if !conditions.IsTrue(got.Status.Conditions, awsv1.ConditionEFAReady) {
		t.Errorf("EFAReady = %+v, want True: sg-1 allows itself both ways", conditions.Get(got.Status.Conditions, awsv1.ConditionEFAReady))
	}
	f.groups[0].IpPermissionsEgress = nil
	got, err = reconcileOnce(t, f, nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"}))
	if err != nil {
		t.Fatal(err)
	}
	cond := conditions.Get(got.Status.Conditions, awsv1.ConditionEFAReady)
	if cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, "sg-1") {
		t.Errorf("EFAReady = %+v, want False naming the group", cond)
	}
	if !conditions.IsTrue(got.Status.Conditions, awsv1.ConditionReady) {
		t.Error("EFA readiness must not gate Ready: only EFA launches need it")
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

// fakeCleaner records which node classes' launch templates were deleted.
type fakeCleaner struct{ deleted []string }

func (f *fakeCleaner) DeleteLaunchTemplates(_ context.Context, nodeClass string) error {
	f.deleted = append(f.deleted, nodeClass)
	return nil
}

func TestFinalizerCleansUpOnceClaimsAreGone(t *testing.T) {
	ctx := context.Background()
	nc := nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"})
	claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c1"},
		Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "default"}}}
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc, claim).WithStatusSubresource(nc).Build()
	iamAPI := &fakeIAM{profiles: map[string][]string{}}
	cleaner := &fakeCleaner{}
	d := Deps{EC2: newFake(), IAM: iamAPI, ClusterName: "prod", Cleaner: cleaner}
	if _, err := reconcileIn(t, kube, d, nc); err != nil {
		t.Fatal(err)
	}
	profile := InstanceProfileName("prod", "KarpenterNodeRole")
	if _, ok := iamAPI.profiles[profile]; !ok {
		t.Fatalf("profile %s not created", profile)
	}
	if err := kube.Delete(ctx, nc); err != nil {
		t.Fatal(err)
	}
	got, err := reconcileIn(t, kube, d, nc)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(cleaner.deleted) != 0 {
		t.Fatalf("finalized while nodeclaim c1 still uses the class (cleaned %v)", cleaner.deleted)
	}
	if msg := conditions.Get(got.Status.Conditions, awsv1.ConditionReady).Message; !strings.Contains(msg, "c1") {
		t.Errorf("Ready message %q does not name the claim it waits for", msg)
	}
	if err := kube.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	got, err = reconcileIn(t, kube, d, nc)
	if err != nil {
		t.Fatal(err)
	}
	if got != nil {
		t.Errorf("node class still present with finalizers %v", got.Finalizers)
	}
	if diff := cmp.Diff([]string{"default"}, cleaner.deleted); diff != "" {
		t.Errorf("launch templates deleted for (-want +got):\n%s", diff)
	}
	if _, ok := iamAPI.profiles[profile]; ok {
		t.Errorf("managed profile %s not deleted", profile)
	}
}

func TestFinalizerKeepsASharedProfile(t *testing.T) {
	ctx := context.Background()
	nc := nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"})
	other := nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"})
	other.Name = "other"
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc, other).WithStatusSubresource(nc, other).Build()
	iamAPI := &fakeIAM{profiles: map[string][]string{}}
	d := Deps{EC2: newFake(), IAM: iamAPI, ClusterName: "prod", Cleaner: &fakeCleaner{}}
	if _, err := reconcileIn(t, kube, d, nc); err != nil {
		t.Fatal(err)
	}
	if err := kube.Delete(ctx, nc); err != nil {
		t.Fatal(err)
	}
	if got, err := reconcileIn(t, kube, d, nc); err != nil || got != nil {
		t.Fatalf("got %v, %v; want the class gone", got, err)
	}
	if _, ok := iamAPI.profiles[InstanceProfileName("prod", "KarpenterNodeRole")]; !ok {
		t.Error("deleted a profile another node class launches with")
	}
}

func TestSweepDeletesOrphanedProfiles(t *testing.T) {
	nc := nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"})
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc).Build()
	used := InstanceProfileName("prod", "KarpenterNodeRole")
	orphan := InstanceProfileName("prod", "OldRole")
	busy := InstanceProfileName("prod", "BusyRole")
	foreign := InstanceProfileName("other-cluster", "OldRole")
	iamAPI := &fakeIAM{profiles: map[string][]string{used: {"KarpenterNodeRole"}, orphan: {"OldRole"}, busy: {"BusyRole"}, foreign: {"OldRole"}, "hand-made": nil}}
	f := newFake()
	f.instances = []ec2types.Instance{{InstanceId: aws.String("i-1"), Tags: tag(tagCluster, "prod"),
		IamInstanceProfile: &ec2types.IamInstanceProfile{Arn: aws.String("arn:aws:iam::111122223333:instance-profile/" + busy)}}}
	c := NewController(Deps{Client: kube, EC2: f, IAM: iamAPI, ClusterName: "prod"})
	if err := c.Sweep(context.Background()); err != nil {
		t.Fatal(err)
	}
	var left []string
	for name := range iamAPI.profiles {
		left = append(left, name)
	}
	slices.Sort(left)
	want := []string{busy, foreign, "hand-made", used}
	slices.Sort(want)
	if diff := cmp.Diff(want, left); diff != "" {
		t.Errorf("profiles left (-want +got):\n%s", diff)
	}
}

// A describe that fails once the class is resolved (throttling, a blip)
// keeps it Ready with its values: turned not Ready, every launch of the
// class stopped until the next reconcile. The error is still returned.
func TestAPIErrorKeepsAResolvedClassReady(t *testing.T) {
	f := newFake()
	nc := nodeClass(awsv1.AMISelectorTerm{ID: "ami-std-133"})
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc).WithStatusSubresource(nc).Build()
	got, err := reconcileIn(t, kube, Deps{EC2: f}, nc)
	if err != nil || !conditions.IsTrue(got.Status.Conditions, awsv1.ConditionReady) {
		t.Fatalf("first reconcile: %v, Ready %v", err, conditions.IsTrue(got.Status.Conditions, awsv1.ConditionReady))
	}
	subnets := got.Status.Subnets
	f.err = errors.New("RequestLimitExceeded")
	got, err = reconcileIn(t, kube, Deps{EC2: f}, got)
	if err == nil || !strings.Contains(err.Error(), "RequestLimitExceeded") {
		t.Fatalf("err = %v, want the API error returned for a retry", err)
	}
	if !conditions.IsTrue(got.Status.Conditions, awsv1.ConditionReady) {
		t.Errorf("Ready = %+v after a failed describe; want it kept", conditions.Get(got.Status.Conditions, awsv1.ConditionReady))
	}
	if len(got.Status.Subnets) == 0 || len(got.Status.Subnets) != len(subnets) {
		t.Errorf("subnets = %v, want the resolved %v kept", got.Status.Subnets, subnets)
	}
}
