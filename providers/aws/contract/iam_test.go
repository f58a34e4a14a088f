package contract

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
)

// TestInstanceProfileForRole has the controller create the instance profile
// for spec.role in moto's IAM, and leave it alone on the next pass.
func TestInstanceProfileForRole(t *testing.T) {
	ctx, cluster := begin(t)
	api, iamAPI := moto.EC2(), moto.IAM()
	makeNetwork(ctx, t, api, cluster)
	role := "StowageNode-" + cluster
	if _, err := iamAPI.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}
	nc := ec2NodeClass(cluster)
	nc.Spec.InstanceProfile, nc.Spec.Role = "", role
	kube := fake.NewClientBuilder().WithScheme(newScheme(t)).WithObjects(nc).WithStatusSubresource(nc).Build()
	c := nodeclass.NewController(nodeclass.Deps{Client: kube, EC2: api, IAM: iamAPI, ClusterName: cluster, Join: joinSettings(t),
		Clock: clocktesting.NewFakeClock(time.Unix(1_800_000_000, 0))})
	for range 2 { // the second pass finds everything in place
		if err := kube.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Reconcile(ctx, nc); err != nil {
			t.Fatal(err)
		}
	}
	if err := kube.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
		t.Fatal(err)
	}
	want := nodeclass.InstanceProfileName(cluster, role)
	if nc.Status.InstanceProfile != want || !conditions.IsTrue(nc.Status.Conditions, awsv1.ConditionReady) {
		t.Fatalf("status = %+v, want profile %s and Ready", nc.Status, want)
	}
	out, err := iamAPI.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(want)})
	if err != nil {
		t.Fatal(err)
	}
	if roles := out.InstanceProfile.Roles; len(roles) != 1 || aws.ToString(roles[0].RoleName) != role {
		t.Errorf("profile roles = %+v, want exactly %s", roles, role)
	}
}
