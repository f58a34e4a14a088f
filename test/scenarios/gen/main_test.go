package main

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/test/scenarios"
)

func TestWriteRoundTrips(t *testing.T) {
	want := scenarios.Diverse(100)
	var buf bytes.Buffer
	if err := write(&buf, want); err != nil {
		t.Fatal(err)
	}
	set, err := manifest.Decode("diverse.yaml", buf.Bytes())
	if err != nil {
		t.Fatalf("generated manifests do not decode: %v", err)
	}
	if len(set.Pods) != len(want) {
		t.Fatalf("decoded %d pods, want %d", len(set.Pods), len(want))
	}
	for i, got := range set.Pods {
		if diff := cmp.Diff(want[i].ObjectMeta, got.ObjectMeta); diff != "" {
			t.Fatalf("pod %d metadata (-generated +decoded):\n%s", i, diff)
		}
		if diff := cmp.Diff(want[i].Spec, got.Spec); diff != "" {
			t.Fatalf("pod %d spec (-generated +decoded):\n%s", i, diff)
		}
	}
}
