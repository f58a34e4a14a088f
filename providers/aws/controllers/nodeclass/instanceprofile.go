package nodeclass

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
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
}

var _ IAMAPI = (*iam.Client)(nil)

// Tags on instance profiles the controller creates.
const (
	tagCluster   = "stowage.dev/cluster"
	tagNodeClass = awsv1.Group + "/ec2nodeclass"
)

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
