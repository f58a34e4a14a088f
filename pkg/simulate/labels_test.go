package simulate

import (
	"context"
	"testing"

	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// The Job and StatefulSet controllers label their pods (job-name,
// batch.kubernetes.io/job-name, statefulset.kubernetes.io/pod-name,
// apps.kubernetes.io/pod-index), and anti-affinity or spread written
// against those labels applies in the cluster; simulate must plan the
// pods with them.
func TestAuditControllerLabelsOnExpandedPods(t *testing.T) {
	for _, tt := range []struct{ name, doc string }{{
		name: "job-name",
		doc: `apiVersion: batch/v1
kind: Job
metadata: {name: train}
spec:
  parallelism: 3
  template:
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {job-name: train}}
      containers: [{name: c, resources: {requests: {cpu: 100m}}}]
`}, {
		name: "batch.kubernetes.io/job-name",
		doc: `apiVersion: batch/v1
kind: Job
metadata: {name: train}
spec:
  parallelism: 3
  template:
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: {matchLabels: {batch.kubernetes.io/job-name: train}}
      containers: [{name: c, resources: {requests: {cpu: 100m}}}]
`}, {
		name: "statefulset pod index",
		doc: `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 3
  template:
    spec:
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - topologyKey: kubernetes.io/hostname
            labelSelector: {matchExpressions: [{key: apps.kubernetes.io/pod-index, operator: Exists}]}
      containers: [{name: c, resources: {requests: {cpu: 100m}}}]
`}} {
		t.Run(tt.name, func(t *testing.T) {
			set, err := manifest.Decode("m.yaml", []byte(tt.doc))
			if err != nil {
				t.Fatal(err)
			}
			r, err := Run(context.Background(), Input{Manifests: set, Catalog: testCatalog()}, Options{Solve: func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Nodes) != 3 {
				t.Errorf("%d nodes for 3 pods that repel each other by hostname, want 3", len(r.Nodes))
			}
		})
	}
}
