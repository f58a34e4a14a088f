package contract

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/aws/iampolicy"
	"github.com/stowage-k8s/stowage/providers/aws/mototest"
)

// motoAccount is the account moto runs everything in.
const motoAccount = "123456789012"

// widenResources sets every statement's Resource to "*": moto matches the
// Resource element against "*" only, so a scoped ARN would deny everything
// there. What moto checks is the action list; resources and tag conditions
// are checked by the iampolicy tests and, for terminating, by the provider.
func widenResources(t *testing.T, policy []byte) string {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(policy, &doc); err != nil {
		t.Fatal(err)
	}
	for _, s := range doc["Statement"].([]any) {
		s.(map[string]any)["Resource"] = "*"
	}
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestEveryCallWorksWithOnlyThePolicy runs the provider, the node class
// controller and the interruption source against a moto that enforces IAM,
// as a user holding nothing but Stowage's policy: a call the policy forgot
// fails here with AccessDenied.
func TestEveryCallWorksWithOnlyThePolicy(t *testing.T) {
	srv, err := mototest.StartPrivate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ctx := log.IntoContext(context.Background(), testr.New(t))
	cluster := "leastprivilege"

	// Set up as the account's administrator, before enforcement starts.
	adminEC2, adminIAM := srv.EC2(), srv.IAM()
	n := makeNetwork(ctx, t, adminEC2, cluster)
	root := "/stowage-test/" + cluster
	publish(ctx, t, srv.SSM(), root+"/eks/optimized-ami/1.33/amazon-linux-2023/x86_64/standard/recommended/image_id", n.ami)
	role := "StowageNode-" + cluster
	if _, err := adminIAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	queue, err := srv.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String("stowage-" + cluster)})
	if err != nil {
		t.Fatal(err)
	}
	// An instance of the cluster with a spot interruption notice waiting.
	noticed, err := adminEC2.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String(n.ami), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		Placement: &ec2types.Placement{AvailabilityZone: aws.String("us-east-1a")},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeInstance,
			Tags: []ec2types.Tag{{Key: aws.String(awsprovider.TagCluster), Value: aws.String(cluster)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	noticedID := aws.ToString(noticed.Instances[0].InstanceId)
	if _, err := srv.SQS().SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: queue.QueueUrl, MessageBody: aws.String(
		eventBody("aws.ec2", "EC2 Spot Instance Interruption Warning", `{"instance-id":"`+noticedID+`"}`))}); err != nil {
		t.Fatal(err)
	}
	rendered, err := iampolicy.Render(iampolicy.Vars{Cluster: cluster, Account: motoAccount, Region: mototest.Region,
		NodeRoleARN: "arn:aws:iam::" + motoAccount + ":role/" + role})
	if err != nil {
		t.Fatal(err)
	}
	// moto validates the document's grammar here.
	pol, err := adminIAM.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String("StowageController"), PolicyDocument: aws.String(widenResources(t, rendered))})
	if err != nil {
		t.Fatalf("moto rejected the policy document: %v", err)
	}
	if _, err := adminIAM.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("stowage")}); err != nil {
		t.Fatal(err)
	}
	if _, err := adminIAM.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String("stowage"), PolicyArn: pol.Policy.Arn}); err != nil {
		t.Fatal(err)
	}
	key, err := adminIAM.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("stowage")})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.EnforceIAM(); err != nil {
		t.Fatal(err)
	}
	cfg := srv.ConfigFor(aws.ToString(key.AccessKey.AccessKeyId), aws.ToString(key.AccessKey.SecretAccessKey))
	api, iamAPI, ssmAPI, sqsAPI := ec2.NewFromConfig(cfg), iam.NewFromConfig(cfg), ssm.NewFromConfig(cfg), sqs.NewFromConfig(cfg)

	// Enforcement is on: a call outside the policy is refused.
	if _, err := api.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String("i-1"),
		DisableApiTermination: &ec2types.AttributeBooleanValue{Value: aws.Bool(true)}}); err == nil || !strings.Contains(err.Error(), "not authorized") {
		t.Fatalf("ModifyInstanceAttribute outside the policy: err = %v, want a refusal", err)
	}
	if _, err := api.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{"i-1"}, Tags: []ec2types.Tag{{Key: aws.String(awsprovider.TagCluster)}}}); err == nil {
		t.Fatal("DeleteTags is outside the policy and must be refused")
	}

	nc := ec2NodeClass(cluster)
	nc.Spec.AMISelectorTerms = []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}}
	nc.Spec.InstanceProfile, nc.Spec.Role = "", role
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc).WithStatusSubresource(nc).Build()
	p, err := awsprovider.New(awsprovider.Options{ClusterName: cluster, Region: mototest.Region, EC2: api, Kube: kube})
	if err != nil {
		t.Fatal(err)
	}
	ctrl := nodeclass.NewController(nodeclass.Deps{Client: kube, EC2: api, IAM: iamAPI, SSM: ssmAPI, ParameterRoot: root,
		ClusterName: cluster, Join: joinSettings(t), Cleaner: p, Clock: clocktesting.NewFakeClock(time.Now()),
		KubernetesVersion: func(context.Context) (string, error) { return "1.33", nil }})
	reconcile := func() {
		t.Helper()
		obj := &awsv1.EC2NodeClass{}
		if err := kube.Get(ctx, client.ObjectKeyFromObject(nc), obj); err != nil {
			t.Fatal(err)
		}
		if _, err := ctrl.Reconcile(ctx, obj); err != nil {
			t.Fatalf("node class controller with only the policy: %v", err)
		}
	}
	reconcile()
	if err := kube.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
		t.Fatal(err)
	}
	if !conditions.IsTrue(nc.Status.Conditions, awsv1.ConditionReady) {
		t.Fatalf("node class not Ready with only the policy: %+v", conditions.Get(nc.Status.Conditions, awsv1.ConditionReady))
	}

	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	pool.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: nc.Name}
	if _, err := p.InstanceTypes(ctx, pool); err != nil {
		t.Fatal(err)
	}
	var launched []*v1.NodeClaim
	for _, ch := range []v1.OfferingChoice{
		{InstanceType: "m5.large", Zone: "us-east-1a", CapacityType: v1.CapacityTypeSpot},
		{InstanceType: "m5.large", Zone: "us-east-1b", CapacityType: v1.CapacityTypeOnDemand},
	} {
		c, err := p.Create(ctx, launchClaim("lp-"+ch.CapacityType, ch))
		if err != nil {
			t.Fatalf("launching %s with only the policy: %v", ch.CapacityType, err)
		}
		launched = append(launched, c)
	}
	if _, err := p.IsDrifted(ctx, launched[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := p.List(ctx); err != nil {
		t.Fatal(err)
	}

	// The interruption notice is read, its instance looked up, and the message deleted.
	if _, err := srv.EC2().DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err == nil {
		t.Fatal("the administrator's credentials must be refused once IAM is enforced")
	}
	src, err := awsprovider.NewInterruptionSource(awsprovider.InterruptionOptions{QueueURL: aws.ToString(queue.QueueUrl), SQS: sqsAPI, EC2: api,
		ClusterName: cluster, WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	events, err := src.Interruptions(runCtx)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-events:
		if e.ProviderID != "aws:///us-east-1a/"+noticedID {
			t.Errorf("interruption for %s, want %s", e.ProviderID, noticedID)
		}
		if err := e.Ack(ctx); err != nil {
			t.Fatalf("deleting the message with only the policy: %v", err)
		}
	case <-runCtx.Done():
		t.Fatal("no interruption event read with only the policy")
	}
	cancel()
	for range events { //nolint:revive // drain until the source stops
	}

	for _, c := range launched {
		if err := p.Delete(ctx, c); err != nil {
			t.Fatalf("terminating with only the policy: %v", err)
		}
	}
	if err := p.CollectLaunchTemplates(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ctrl.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	// Deleting the node class deletes its templates and instance profile.
	if err := kube.Delete(ctx, nc); err != nil {
		t.Fatal(err)
	}
	reconcile()
	if _, err := iamAPI.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(nodeclass.InstanceProfileName(cluster, role))}); err == nil {
		t.Error("the node class's instance profile outlived it")
	}
}
