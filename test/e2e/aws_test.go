//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/lifecycle"
	"github.com/stowage-k8s/stowage/pkg/controllers/termination"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/aws/mototest"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// awsCluster names this run's cluster: moto may be shared (CI runs one for
// every package), so its resources are kept apart by name and tag.
var awsCluster = fmt.Sprintf("aws-e2e-%d", os.Getpid())

// TestAWSNodeClaimOnMoto runs the AWS provider and the real lifecycle,
// termination and EC2NodeClass controllers against the local control plane
// and moto: a NodeClaim becomes a moto instance, a Node registered by a
// stand-in kubelet makes it Ready, and deleting the claim terminates the
// instance.
func TestAWSNodeClaimOnMoto(t *testing.T) {
	lifeLogOnce.Do(func() {
		// The same logger the lifecycle suite installs: stderr with -v only.
		out := io.Discard
		if testing.Verbose() {
			out = os.Stderr
		}
		log.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(out)))
	})
	moto, err := mototest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(moto.Stop)
	ctx := context.Background()
	api := moto.EC2()
	subnet := awsMakeNetwork(ctx, t, api)

	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, CRDs: true})
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, v1.AddToScheme, awsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	c, err := client.New(cp.Config, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	provider, err := awsprovider.New(awsprovider.Options{ClusterName: awsCluster, Region: "us-east-1", EC2: api, Kube: c,
		ClusterEndpoint: cp.Config.Host})
	if err != nil {
		t.Fatal(err)
	}
	awsStartManager(t, cp, scheme, provider, api)

	sel := map[string]string{"stowage.dev/discovery": awsCluster}
	nc := &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Tags: sel}},
			SubnetSelectorTerms:        []awsv1.SelectorTerm{{Tags: sel}},
			SecurityGroupSelectorTerms: []awsv1.SelectorTerm{{Tags: sel}},
			InstanceProfile:            "stowage-nodes",
		},
	}
	if err := c.Create(ctx, nc); err != nil {
		t.Fatal(err)
	}
	lifeEventually(t, "EC2NodeClass Ready", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(nc), nc)
		return err == nil && conditions.IsTrue(nc.Status.Conditions, awsv1.ConditionReady), err
	})

	claim := lifeClaim("aws-gpu", lifeOffering("g5.xlarge", "us-east-1a", v1.CapacityTypeSpot))
	claim.Spec.NodeClassRef = &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: nc.Name}
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	lifeEventually(t, "nodeclaim launched", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(claim), claim)
		return err == nil && claim.Status.ProviderID != "", err
	})
	inst := awsInstance(ctx, t, api, claim.Status.ProviderID)
	if string(inst.InstanceType) != "g5.xlarge" || inst.InstanceLifecycle != ec2types.InstanceLifecycleTypeSpot || aws.ToString(inst.SubnetId) != subnet {
		t.Errorf("moto instance %s (%s) in %s, want a g5.xlarge spot in %s", inst.InstanceType, inst.InstanceLifecycle, aws.ToString(inst.SubnetId), subnet)
	}

	node := awsRegisterNode(ctx, t, c, claim, aws.ToString(inst.PrivateDnsName))
	claim = lifeWaitReady(t, c, claim.Name)
	if claim.Status.NodeName != node.Name {
		t.Errorf("claim's node = %q, want %q", claim.Status.NodeName, node.Name)
	}

	if err := c.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	lifeWaitGone(t, c, claim)
	if state := awsInstance(ctx, t, api, claim.Status.ProviderID).State.Name; state != ec2types.InstanceStateNameTerminated &&
		state != ec2types.InstanceStateNameShuttingDown {
		t.Errorf("after deleting the claim the instance is %s, want terminated", state)
	}
	if list, err := provider.List(ctx); err != nil || len(list) != 0 {
		t.Errorf("provider still lists %d machines (%v)", len(list), err)
	}
}

