package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestImportKarpenterCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "pools.yaml")
	in := `apiVersion: karpenter.sh/v1
kind: NodePool
metadata:
  name: gpu
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: gpu}
      requirements:
        - {key: karpenter.k8s.aws/instance-gpu-name, operator: In, values: [h100]}
        - {key: karpenter.k8s.aws/instance-size, operator: NotIn, values: [metal]}
`
	if err := os.WriteFile(file, []byte(in), 0o600); err != nil {
		t.Fatal(err)
	}
	root := newRootCommand()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(in))
	root.SetArgs([]string{"import", "karpenter", "-f", file, "-f", "-"})
	if err := root.Execute(); err != nil {
		t.Fatalf("import karpenter: %v", err)
	}
	one := `apiVersion: stowage.dev/v1
kind: NodePool
metadata:
  name: gpu
spec:
  template:
    spec:
      nodeClassRef:
        group: aws.stowage.dev
        kind: EC2NodeClass
        name: gpu
      requirements:
      - key: stowage.dev/gpu-name
        operator: In
        values:
        - h100
`
	if diff := cmp.Diff(one+"---\n"+one, out.String()); diff != "" {
		t.Errorf("stdout mismatch (-want +got):\n%s", diff)
	}
	wantErr := "warning: " + file + "#1: NodePool/gpu: spec.template.spec.requirements[1].key: karpenter.k8s.aws/instance-size has no Stowage equivalent; " +
		"requirement dropped (constrain node.kubernetes.io/instance-type or stowage.dev/instance-family instead)\n" +
		"warning: stdin#1: NodePool/gpu: spec.template.spec.requirements[1].key: karpenter.k8s.aws/instance-size has no Stowage equivalent; " +
		"requirement dropped (constrain node.kubernetes.io/instance-type or stowage.dev/instance-family instead)\n"
	if diff := cmp.Diff(wantErr, errOut.String()); diff != "" {
		t.Errorf("stderr mismatch (-want +got):\n%s", diff)
	}
}

func TestImportKarpenterCommandErrors(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"import", "karpenter"}, "-f/--filename: at least one file is required"},
		{[]string{"import", "karpenter", "-f", "x.yaml", "-o", "table"}, "-o/--output: want yaml or json"},
		{[]string{"import", "karpenter", "-f", "/no/such/file.yaml"}, "-f /no/such/file.yaml: open /no/such/file.yaml"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			root := newRootCommand()
			root.SetOut(&bytes.Buffer{})
			root.SetErr(&bytes.Buffer{})
			root.SetArgs(tt.args)
			err := root.Execute()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// TestImportKarpenterRejects is issue 10 #7 as a user runs it: invalid pools
// fail the command with their reasons on stderr and nothing on stdout, and
// --skip-invalid converts the rest.
func TestImportKarpenterRejects(t *testing.T) {
	file := filepath.Join("..", "..", "pkg", "importer", "testdata", "karpenter-invalid.yaml")
	for _, skip := range []bool{false, true} {
		root := newRootCommand()
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		args := []string{"import", "karpenter", "-f", file}
		if skip {
			args = append(args, "--skip-invalid")
		}
		root.SetArgs(args)
		err := root.Execute()
		label := "error: "
		if skip {
			label = "skipped: "
		}
		want := label + file + "#2: NodePool/budget-over-100: rejected: spec.disruption.budgets[0].nodes: Invalid value: \"150%\""
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("skip=%v: stderr lacks %q:\n%s", skip, want, errOut.String())
		}
		switch {
		case !skip && (err == nil || !strings.Contains(err.Error(), "8 of 9 objects rejected")):
			t.Errorf("without --skip-invalid: error = %v, want 8 of 9 rejected", err)
		case !skip && out.Len() > 0:
			t.Errorf("without --skip-invalid, stdout must stay empty, got:\n%s", out.String())
		case skip && err != nil:
			t.Errorf("with --skip-invalid: %v", err)
		case skip && !strings.Contains(out.String(), "name: fine") || skip && strings.Contains(out.String(), "name: heavy"):
			t.Errorf("with --skip-invalid, stdout should hold only the valid pool:\n%s", out.String())
		}
	}
}
