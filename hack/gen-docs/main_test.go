package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNodePoolDocIsCurrent fails when docs/nodepool.md no longer matches the
// CRD schema; regenerate it with the command in this package's doc comment.
func TestNodePoolDocIsCurrent(t *testing.T) {
	root := filepath.Join("..", "..")
	out := filepath.Join(t.TempDir(), "nodepool.md")
	if err := run(filepath.Join(root, "pkg/apis/crds/stowage.dev_nodepools.yaml"), "nodepool-intro.md", out); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, "docs/nodepool.md"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("docs/nodepool.md is stale: go run ./hack/gen-docs -crd pkg/apis/crds/stowage.dev_nodepools.yaml -intro hack/gen-docs/nodepool-intro.md -o docs/nodepool.md\n(-want +got):\n%s", diff)
	}
}

func TestRunErrors(t *testing.T) {
	if err := run("", "", ""); err == nil {
		t.Errorf("run without -crd succeeded")
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("kind: CustomResourceDefinition\nspec: {versions: []}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run(bad, "", filepath.Join(t.TempDir(), "out.md")); err == nil {
		t.Errorf("run on a CRD without versions succeeded")
	}
}
