package crds

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

const nodePoolBase = `
apiVersion: stowage.dev/v1
kind: NodePool
spec:
  template:
    spec:
      requirements:
      - {key: stowage.dev/capacity-type, operator: In, values: [spot, on-demand]}
`

const nodeClaimBase = `
apiVersion: stowage.dev/v1
kind: NodeClaim
spec:
  offerings:
  - {instanceType: g5.xlarge, zone: us-east-1a, capacityType: spot}
`

// validationCase merges patch into a base object (lists are replaced whole,
// as in a JSON merge patch) and expects the API server to accept it, or to
// reject it with an error naming field and containing message.
type validationCase struct {
	name    string
	patch   string
	field   string // empty: must be accepted
	message string
	// issue marks the cases of issue 10, which also go through kubectl.
	issue bool
}

func TestNodePoolValidation(t *testing.T) {
	runValidation(t, nodePoolBase, nodePoolCases, goNodePool)
}

var nodePoolCases = []validationCase{
	{name: "minimal", patch: `{}`},
	{name: "everything set", patch: `
spec:
  weight: 100
  limits: {cpu: "1000", nvidia.com/gpu: "64"}
  template:
    metadata:
      labels: {team: ml, example.com/tier: gold}
    spec:
      requirements:
      - {key: stowage.dev/gpu-name, operator: In, values: [h100, a100, l4], minValues: 2}
      - {key: stowage.dev/gpu-count, operator: Gt, values: ["3"]}
      - {key: stowage.dev/gpu-memory, operator: Lt, values: ["-1"]}
      - {key: example.com/special, operator: Exists}
      taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
      startupTaints: [{key: gpu-operator/initializing, effect: NoSchedule}]
      expireAfter: Never
      terminationGracePeriod: 2h
      gpu: {timeSlicingReplicas: 4}
  disruption:
    consolidationPolicy: WhenEmpty
    consolidateAfter: 1h30m
    budgets:
    - {nodes: "20%", reasons: [Empty, Drifted]}
    - {nodes: "0", schedule: "0 9 * * mon-fri", duration: 8h}
`},
	{name: "mig profile", patch: `{spec: {template: {spec: {gpu: {migProfile: 1g.10gb}}}}}`},
	{name: "consolidation never", patch: `{spec: {disruption: {consolidateAfter: Never}}}`},

	{name: "label in the stowage.dev domain", patch: `{spec: {template: {metadata: {labels: {stowage.dev/team: ml}}}}}`,
		field: "spec.template.metadata.labels", message: "labels in the stowage.dev domain are reserved"},
	{name: "the zone as a template label", patch: `{spec: {template: {metadata: {labels: {topology.kubernetes.io/zone: us-east-1a}}}}}`,
		field: "spec.template.metadata.labels", message: "come from each node's machine; use requirements"},
	{name: "label value too long", patch: fmt.Sprintf(`{spec: {template: {metadata: {labels: {team: %s}}}}}`, strings.Repeat("a", 64)),
		field: "spec.template.metadata.labels.team", message: "may not be more than 63"},
	{name: "In without values", patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/gpu-name, operator: In}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "operator In requires at least one value"},
	{name: "Exists with values", patch: `{spec: {template: {spec: {requirements: [{key: team, operator: Exists, values: [a]}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "operators Exists and DoesNotExist take no values"},
	{name: "Gt with a non-integer", patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/gpu-count, operator: Gt, values: ["2.5"]}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "operators Gt and Lt take exactly one integer value"},
	{name: "Lt with two values", patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/gpu-count, operator: Lt, values: ["2", "3"]}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "operators Gt and Lt take exactly one integer value"},
	{name: "unknown operator", patch: `{spec: {template: {spec: {requirements: [{key: team, operator: Like, values: [a]}]}}}}`,
		field: "spec.template.spec.requirements[0].operator", message: "Unsupported value"},
	{name: "minValues above the number of values", patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/gpu-name, operator: In, values: [h100, a100], minValues: 3}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "minValues must not exceed the number of values"},
	{name: "unknown capacity type", patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/capacity-type, operator: In, values: [spot, preemptible]}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "capacity type must be one of reserved, spot, on-demand"},
	{name: "requirement on the nodepool label", patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/nodepool, operator: In, values: [a]}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "stowage.dev/nodepool is set by Stowage"},
	{name: "value longer than a label value", patch: fmt.Sprintf(`{spec: {template: {spec: {requirements: [{key: team, operator: In, values: [%s]}]}}}}`, strings.Repeat("a", 64)),
		field: "spec.template.spec.requirements[0].values[0]", message: "may not be more than 63"},
	{name: "budget schedule without duration", patch: `{spec: {disruption: {budgets: [{nodes: "0", schedule: "@daily"}]}}}`,
		field: "spec.disruption.budgets[0]", message: "schedule and duration must be set together"},
	{name: "budget duration without schedule", patch: `{spec: {disruption: {budgets: [{nodes: "0", duration: 1h}]}}}`,
		field: "spec.disruption.budgets[0]", message: "schedule and duration must be set together"},
	{name: "budget over 100%", patch: `{spec: {disruption: {budgets: [{nodes: "150%"}]}}}`,
		field: "spec.disruption.budgets[0].nodes", message: "should match"},
	{name: "budget duration in days", patch: `{spec: {disruption: {budgets: [{nodes: "1", schedule: "@daily", duration: 1d}]}}}`,
		field: "spec.disruption.budgets[0].duration", message: "must be a duration in hours, minutes and seconds"},
	{name: "time slicing and MIG together", patch: `{spec: {template: {spec: {gpu: {timeSlicingReplicas: 4, migProfile: 1g.10gb}}}}}`,
		field: "spec.template.spec", message: "gpu.timeSlicingReplicas and gpu.migProfile cannot both be set"},
	{name: "time slicing of one", patch: `{spec: {template: {spec: {gpu: {timeSlicingReplicas: 1}}}}}`,
		field: "spec.template.spec.gpu.timeSlicingReplicas", message: "should be greater than or equal to 2"},
	{name: "malformed MIG profile", patch: `{spec: {template: {spec: {gpu: {migProfile: half}}}}}`,
		field: "spec.template.spec.gpu.migProfile", message: "should match"},
	{name: "weight zero", patch: `{spec: {weight: 0}}`,
		field: "spec.weight", message: "should be greater than or equal to 1"},
	{name: "weight above 100", patch: `{spec: {weight: 101}}`,
		field: "spec.weight", message: "should be less than or equal to 100"},
	{name: "expireAfter in days", patch: `{spec: {template: {spec: {expireAfter: 30d}}}}`,
		field: "spec.template.spec.expireAfter", message: "must be a duration in hours, minutes and seconds"},
	{name: "consolidateAfter with spaces", patch: `{spec: {disruption: {consolidateAfter: "5 m"}}}`,
		field: "spec.disruption.consolidateAfter", message: "must be a duration in hours, minutes and seconds"},
	{name: "unknown consolidation policy", patch: `{spec: {disruption: {consolidationPolicy: Always}}}`,
		field: "spec.disruption.consolidationPolicy", message: "Unsupported value"},

	// Issue 10: values the API server used to store that break or mislead the controller.
	{name: "largest expireAfter", patch: `{spec: {template: {spec: {expireAfter: 999999h}}}}`},
	{name: "every bounded duration", patch: `
spec:
  template:
    spec: {terminationGracePeriod: 1h30m, registrationTimeout: 20m}
  disruption:
    minNodeLifetime: 5m
    budgets: [{nodes: "1", schedule: "*/15 9-17 1,15 jan-jun mon-fri", duration: 30m}]
`},
	{name: "limits at their bounds", patch: `{spec: {limits: {cpu: 9T, memory: 9P, nvidia.com/gpu: 0}}}`},
	{name: "expireAfter beyond a Go duration", issue: true, patch: `{spec: {template: {spec: {expireAfter: 99999999999999h}}}}`,
		field: "spec.template.spec.expireAfter", message: "must be a duration in hours, minutes and seconds"},
	{name: "consolidateAfter of seven-digit hours", issue: true, patch: `{spec: {disruption: {consolidateAfter: 1000000h}}}`,
		field: "spec.disruption.consolidateAfter", message: "at most 999999h"},
	{name: "terminationGracePeriod not a duration", issue: true, patch: `{spec: {template: {spec: {terminationGracePeriod: soon}}}}`,
		field: "spec.template.spec.terminationGracePeriod", message: "must be a duration in hours, minutes and seconds"},
	{name: "registrationTimeout beyond a Go duration", issue: true, patch: `{spec: {template: {spec: {registrationTimeout: 99999999999999h}}}}`,
		field: "spec.template.spec.registrationTimeout", message: "must be a duration in hours, minutes and seconds"},
	{name: "negative minNodeLifetime", issue: true, patch: `{spec: {disruption: {minNodeLifetime: -5s}}}`,
		field: "spec.disruption.minNodeLifetime", message: "must be a duration in hours, minutes and seconds"},
	{name: "taint effect Bogus", issue: true, patch: `{spec: {template: {spec: {taints: [{key: nvidia.com/gpu, effect: Bogus}]}}}}`,
		field: "spec.template.spec.taints[0].effect", message: "Unsupported value"},
	{name: "taint key with spaces", issue: true, patch: `{spec: {template: {spec: {taints: [{key: "bad key!!", effect: NoSchedule}]}}}}`,
		field: "spec.template.spec.taints[0]", message: "taint key must be a qualified name"},
	{name: "taint value with spaces", issue: true, patch: `{spec: {template: {spec: {taints: [{key: gpu, value: "a b", effect: NoSchedule}]}}}}`,
		field: "spec.template.spec.taints[0]", message: "taint value must be"},
	{name: "startup taint effect Bogus", issue: true, patch: `{spec: {template: {spec: {startupTaints: [{key: example.com/init, effect: Bogus}]}}}}`,
		field: "spec.template.spec.startupTaints[0].effect", message: "Unsupported value"},
	{name: "requirement key with spaces", issue: true, patch: `{spec: {template: {spec: {requirements: [{key: "bad key!!", operator: Exists}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "key must be a qualified name"},
	{name: "requirement value with spaces", issue: true, patch: `{spec: {template: {spec: {requirements: [{key: team, operator: In, values: ["a b"]}]}}}}`,
		field: "spec.template.spec.requirements[0].values[0]", message: "should match"},
	{name: "label key with spaces", issue: true, patch: `{spec: {template: {metadata: {labels: {"bad key!!": x}}}}}`,
		field: "spec.template.metadata.labels", message: "label keys must be qualified names"},
	{name: "label value with spaces", issue: true, patch: `{spec: {template: {metadata: {labels: {team: "a b"}}}}}`,
		field: "spec.template.metadata.labels", message: "label values must be at most 63 characters"},
	{name: "negative limit", issue: true, patch: `{spec: {limits: {cpu: "-5"}}}`,
		field: "spec.limits", message: "limits must be quantities from 0 to 9P"},
	{name: "limit of 1e400", issue: true, patch: `{spec: {limits: {cpu: "1e400"}}}`,
		field: "spec.limits", message: "limits must be quantities from 0 to 9P"},
	{name: "limit of 99999999Ei", issue: true, patch: `{spec: {limits: {memory: 99999999Ei}}}`,
		field: "spec.limits", message: "limits must be quantities from 0 to 9P"},
	{name: "GPU limit of 1e400", issue: true, patch: `{spec: {limits: {nvidia.com/gpu: "1e400"}}}`,
		field: "spec.limits", message: "limits must be quantities from 0 to 9P"},
	{name: "cron hour 25", issue: true, patch: `{spec: {disruption: {budgets: [{nodes: "0", schedule: "0 25 * * *", duration: 1h}]}}}`,
		field: "spec.disruption.budgets[0].schedule", message: "schedule must be a cron expression of five fields"},
	{name: "cron descriptor with a suffix", issue: true, patch: `{spec: {disruption: {budgets: [{nodes: "0", schedule: "@dailyXYZ", duration: 1h}]}}}`,
		field: "spec.disruption.budgets[0].schedule", message: "schedule must be a cron expression of five fields"},
	{name: "cron step of zero", issue: true, patch: `{spec: {disruption: {budgets: [{nodes: "0", schedule: "*/0 * * * *", duration: 1h}]}}}`,
		field: "spec.disruption.budgets[0].schedule", message: "schedule must be a cron expression of five fields"},
	{name: "cron with six fields", issue: true, patch: `{spec: {disruption: {budgets: [{nodes: "0", schedule: "0 0 9 * * *", duration: 1h}]}}}`,
		field: "spec.disruption.budgets[0].schedule", message: "schedule must be a cron expression of five fields"},
	{name: "In and NotIn the same value", issue: true, patch: `{spec: {template: {spec: {requirements: [{key: team, operator: In, values: [a]}, {key: team, operator: NotIn, values: [a]}]}}}}`,
		field: "spec.template.spec.requirements", message: "requirements contradict each other"},
	{name: "In and DoesNotExist on one key", issue: true, patch: `{spec: {template: {spec: {requirements: [{key: team, operator: In, values: [a]}, {key: team, operator: DoesNotExist}]}}}}`,
		field: "spec.template.spec.requirements", message: "requirements contradict each other"},
	{name: "Gt on a 20-digit number", issue: true, patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/gpu-count, operator: Gt, values: ["12345678901234567890"]}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "exactly one integer value of at most 18 digits"},
	{name: "Gt on a word", issue: true, patch: `{spec: {template: {spec: {requirements: [{key: stowage.dev/capacity-type, operator: Gt, values: [spot]}]}}}}`,
		field: "spec.template.spec.requirements[0]", message: "exactly one integer value"},
	{name: "nodeClassRef to a kind no provider serves", issue: true, patch: `{spec: {template: {spec: {nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}}}}}`,
		field: "spec.template.spec.nodeClassRef", message: "nodeClassRef must name a node class a provider serves"},
}

// goNodePool and goNodeClaim run pkg/validation on the object the API server
// saw, so the CRDs and the controllers cannot drift apart.
func goNodePool(t *testing.T, obj *unstructured.Unstructured) field.ErrorList {
	np := &v1.NodePool{}
	decodeInto(t, obj, np)
	return validation.NodePool(np)
}

func goNodeClaim(t *testing.T, obj *unstructured.Unstructured) field.ErrorList {
	nc := &v1.NodeClaim{}
	decodeInto(t, obj, nc)
	return validation.NodeClaim(nc)
}

func decodeInto(t *testing.T, obj *unstructured.Unstructured, out any) {
	t.Helper()
	b, err := json.Marshal(obj.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
}

func TestNodeClaimValidation(t *testing.T) {
	runValidation(t, nodeClaimBase, nodeClaimCases, goNodeClaim)
}

var nodeClaimCases = []validationCase{
	{name: "minimal", patch: `{}`},
	{name: "everything set", patch: `
spec:
  requirements: [{key: stowage.dev/gpu-count, operator: Gt, values: ["0"]}]
  offerings:
  - {instanceType: g5.xlarge, zone: us-east-1a, capacityType: reserved, reservationID: cr-1, pricePerHour: "0.0001"}
  - {instanceType: g5.xlarge, zone: us-east-1b, capacityType: on-demand, pricePerHour: "1.006"}
  resources: {requests: {cpu: "3", nvidia.com/gpu: "1"}}
  taints: [{key: nvidia.com/gpu, effect: NoSchedule}]
  nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
  expireAfter: 720h
  gpu: {migProfile: 3g.40gb}
`},
	{name: "no offerings", patch: `{spec: {offerings: []}}`,
		field: "spec.offerings", message: "should have at least 1 items"},
	{name: "unknown capacity type", patch: `{spec: {offerings: [{instanceType: g5.xlarge, zone: us-east-1a, capacityType: cheap}]}}`,
		field: "spec.offerings[0].capacityType", message: "Unsupported value"},
	{name: "empty instance type", patch: `{spec: {offerings: [{instanceType: "", zone: us-east-1a, capacityType: spot}]}}`,
		field: "spec.offerings[0].instanceType", message: "should be at least 1 chars long"},
	{name: "In without values", patch: `{spec: {requirements: [{key: stowage.dev/gpu-name, operator: In}]}}`,
		field: "spec.requirements[0]", message: "operator In requires at least one value"},
	{name: "bad expireAfter", patch: `{spec: {expireAfter: forever}}`,
		field: "spec.expireAfter", message: "must be a duration"},

	{name: "negative request", issue: true, patch: `{spec: {resources: {requests: {cpu: "-1"}}}}`,
		field: "spec.resources.requests", message: "requests must be quantities from 0 to 9P"},
	{name: "request of 1e400", issue: true, patch: `{spec: {resources: {requests: {nvidia.com/gpu: "1e400"}}}}`,
		field: "spec.resources.requests", message: "requests must be quantities from 0 to 9P"},
	{name: "negative price", issue: true, patch: `{spec: {offerings: [{instanceType: g5.xlarge, zone: us-east-1a, capacityType: spot, pricePerHour: "-1"}]}}`,
		field: "spec.offerings[0].pricePerHour", message: "price must be a non-negative decimal number"},
	{name: "price in words", issue: true, patch: `{spec: {offerings: [{instanceType: g5.xlarge, zone: us-east-1a, capacityType: spot, pricePerHour: cheap}]}}`,
		field: "spec.offerings[0].pricePerHour", message: "price must be a non-negative decimal number"},
	{name: "claim taint effect Bogus", issue: true, patch: `{spec: {taints: [{key: nvidia.com/gpu, effect: Bogus}]}}`,
		field: "spec.taints[0].effect", message: "Unsupported value"},
	{name: "claim nodeClassRef to an unknown kind", issue: true, patch: `{spec: {nodeClassRef: {group: example.com, kind: Thing, name: x}}}`,
		field: "spec.nodeClassRef", message: "nodeClassRef must name a node class a provider serves"},
}

func runValidation(t *testing.T, base string, cases []validationCase, goValidate func(*testing.T, *unstructured.Unstructured) field.ErrorList) {
	t.Helper()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := build(t, base, tc.patch, fmt.Sprintf("case-%d", i))
			goErrs := goValidate(t, obj.DeepCopy())
			err := cp.Client.Create(context.Background(), obj, client.DryRunAll)
			checkResult(t, err, tc.field, tc.message)
			checkGo(t, goErrs, tc.field)
		})
	}
}

// checkGo wants pkg/validation to agree: no errors for an accepted object,
// and an error at (or below) the field the API server named otherwise.
func checkGo(t *testing.T, errs field.ErrorList, want string) {
	t.Helper()
	if want == "" {
		if len(errs) > 0 {
			t.Errorf("the API server accepts the object but pkg/validation rejects it: %v", errs.ToAggregate())
		}
		return
	}
	for _, e := range errs {
		if strings.HasPrefix(dotted(e.Field), dotted(want)) {
			return
		}
	}
	t.Errorf("the API server rejects %s but pkg/validation does not; it says: %v", want, errs.ToAggregate())
}

// dotted writes map keys as the API server does: labels.team, not labels[team].
func dotted(path string) string { return mapKey.ReplaceAllString(path, ".$1") }

var mapKey = regexp.MustCompile(`\[([^\]0-9][^\]]*)\]`)

func checkResult(t *testing.T, err error, field, message string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("valid object rejected: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("invalid object accepted; want an error naming %s", field)
	}
	// A rule that fails to evaluate (e.g. "no such key") is a broken rule,
	// even when its message happens to be printed.
	if strings.Contains(err.Error(), "evaluating rule") {
		t.Errorf("a CEL rule failed to evaluate instead of rejecting cleanly:\n%v", err)
	}
	// The API server prefixes each cause with its field path: "<path>: <type>: <detail>".
	if !strings.Contains(err.Error(), field+":") || !strings.Contains(err.Error(), message) {
		t.Errorf("error does not name field %q with %q:\n%v", field, message, err)
	}
}

func TestNodeClaimSpecIsImmutable(t *testing.T) {
	ctx := context.Background()
	claim := build(t, nodeClaimBase, `{}`, "immutable")
	if err := cp.Client.Create(ctx, claim); err != nil {
		t.Fatalf("creating nodeclaim: %v", err)
	}
	t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), claim) })

	// Metadata and status may change.
	claim.SetLabels(map[string]string{v1.LabelNodePool: "gpu"})
	if err := cp.Client.Update(ctx, claim); err != nil {
		t.Fatalf("updating labels: %v", err)
	}
	if err := unstructured.SetNestedField(claim.Object, "fake://us-east-1a/i-1", "status", "providerID"); err != nil {
		t.Fatal(err)
	}
	if err := cp.Client.Status().Update(ctx, claim); err != nil {
		t.Fatalf("updating status: %v", err)
	}

	// The spec may not.
	offerings := []any{map[string]any{"instanceType": "g5.xlarge", "zone": "us-east-1b", "capacityType": "spot"}}
	if err := unstructured.SetNestedSlice(claim.Object, offerings, "spec", "offerings"); err != nil {
		t.Fatal(err)
	}
	checkResult(t, cp.Client.Update(ctx, claim), "spec", "spec is immutable")
}

