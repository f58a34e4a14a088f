package crds

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
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
}

func TestNodePoolValidation(t *testing.T) {
	cases := []validationCase{
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
		{name: "label value too long", patch: fmt.Sprintf(`{spec: {template: {metadata: {labels: {team: %s}}}}}`, strings.Repeat("a", 64)),
			field: "spec.template.metadata.labels", message: "label values must be at most 63 characters"},
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
			field: "spec.disruption.budgets[0].duration", message: "should match"},
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
			field: "spec.template.spec.expireAfter", message: "should match"},
		{name: "consolidateAfter with spaces", patch: `{spec: {disruption: {consolidateAfter: "5 m"}}}`,
			field: "spec.disruption.consolidateAfter", message: "should match"},
		{name: "unknown consolidation policy", patch: `{spec: {disruption: {consolidationPolicy: Always}}}`,
			field: "spec.disruption.consolidationPolicy", message: "Unsupported value"},
	}
	runValidation(t, nodePoolBase, cases)
}

func TestNodeClaimValidation(t *testing.T) {
	cases := []validationCase{
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
			field: "spec.expireAfter", message: "should match"},
	}
	runValidation(t, nodeClaimBase, cases)
}

func runValidation(t *testing.T, base string, cases []validationCase) {
	t.Helper()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			obj := build(t, base, tc.patch, fmt.Sprintf("case-%d", i))
			err := cp.Client.Create(context.Background(), obj, client.DryRunAll)
			checkResult(t, err, tc.field, tc.message)
		})
	}
}

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
	runValidation(t, commitmentBase, cases)
}
