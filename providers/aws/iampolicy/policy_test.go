package iampolicy_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/aws/iampolicy"
)

type statement struct {
	Sid       string
	Effect    string
	Action    any
	Resource  any
	Condition map[string]map[string]any
}

func list(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, len(x))
		for i, s := range x {
			out[i] = s.(string)
		}
		return out
	}
	return nil
}

func render(t *testing.T) []statement {
	t.Helper()
	raw, err := iampolicy.Render(iampolicy.Vars{Cluster: "prod-eks", Account: "111122223333", Region: "us-east-1",
		NodeRoleARN: "arn:aws:iam::111122223333:role/StowageNode-prod-eks"})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Statement []statement }
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Statement
}

// calls are the IAM actions behind every method of the narrowed SDK
// interfaces the provider and its controllers call through.
func calls() []string {
	var out []string
	for prefix, ifaces := range map[string][]reflect.Type{
		"ec2":     {reflect.TypeFor[awsprovider.EC2API](), reflect.TypeFor[nodeclass.EC2API]()},
		"pricing": {reflect.TypeFor[awsprovider.PricingAPI]()},
		"sqs":     {reflect.TypeFor[awsprovider.SQSAPI]()},
		"iam":     {reflect.TypeFor[nodeclass.IAMAPI]()},
		"ssm":     {reflect.TypeFor[nodeclass.SSMAPI]()},
	} {
		for _, it := range ifaces {
			for i := range it.NumMethod() {
				out = append(out, prefix+":"+it.Method(i).Name)
			}
		}
	}
	// Authorised on the side of those calls: CreateFleet launches through
	// RunInstances and tags at creation; launching with, or adding, the
	// node role passes it; CreateInstanceProfile tags the profile.
	out = append(out, "ec2:RunInstances", "ec2:CreateTags", "iam:PassRole", "iam:TagInstanceProfile")
	slices.Sort(out)
	return slices.Compact(out)
}

// TestPolicyGrantsExactlyTheCallsTheCodeMakes fails when a call is added
// without its permission, or a permission outlives its call.
func TestPolicyGrantsExactlyTheCallsTheCodeMakes(t *testing.T) {
	var granted []string
	for _, s := range render(t) {
		if s.Effect != "Allow" {
			t.Errorf("statement %s: effect %s", s.Sid, s.Effect)
		}
		granted = append(granted, list(s.Action)...)
	}
	slices.Sort(granted)
	granted = slices.Compact(granted)
	if diff := cmp.Diff(calls(), granted); diff != "" {
		t.Errorf("policy actions differ from the calls the code makes (-calls +policy):\n%s", diff)
	}
}

func hasCondition(s statement, op, key, want string) bool {
	v, ok := s.Condition[op][key]
	if !ok {
		return false
	}
	return slices.Contains(list(v), want)
}