// TestKubectlApplyNamesTheField goes through the real kubectl, as a user would.
func TestKubectlApplyNamesTheField(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed (Debian package kubernetes-client; .ci/run installs it)")
	}
	dir := t.TempDir()
	apply := func(name, doc string) (string, error) {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(kubectl, "--kubeconfig", cp.KubeconfigPath, "apply", "--dry-run=server", "-f", path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		return stderr.String(), err
	}

	valid := `
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: gpu}
spec:
  template:
    spec:
      requirements:
      - {key: stowage.dev/gpu-name, operator: In, values: [h100, a100]}
`
	if stderr, err := apply("valid", valid); err != nil {
		t.Fatalf("kubectl apply of a valid NodePool failed: %v\n%s", err, stderr)
	}
	invalid := strings.Replace(valid, "values: [h100, a100]}", "values: [h100, a100], minValues: 5}", 1)
	stderr, err := apply("invalid", invalid)
	if err == nil {
		t.Fatal("kubectl apply of an invalid NodePool succeeded")
	}
	for _, want := range []string{"spec.template.spec.requirements[0]", "minValues must not exceed the number of values"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("kubectl stderr does not contain %q:\n%s", want, stderr)
		}
	}

	// Every case of issue 10, as a user applying it would see it.
	for _, set := range []struct {
		base  string
		cases []validationCase
	}{{nodePoolBase, nodePoolCases}, {nodeClaimBase, nodeClaimCases}} {
		for i, tc := range set.cases {
			if !tc.issue {
				continue
			}
			t.Run(tc.name, func(t *testing.T) {
				obj := build(t, set.base, tc.patch, fmt.Sprintf("kubectl-%d", i))
				doc, err := yaml.Marshal(obj.Object)
				if err != nil {
					t.Fatal(err)
				}
				stderr, err := apply(fmt.Sprintf("issue-%d", i), string(doc))
				if err == nil {
					t.Fatalf("kubectl apply accepted it; want an error naming %s", tc.field)
				}
				if !strings.Contains(stderr, tc.field) || !strings.Contains(stderr, tc.message) {
					t.Errorf("kubectl stderr does not name %q with %q:\n%s", tc.field, tc.message, stderr)
				}
			})
		}
	}
}

