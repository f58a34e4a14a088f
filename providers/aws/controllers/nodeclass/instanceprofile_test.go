package nodeclass

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// fakeIAM keeps instance profiles in memory and records calls.
type fakeIAM struct {
	profiles map[string][]string // name -> roles
	calls    []string
	err      error
}

func (f *fakeIAM) GetInstanceProfile(_ context.Context, in *iam.GetInstanceProfileInput, _ ...func(*iam.Options)) (*iam.GetInstanceProfileOutput, error) {
	f.calls = append(f.calls, "Get")
	if f.err != nil {
		return nil, f.err
	}
	roles, ok := f.profiles[aws.ToString(in.InstanceProfileName)]
	if !ok {
		return nil, &smithy.GenericAPIError{Code: "NoSuchEntity"}
	}
	out := &iam.GetInstanceProfileOutput{InstanceProfile: &iamtypes.InstanceProfile{InstanceProfileName: in.InstanceProfileName,
		Arn: aws.String("arn:aws:iam::111122223333:instance-profile/" + aws.ToString(in.InstanceProfileName))}}
	for _, r := range roles {
		out.InstanceProfile.Roles = append(out.InstanceProfile.Roles, iamtypes.Role{RoleName: aws.String(r)})
	}
	return out, nil
}

func (f *fakeIAM) CreateInstanceProfile(_ context.Context, in *iam.CreateInstanceProfileInput, _ ...func(*iam.Options)) (*iam.CreateInstanceProfileOutput, error) {
	f.calls = append(f.calls, "Create")
	if f.profiles == nil {
		f.profiles = map[string][]string{}
	}
	f.profiles[aws.ToString(in.InstanceProfileName)] = nil
	return &iam.CreateInstanceProfileOutput{}, nil
}

func (f *fakeIAM) AddRoleToInstanceProfile(_ context.Context, in *iam.AddRoleToInstanceProfileInput, _ ...func(*iam.Options)) (*iam.AddRoleToInstanceProfileOutput, error) {
	f.calls = append(f.calls, "Add "+aws.ToString(in.RoleName))
	n := aws.ToString(in.InstanceProfileName)
	f.profiles[n] = append(f.profiles[n], aws.ToString(in.RoleName))
	return &iam.AddRoleToInstanceProfileOutput{}, nil
}

func (f *fakeIAM) RemoveRoleFromInstanceProfile(_ context.Context, in *iam.RemoveRoleFromInstanceProfileInput, _ ...func(*iam.Options)) (*iam.RemoveRoleFromInstanceProfileOutput, error) {
	f.calls = append(f.calls, "Remove "+aws.ToString(in.RoleName))
	n := aws.ToString(in.InstanceProfileName)
	var keep []string
	for _, r := range f.profiles[n] {
		if r != aws.ToString(in.RoleName) {
			keep = append(keep, r)
		}
	}
	f.profiles[n] = keep
	return &iam.RemoveRoleFromInstanceProfileOutput{}, nil
}

func (f *fakeIAM) DeleteInstanceProfile(_ context.Context, in *iam.DeleteInstanceProfileInput, _ ...func(*iam.Options)) (*iam.DeleteInstanceProfileOutput, error) {
	f.calls = append(f.calls, "Delete "+aws.ToString(in.InstanceProfileName))
	n := aws.ToString(in.InstanceProfileName)
	if len(f.profiles[n]) > 0 {
		return nil, &smithy.GenericAPIError{Code: "DeleteConflict"}
	}
	delete(f.profiles, n)
	return &iam.DeleteInstanceProfileOutput{}, nil
}

func (f *fakeIAM) ListInstanceProfiles(context.Context, *iam.ListInstanceProfilesInput, ...func(*iam.Options)) (*iam.ListInstanceProfilesOutput, error) {
	out := &iam.ListInstanceProfilesOutput{}
	for name := range f.profiles {
		out.InstanceProfiles = append(out.InstanceProfiles, iamtypes.InstanceProfile{InstanceProfileName: aws.String(name),
			Arn: aws.String("arn:aws:iam::111122223333:instance-profile/" + name)})
	}
	return out, nil
}

func TestInstanceProfileName(t *testing.T) {
	a := InstanceProfileName("prod", "NodeRole")
	if a != InstanceProfileName("prod", "NodeRole") || a == InstanceProfileName("prod", "OtherRole") || a == InstanceProfileName("dev", "NodeRole") {
		t.Error("name must be stable per (cluster, role) and differ otherwise")
	}
	if long := InstanceProfileName(strings.Repeat("c", 300), "r"); len(long) > 128 {
		t.Errorf("name has %d characters; IAM allows 128", len(long))
	}
}

func TestEnsureInstanceProfile(t *testing.T) {
	nc := nodeClass(awsv1.AMISelectorTerm{Alias: "al2023"})
	name := InstanceProfileName("prod", nc.Spec.Role)
	tests := []struct {
		name      string
		existing  map[string][]string
		wantCalls []string
	}{
		{"missing: create and add", map[string][]string{}, []string{"Get", "Create", "Add KarpenterNodeRole"}},
		{"present with the role: nothing to do", map[string][]string{name: {"KarpenterNodeRole"}}, []string{"Get"}},
		{"present with another role: swap", map[string][]string{name: {"Old"}}, []string{"Get", "Remove Old", "Add KarpenterNodeRole"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeIAM{profiles: tt.existing}
			got, err := ensureInstanceProfile(context.Background(), f, "prod", nc)
			if err != nil {
				t.Fatal(err)
			}
			if got != name {
				t.Errorf("profile = %s, want %s", got, name)
			}
			if diff := cmp.Diff(tt.wantCalls, f.calls); diff != "" {
				t.Errorf("IAM calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{"KarpenterNodeRole"}, f.profiles[name]); diff != "" {
				t.Errorf("roles (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReconcileInstanceProfileCondition(t *testing.T) {
	nc := nodeClass(awsv1.AMISelectorTerm{Alias: "al2023"})
	got, err := reconcileWith(t, Deps{EC2: newFake(), IAM: &fakeIAM{err: errors.New("AccessDenied")}, ClusterName: "prod"}, nc)
	if err == nil {
		t.Fatal("want the IAM error returned for backoff")
	}
	cond := conditions.Get(got.Status.Conditions, awsv1.ConditionInstanceProfileReady)
	if cond == nil || cond.Status != metav1.ConditionFalse || !strings.Contains(cond.Message, "AccessDenied") {
		t.Errorf("InstanceProfileReady = %+v", cond)
	}
	if conditions.IsTrue(got.Status.Conditions, awsv1.ConditionReady) {
		t.Error("Ready must be False without an instance profile")
	}
	got, err = reconcileWith(t, Deps{EC2: newFake(), IAM: &fakeIAM{profiles: map[string][]string{}}, ClusterName: "prod"}, nodeClass(awsv1.AMISelectorTerm{Alias: "al2023"}))
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.InstanceProfile != InstanceProfileName("prod", "KarpenterNodeRole") || !conditions.IsTrue(got.Status.Conditions, awsv1.ConditionReady) {
		t.Errorf("status = %+v, want the managed profile and Ready", got.Status)
	}
}