// TestMutationsAreScopedToTheCluster: nothing the controller can change or
// delete is outside its own cluster's tag, and nothing existing can be
// retagged, so another cluster's machine can never be relabelled as this
// cluster's and then terminated.
func TestMutationsAreScopedToTheCluster(t *testing.T) {
	owned := []string{":instance/", ":launch-template/", ":placement-group/", ":volume/", ":fleet/", ":network-interface/"}
	for _, s := range render(t) {
		actions := list(s.Action)
		resources := list(s.Resource)
		readOnly := !slices.ContainsFunc(actions, func(a string) bool {
			_, verb, _ := strings.Cut(a, ":")
			return !strings.HasPrefix(verb, "Describe") && !strings.HasPrefix(verb, "Get") && !strings.HasPrefix(verb, "List")
		})
		for _, a := range actions {
			if strings.HasSuffix(a, "*") {
				t.Errorf("statement %s grants a wildcard action %s", s.Sid, a)
			}
		}
		if !readOnly && slices.Contains(resources, "*") {
			t.Errorf("statement %s grants %v on every resource", s.Sid, actions)
		}
		clusterTag := hasCondition(s, "StringEquals", "aws:ResourceTag/stowage.dev/cluster", "prod-eks") ||
			hasCondition(s, "StringEquals", "aws:RequestTag/stowage.dev/cluster", "prod-eks")
		if !readOnly && slices.ContainsFunc(resources, func(r string) bool {
			return slices.ContainsFunc(owned, func(o string) bool { return strings.Contains(r, o) })
		}) && !clusterTag {
			t.Errorf("statement %s changes %v without a stowage.dev/cluster tag condition", s.Sid, resources)
		}
		for _, a := range actions {
			switch a {
			case "ec2:TerminateInstances", "ec2:DeleteLaunchTemplate", "ec2:DeletePlacementGroup":
				if !hasCondition(s, "StringEquals", "aws:ResourceTag/stowage.dev/cluster", "prod-eks") {
					t.Errorf("%s in statement %s is not limited to resources tagged with this cluster", a, s.Sid)
				}
			case "ec2:CreateTags":
				for _, op := range []string{"RunInstances", "CreateFleet", "CreateLaunchTemplate", "CreatePlacementGroup"} {
					if !hasCondition(s, "StringEquals", "ec2:CreateAction", op) {
						t.Errorf("ec2:CreateTags in statement %s is allowed outside %s", s.Sid, op)
					}
				}
				if len(s.Condition["StringEquals"]["ec2:CreateAction"].([]any)) != 4 {
					t.Errorf("ec2:CreateTags in statement %s: ec2:CreateAction = %v, want only the four creating calls", s.Sid, s.Condition["StringEquals"]["ec2:CreateAction"])
				}
				if !hasCondition(s, "StringEquals", "aws:RequestTag/stowage.dev/cluster", "prod-eks") {
					t.Errorf("ec2:CreateTags in statement %s can tag with another cluster's name", s.Sid)
				}
			case "iam:PassRole":
				if r := list(s.Resource); len(r) != 1 || r[0] != "arn:aws:iam::111122223333:role/StowageNode-prod-eks" {
					t.Errorf("iam:PassRole on %v, want only the node role", r)
				}
			}
		}
	}
}

// TestCodeCannotRetag: the provider has no call that tags, or untags, an
// existing resource, whatever the policy allows.
func TestCodeCannotRetag(t *testing.T) {
	for _, it := range []reflect.Type{reflect.TypeFor[awsprovider.EC2API](), reflect.TypeFor[nodeclass.EC2API]()} {
		for _, m := range []string{"CreateTags", "DeleteTags", "ModifyInstanceAttribute"} {
			if _, ok := it.MethodByName(m); ok {
				t.Errorf("%s has %s: existing resources must never be retagged", it, m)
			}
		}
	}
}

func TestRenderValidates(t *testing.T) {
	_, err := iampolicy.Render(iampolicy.Vars{Cluster: "prod", Account: "12", Region: "mars", NodeRoleARN: "role"})
	for _, want := range []string{"--account \"12\"", "--region \"mars\"", "--node-role-arn \"role\""} {
		if !errors.Is(err, iampolicy.ErrInvalidVars) || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want ErrInvalidVars naming %s", err, want)
		}
	}
}

// TestOnePolicyInOnePlace: the docs point at this policy instead of
// carrying copies that drift apart.
func TestOnePolicyInOnePlace(t *testing.T) {
	for _, doc := range []string{"../../../docs/install-aws.md", "../../../docs/aws.md"} {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, grant := range []string{`"ec2:CreateFleet"`, `"ec2:TerminateInstances"`, `"iam:PassRole"`} {
			if strings.Contains(text, grant) {
				t.Errorf("%s grants %s itself; refer to providers/aws/iampolicy/controller-policy.json", doc, grant)
			}
		}
		if !strings.Contains(text, "stowage aws iam-policy") && !strings.Contains(text, "iampolicy/controller-policy.json") {
			t.Errorf("%s does not say where the IAM policy is", doc)
		}
	}
}