// build merges patch into base and names the object.
func build(t *testing.T, base, patch, name string) *unstructured.Unstructured {
	t.Helper()
	var b, p map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		t.Fatalf("base: %v", err)
	}
	if err := yaml.Unmarshal([]byte(patch), &p); err != nil {
		t.Fatalf("patch: %v", err)
	}
	obj := &unstructured.Unstructured{Object: merge(b, p)}
	obj.SetName(name)
	return obj
}

// merge applies a JSON merge patch (RFC 7386) to a decoded object.
func merge(dst, patch map[string]any) map[string]any {
	if dst == nil {
		dst = map[string]any{}
	}
	for k, v := range patch {
		switch pv := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			dv, _ := dst[k].(map[string]any)
			dst[k] = merge(dv, pv)
		default:
			dst[k] = v
		}
	}
	return dst
}

// TestNodePoolDefaults checks the defaults the API server fills in, which
// controllers rely on instead of defaulting in code.
func TestNodePoolDefaults(t *testing.T) {
	obj := build(t, nodePoolBase, `{}`, "defaults")
	if err := cp.Client.Create(context.Background(), obj, client.DryRunAll); err != nil {
		t.Fatalf("creating minimal NodePool: %v", err)
	}
	spec, _, _ := unstructured.NestedMap(obj.Object, "spec")
	want := map[string]any{
		"disruption": map[string]any{
			"consolidationPolicy": "WhenEmptyOrUnderutilized",
			"consolidateAfter":    "0s",
			"budgets":             []any{map[string]any{"nodes": "10%"}},
			"repairAfter":         "15m",
		},
		"template": map[string]any{"spec": map[string]any{
			"expireAfter":         "720h",
			"registrationTimeout": "15m",
			"requirements": []any{map[string]any{
				"key": "stowage.dev/capacity-type", "operator": "In", "values": []any{"spot", "on-demand"},
			}},
		}},
	}
	if diff := cmp.Diff(want, spec); diff != "" {
		t.Errorf("defaulted spec (-want +got):\n%s", diff)
	}
}

