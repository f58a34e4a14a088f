package nodeclass

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// IAMAPI is exactly the IAM calls the controller makes. *iam.Client implements it.
type IAMAPI interface {
	GetInstanceProfile(context.Context, *iam.GetInstanceProfileInput, ...func(*iam.Options)) (*iam.GetInstanceProfileOutput, error)
	CreateInstanceProfile(context.Context, *iam.CreateInstanceProfileInput, ...func(*iam.Options)) (*iam.CreateInstanceProfileOutput, error)
	AddRoleToInstanceProfile(context.Context, *iam.AddRoleToInstanceProfileInput, ...func(*iam.Options)) (*iam.AddRoleToInstanceProfileOutput, error)
	RemoveRoleFromInstanceProfile(context.Context, *iam.RemoveRoleFromInstanceProfileInput, ...func(*iam.Options)) (*iam.RemoveRoleFromInstanceProfileOutput, error)
	DeleteInstanceProfile(context.Context, *iam.DeleteInstanceProfileInput, ...func(*iam.Options)) (*iam.DeleteInstanceProfileOutput, error)
	ListInstanceProfiles(context.Context, *iam.ListInstanceProfilesInput, ...func(*iam.Options)) (*iam.ListInstanceProfilesOutput, error)
}

var _ IAMAPI = (*iam.Client)(nil)

// Tags on instance profiles the controller creates.
const (
	tagCluster   = "stowage.dev/cluster"
	tagNodeClass = awsv1.Group + "/ec2nodeclass"
)

// managedProfile reports whether name is a profile this cluster's Stowage
// made (and so may delete).
func managedProfile(cluster, name string) bool {
	base := InstanceProfileName(cluster, "")
	base = base[:len(base)-16]
	return strings.HasPrefix(name, base) && len(name) == len(base)+16
}

// InstanceProfileName is the profile Stowage manages for a node class's
// role: stable per cluster and role, within IAM's 128-character limit.
func InstanceProfileName(cluster, role string) string {
	sum := sha256.Sum256([]byte(role))
	name := "stowage_" + cluster
	if len(name) > 100 {
		name = name[:100]
	}
	return name + "_" + hex.EncodeToString(sum[:])[:16]
}

func isCode(err error, code string) bool {
	var apiErr smithy.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode() == code
}

// ensureInstanceProfile makes sure the managed profile exists and holds
// exactly the role, and returns its name.
func ensureInstanceProfile(ctx context.Context, api IAMAPI, cluster string, nc *awsv1.EC2NodeClass) (string, error) {
	name := InstanceProfileName(cluster, nc.Spec.Role)
	var roles []iamtypes.Role
	out, err := api.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	switch {
	case err == nil:
		roles = out.InstanceProfile.Roles
	case isCode(err, "NoSuchEntity"):
		_, err = api.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{
			InstanceProfileName: aws.String(name),
			Tags: []iamtypes.Tag{
				{Key: aws.String(tagCluster), Value: aws.String(cluster)},
				{Key: aws.String(tagNodeClass), Value: aws.String(nc.Name)},
			},
		})
		if err != nil && !isCode(err, "EntityAlreadyExists") {
			return "", fmt.Errorf("spec.role %s: creating instance profile %s: %w", nc.Spec.Role, name, err)
		}
	default:
		return "", fmt.Errorf("spec.role %s: reading instance profile %s: %w", nc.Spec.Role, name, err)
	}
	has := false
	for _, r := range roles {
		if aws.ToString(r.RoleName) == nc.Spec.Role {
			has = true
			continue
		}
		// A profile holds one role; a stale one (hash collision aside, only
		// after manual edits) is replaced.
		if _, err := api.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{
			InstanceProfileName: aws.String(name), RoleName: r.RoleName}); err != nil && !isCode(err, "NoSuchEntity") {
			return "", fmt.Errorf("spec.role %s: removing role %s from instance profile %s: %w", nc.Spec.Role, aws.ToString(r.RoleName), name, err)
		}
	}
	if !has {
		if _, err := api.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{
			InstanceProfileName: aws.String(name), RoleName: aws.String(nc.Spec.Role)}); err != nil && !isCode(err, "LimitExceeded") {
			return "", fmt.Errorf("spec.role %s: adding it to instance profile %s: %w", nc.Spec.Role, name, err)
		}
	}
	return name, nil
}

// deleteInstanceProfileIfUnused deletes a managed profile no live instance of
// the cluster runs with. It reports whether the profile is gone. An
// instance's credentials come from its profile, so one still in use is kept
// until its machines are replaced.
func deleteInstanceProfileIfUnused(ctx context.Context, iamAPI IAMAPI, ec2API EC2API, cluster, name string) (bool, error) {
	out, err := iamAPI.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(name)})
	switch {
	case isCode(err, "NoSuchEntity"):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("reading instance profile %s: %w", name, err)
	}
	arn := aws.ToString(out.InstanceProfile.Arn)
	inUse, err := profileInUse(ctx, ec2API, cluster, name, arn)
	if err != nil || inUse {
		return false, err
	}
	for _, r := range out.InstanceProfile.Roles {
		if _, err := iamAPI.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{
			InstanceProfileName: aws.String(name), RoleName: r.RoleName}); err != nil && !isCode(err, "NoSuchEntity") {
			return false, fmt.Errorf("removing role %s from instance profile %s: %w", aws.ToString(r.RoleName), name, err)
		}
	}
	if _, err := iamAPI.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String(name)}); err != nil && !isCode(err, "NoSuchEntity") {
		return false, fmt.Errorf("deleting instance profile %s: %w", name, err)
	}
	return true, nil
}

// profileInUse looks through the cluster's live instances for one running
// with the profile. The check is client-side: the iam-instance-profile.arn
// filter is not served everywhere the provider runs (moto lacks it).
func profileInUse(ctx context.Context, api EC2API, cluster, name, arn string) (bool, error) {
	pages := ec2.NewDescribeInstancesPaginator(api, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + tagCluster), Values: []string{cluster}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running", "stopping", "stopped", "shutting-down"}},
	}})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return false, fmt.Errorf("listing the cluster's instances: %w", err)
		}
		for _, r := range page.Reservations {
			for _, inst := range r.Instances {
				if p := inst.IamInstanceProfile; p != nil {
					got := aws.ToString(p.Arn)
					if got == arn || strings.HasSuffix(got, "/"+name) {
						return true, nil
					}
				}
			}
		}
	}
	return false, nil
}
