// Package iampolicy holds the one IAM policy the Stowage controller needs on
// AWS, with placeholders for the cluster, account, region and node role.
// docs/install-aws.md renders it with `stowage aws iam-policy`; its test
// checks it against every AWS call the provider and its controllers make.
package iampolicy

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

//go:embed controller-policy.json
var template string

// Template is the policy with ${CLUSTER}, ${ACCOUNT}, ${REGION},
// ${PARTITION} and ${NODE_ROLE_ARN} placeholders, as envsubst reads it.
func Template() string { return template }

// Vars fill the placeholders.
type Vars struct {
	Cluster     string
	Account     string
	Region      string
	Partition   string // defaults to aws
	NodeRoleARN string
}

// ErrInvalidVars is wrapped when a placeholder value is missing or malformed.
var ErrInvalidVars = errors.New("invalid IAM policy values")

var (
	account = regexp.MustCompile(`^[0-9]{12}$`)
	region  = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]+$`)
	roleARN = regexp.MustCompile(`^arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]+$`)
	cluster = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]{0,99}$`)
)

// Render fills the placeholders and returns indented JSON.
func Render(v Vars) ([]byte, error) {
	if v.Partition == "" {
		v.Partition = "aws"
	}
	var errs []error
	check := func(ok bool, flag, value, want string) {
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s %q: want %s", ErrInvalidVars, flag, value, want))
		}
	}
	check(cluster.MatchString(v.Cluster), "--cluster-name", v.Cluster, "the EKS cluster name")
	check(account.MatchString(v.Account), "--account", v.Account, "a 12-digit account ID")
	check(region.MatchString(v.Region), "--region", v.Region, "a region such as us-east-1")
	check(roleARN.MatchString(v.NodeRoleARN), "--node-role-arn", v.NodeRoleARN, "arn:aws:iam::<account>:role/<name>")
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	out := strings.NewReplacer(
		"${CLUSTER}", v.Cluster, "${ACCOUNT}", v.Account, "${REGION}", v.Region,
		"${PARTITION}", v.Partition, "${NODE_ROLE_ARN}", v.NodeRoleARN,
	).Replace(template)
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("rendered policy is not JSON: %w", err)
	}
	return json.MarshalIndent(doc, "", "  ")
}