const commitmentBase = `
apiVersion: stowage.dev/v1
kind: Commitment
spec:
  type: SavingsPlan
  amountPerHour: "12.50"
  discountPercent: 28
`

func TestCommitmentValidation(t *testing.T) {
	cases := []validationCase{
		{name: "savings plan", patch: `{}`},
		{name: "reserved instances of one family in one zone", patch: `
spec:
  type: ReservedInstances
  amountPerHour: null
  count: 12
  endTime: "2027-06-30T00:00:00Z"
  requirements:
  - {key: stowage.dev/instance-family, operator: In, values: [m7i]}
  - {key: topology.kubernetes.io/zone, operator: In, values: [us-east-1a]}
`},
		{name: "committed use as a count", patch: `{spec: {type: CommittedUse, amountPerHour: null, count: 4}}`},
		{name: "discount", patch: `{spec: {type: Discount, amountPerHour: null, discountPercent: 12}}`},

		{name: "unknown type", patch: `{spec: {type: Coupon}}`, field: "spec.type", message: "Unsupported value"},
		{name: "count and amount", patch: `{spec: {count: 3}}`, field: "spec", message: "exactly one of count and amountPerHour"},
		{name: "neither count nor amount", patch: `{spec: {type: CommittedUse, amountPerHour: null}}`, field: "spec", message: "exactly one of count and amountPerHour"},
		{name: "reserved instances by amount", patch: `{spec: {type: ReservedInstances}}`, field: "spec", message: "ReservedInstances are a count of machines"},
		{name: "savings plan by count", patch: `{spec: {amountPerHour: null, count: 3}}`, field: "spec", message: "a SavingsPlan is an amount per hour"},
		{name: "discount without a rate", patch: `{spec: {type: Discount, amountPerHour: null, discountPercent: null}}`, field: "spec", message: "a Discount needs discountPercent above 0"},
		{name: "discount with an amount", patch: `{spec: {type: Discount}}`, field: "spec", message: "except for type Discount"},
		{name: "zero amount", patch: `{spec: {amountPerHour: "0"}}`, field: "spec.amountPerHour", message: "amountPerHour must be above 0"},
		{name: "negative amount", patch: `{spec: {amountPerHour: "-5"}}`, field: "spec.amountPerHour", message: "amountPerHour must be above 0"},
		{name: "huge amount", patch: `{spec: {amountPerHour: "1e400"}}`, field: "spec.amountPerHour", message: ""},
		{name: "zero count", patch: `{spec: {type: ReservedInstances, amountPerHour: null, count: 0}}`, field: "spec.count", message: "should be greater than or equal to 1"},
		{name: "discount of 100%", patch: `{spec: {discountPercent: 100}}`, field: "spec.discountPercent", message: "should be less than or equal to 99"},
		{name: "bad requirement operator", patch: `{spec: {requirements: [{key: a, operator: Bogus}]}}`, field: "spec.requirements[0].operator", message: "Unsupported value"},
		{name: "minValues", patch: `{spec: {requirements: [{key: a, operator: In, values: [x], minValues: 1}]}}`, field: "spec.requirements", message: "minValues has no meaning"},
	}
	runValidation(t, commitmentBase, cases, goCommitment)
}

func goCommitment(t *testing.T, obj *unstructured.Unstructured) field.ErrorList {
	c := &v1.Commitment{}
	decodeInto(t, obj, c)
	return validation.Commitment(c)
}
