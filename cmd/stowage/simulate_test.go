package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/stowage-k8s/stowage/pkg/solver"
)

const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, resources: {requests: {cpu: "1", memory: 1Gi}}}]
`

// onePerPod stands in for the solver: each pod on its own node of the
// pool's first instance type and offering.
func onePerPod(_ context.Context, s *solver.Snapshot) (*solver.Plan, error) {
	plan := &solver.Plan{}
	pool := s.NodePools[0]
	it := pool.InstanceTypes[0]
	for _, p := range s.Pods {
		n := &solver.NewNode{NodePool: pool.Name, Pods: []*corev1.Pod{p}, Choices: []solver.Choice{{InstanceType: it, Offering: it.Offerings[0]}}}
		plan.NewNodes = append(plan.NewNodes, n)
		plan.CostPerHour += it.Offerings[0].PricePerHour
	}
	plan.LowerBoundPerHour = plan.CostPerHour / 2
	return plan, nil
}

func stubSolver(t *testing.T) {
	old := solve
	t.Cleanup(func() { solve = old })
	solve = onePerPod
}

func writeManifest(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "web.yaml"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestSimulateJSON(t *testing.T) {
	stubSolver(t)
	out, err := run(t, "simulate", "-f", writeManifest(t, webDeployment), "--catalog", "aws/us-east-1", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range got {
			if !yield(k) {
				return
			}
		}
	})
	want := []string{"costPerHour", "lowerBoundPerHour", "naiveCostPerHour", "nodes", "solveSeconds", "unschedulable"}
	if diff := cmp.Diff(want, keys); diff != "" {
		t.Errorf("JSON keys (-want +got):\n%s", diff)
	}
	var nodes []map[string]any
	if err := json.Unmarshal(got["nodes"], &nodes); err != nil {
		t.Fatal(err)
	}
	if len(nodes) != 2 {
		t.Fatalf("got %d nodes, want 2 (one per pod from the stub solver)", len(nodes))
	}
	var nodeKeys []string
	for k := range nodes[0] {
		nodeKeys = append(nodeKeys, k)
	}
	slices.Sort(nodeKeys)
	if diff := cmp.Diff([]string{"capacityType", "instanceType", "pods", "pricePerHour", "zone"}, nodeKeys); diff != "" {
		t.Errorf("node keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]any{"default/web-0"}, nodes[0]["pods"]); diff != "" {
		t.Errorf("first node's pods (-want +got):\n%s", diff)
	}
	if string(got["unschedulable"]) != "[]" {
		t.Errorf("unschedulable = %s, want []", got["unschedulable"])
	}
}

func TestSimulateTable(t *testing.T) {
	stubSolver(t)
	out, err := run(t, "simulate", "-f", writeManifest(t, webDeployment))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"INSTANCE TYPE", "2 nodes for 2 pods", "naive:", "lower bound:", "gap 100.0%"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestSimulateManifestErrorNamesTheFile(t *testing.T) {
	stubSolver(t)
	dir := writeManifest(t, strings.Replace(webDeployment, `cpu: "1"`, "cpu: one", 1))
	_, err := run(t, "simulate", "-f", dir)
	want := filepath.Join(dir, "web.yaml") + ": document 1 (Deployment default/web): spec.template.spec.containers[0].resources.requests.cpu"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %v, want one containing %q", err, want)
	}
}

func TestSimulateWarningsOnStderr(t *testing.T) {
	stubSolver(t)
	dir := writeManifest(t, webDeployment+"---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\n")
	out, errOut, err := runWithStderr("simulate", "-f", dir, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "warning: "+filepath.Join(dir, "web.yaml")+": document 2 (Service web): skipped") {
		t.Errorf("stderr lacks the skipped Service: %q", errOut)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Errorf("stdout is not pure JSON: %v\n%s", err, out)
	}
}

// TestSimulateSeedsExample runs the real solver through the command on the
// seeds scenario and checks the plan's invariants, not its prices.
func TestSimulateSeedsExample(t *testing.T) {
	out, err := run(t, "simulate", "-f", filepath.Join("..", "..", "test", "scenarios", "seeds-example"), "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Nodes []struct {
			PricePerHour float64  `json:"pricePerHour"`
			Pods         []string `json:"pods"`
		} `json:"nodes"`
		Unschedulable     []any   `json:"unschedulable"`
		CostPerHour       float64 `json:"costPerHour"`
		NaiveCostPerHour  float64 `json:"naiveCostPerHour"`
		LowerBoundPerHour float64 `json:"lowerBoundPerHour"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	placed, sum := 0, 0.0
	for _, n := range r.Nodes {
		placed += len(n.Pods)
		sum += n.PricePerHour
	}
	if placed != 10 || len(r.Unschedulable) != 0 {
		t.Errorf("placed %d of 10 pods, %d unschedulable", placed, len(r.Unschedulable))
	}
	if d := r.CostPerHour - sum; d > 1e-6 || d < -1e-6 {
		t.Errorf("costPerHour %v is not the sum of node prices %v", r.CostPerHour, sum)
	}
	if r.CostPerHour < r.LowerBoundPerHour-1e-6 || r.CostPerHour > r.NaiveCostPerHour {
		t.Errorf("cost %v outside [lower bound %v, naive %v]", r.CostPerHour, r.LowerBoundPerHour, r.NaiveCostPerHour)
	}
}

// TestSimulateRejectsBadInput is issue 10 #3, #4, #5 and #12 as a user meets
// them: each used to plan something (or say nothing useful) and exit 0.
func TestSimulateRejectsBadInput(t *testing.T) {
	stubSolver(t)
	gpuPod := func(field, value string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata: {name: train}\nspec:\n  " + field + ": " + value +
			"\n  containers: [{name: c, resources: {requests: {nvidia.com/gpu: \"8\"}}}]\n"
	}
	cases := []struct {
		name, manifest string
		args           []string
		want           string // in the error; empty: must succeed
	}{
		{name: "cpu of 1e400", manifest: strings.Replace(webDeployment, `cpu: "1"`, `cpu: "1e400"`, 1),
			want: `requests[cpu]: Invalid value: "10e399": is more than Stowage can count`},
		{name: "memory of 99999999Ei", manifest: strings.Replace(webDeployment, `memory: 1Gi`, `memory: 99999999Ei`, 1),
			want: `requests[memory]: Invalid value: "9223372036854775807": is more than Stowage can count`},
		{name: "misspelled nodeSelector", manifest: gpuPod("nodeSelecter", "{stowage.dev/gpu-count: \"8\"}"),
			want: "(Pod default/train): spec.nodeSelecter: unknown field"},
		{name: "misspelled nodeSelector allowed", manifest: gpuPod("nodeSelecter", "{stowage.dev/gpu-count: \"8\"}"),
			args: []string{"--allow-unknown-fields"}},
		{name: "more pods than --max-pods", manifest: webDeployment, args: []string{"--max-pods", "1"},
			want: "spec.replicas: 2 more pods would make 2 in all, more than the limit of 1 (--max-pods raises it)"},
		{name: "empty file", manifest: "# nothing yet\n", want: "web.yaml is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeManifest(t, tc.manifest)
			_, errOut, err := runWithStderr(append([]string{"simulate", "-f", dir}, tc.args...)...)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("want success, got %v", err)
			case tc.want == "" && !strings.Contains(errOut, "warning:"):
				t.Errorf("want a warning on stderr, got %q", errOut)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