// awsStartManager runs the controllers a NodeClaim needs, with the AWS provider.
func awsStartManager(t *testing.T, cp *controlplane.ControlPlane, scheme *runtime.Scheme, provider *awsprovider.Provider, api *ec2.Client) {
	t.Helper()
	mgr, err := manager.New(cp.Config, manager.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rec := mgr.GetEventRecorder("stowage")
	regs := []interface {
		Register(context.Context, manager.Manager) error
	}{
		lifecycle.NewController(lifecycle.Deps{Client: mgr.GetClient(), CloudProvider: provider, Recorder: rec, Unavailable: provider.Unavailable()}),
		termination.NewController(termination.Deps{Client: mgr.GetClient(), CloudProvider: provider, Recorder: rec,
			Options: termination.Options{DrainRequeue: 500 * time.Millisecond}}),
		nodeclass.NewController(nodeclass.Deps{EC2: api}),
	}
	for _, r := range regs {
		if err := r.Register(ctx, mgr); err != nil {
			cancel()
			t.Fatalf("registering %T: %v", r, err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
}

// awsRegisterNode plays the kubelet: it registers a Ready Node with the
// instance's providerID and the capacity the claim expects.
func awsRegisterNode(ctx context.Context, t *testing.T, c client.Client, claim *v1.NodeClaim, name string) *corev1.Node {
	t.Helper()
	if name == "" {
		name = "ip-" + claim.Name + ".ec2.internal"
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Spec: corev1.NodeSpec{ProviderID: claim.Status.ProviderID,
			Taints: []corev1.Taint{{Key: v1.UnregisteredTaintKey, Effect: corev1.TaintEffectNoExecute}}},
	}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	capacity := claim.Status.Capacity.DeepCopy()
	if capacity == nil {
		capacity = corev1.ResourceList{}
	}
	capacity[v1.ResourceNvidiaGPU] = resource.MustParse("1")
	allocatable := claim.Status.Allocatable.DeepCopy()
	if allocatable == nil {
		allocatable = capacity.DeepCopy()
	}
	allocatable[v1.ResourceNvidiaGPU] = resource.MustParse("1")
	// A merge patch carries no resourceVersion: the registration controller
	// may already be labelling the node.
	base := node.DeepCopy()
	node.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: allocatable,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if err := c.Status().Patch(ctx, node, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	return node
}

func awsInstance(ctx context.Context, t *testing.T, api *ec2.Client, providerID string) ec2types.Instance {
	t.Helper()
	id, err := awsprovider.ParseProviderID(providerID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) == 0 || len(out.Reservations[0].Instances) == 0 {
		t.Fatalf("describing %s: %v", id, err)
	}
	return out.Reservations[0].Instances[0]
}

// awsMakeNetwork makes a tagged subnet in us-east-1a, a security group and a
// tagged image in moto, and returns the subnet ID.
func awsMakeNetwork(ctx context.Context, t *testing.T, api *ec2.Client) string {
	t.Helper()
	tags := []ec2types.Tag{{Key: aws.String("stowage.dev/discovery"), Value: aws.String(awsCluster)}}
	vpc, err := api.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := api.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, AvailabilityZone: aws.String("us-east-1a"), CidrBlock: aws.String("10.1.1.0/24"),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSubnet, Tags: tags}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("nodes"), Description: aws.String("nodes"), VpcId: vpc.Vpc.VpcId,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: tags}}}); err != nil {
		t.Fatal(err)
	}
	base, err := api.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("architecture"), Values: []string{"x86_64"}}}})
	if err != nil || len(base.Images) == 0 {
		t.Fatalf("moto has no x86_64 image: %v", err)
	}
	src, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: base.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := api.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: src.Instances[0].InstanceId, Name: aws.String(awsCluster + "-al2023-nvidia")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{aws.ToString(img.ImageId)}, Tags: tags}); err != nil {
		t.Fatal(err)
	}
	if _, err := api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(src.Instances[0].InstanceId)}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(sn.Subnet.SubnetId)
}
