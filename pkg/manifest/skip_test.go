package manifest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// A dump of a live cluster (kubectl get pods -A -o yaml) holds pods that
// already run, are done or wait for something other than a machine; the
// controller plans none of them (provisioning.provisionable), so simulate
// must not buy machines for them either.
func TestPodsAClusterWouldNotPlanAreSkipped(t *testing.T) {
	const pending = `apiVersion: v1
kind: Pod
metadata: {name: pending}
spec:
  containers: [{name: c, resources: {requests: {cpu: "1"}}}]
status: {phase: Pending}
`
	tests := []struct {
		name    string
		in      string
		want    []string // pods planned besides "default/pending"
		warning string   // a warning containing this
	}{{
		name: "bound pods run on their node",
		in: `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: web}
  spec:
    nodeName: ip-10-0-0-1
    containers: [{name: c, resources: {requests: {cpu: "1"}}}]
  status: {phase: Running}
- apiVersion: v1
  kind: Pod
  metadata: {name: b, namespace: web}
  spec:
    nodeName: ip-10-0-0-2
    containers: [{name: c, resources: {requests: {cpu: "1"}}}]
  status: {phase: Pending}
`,
		warning: "skipped 2 pods bound to a node (spec.nodeName)",
	}, {
		name: "succeeded",
		in: `apiVersion: v1
kind: Pod
metadata: {name: done}
spec:
  containers: [{name: c, resources: {requests: {cpu: "1"}}}]
status: {phase: Succeeded}
`,
		warning: "skipped 1 pod that finished",
	}, {
		name: "failed and bound counts as finished",
		in: `apiVersion: v1
kind: Pod
metadata: {name: crashed}
spec:
  nodeName: n1
  containers: [{name: c, resources: {requests: {cpu: "1"}}}]
status: {phase: Failed}
`,
		warning: "skipped 1 pod that finished",
	}, {
		name: "being deleted",
		in: `apiVersion: v1
kind: Pod
metadata: {name: leaving, deletionTimestamp: "2026-01-01T00:00:00Z"}
spec:
  containers: [{name: c, resources: {requests: {cpu: "1"}}}]
`,
		warning: "being deleted",
	}, {
		name: "scheduling gated",
		in: `apiVersion: v1
kind: Pod
metadata: {name: gated}
spec:
  schedulingGates: [{name: kueue.x-k8s.io/admission}]
  containers: [{name: c, resources: {requests: {cpu: "1"}}}]
`,
		warning: "spec.schedulingGates",
	}, {
		name: "a DaemonSet's pod",
		in: `apiVersion: v1
kind: Pod
metadata:
  name: agent-x7k
  ownerReferences: [{apiVersion: apps/v1, kind: DaemonSet, name: agent, uid: u, controller: true}]
spec:
  containers: [{name: c, resources: {requests: {cpu: "1"}}}]
`,
		warning: "made by a DaemonSet",
	}, {
		name: "suspended Job",
		in: `apiVersion: batch/v1
kind: Job
metadata: {name: queued, labels: {kueue.x-k8s.io/queue-name: training}}
spec:
  suspend: true
  parallelism: 4
  template:
    spec:
      containers: [{name: c, resources: {requests: {nvidia.com/gpu: "8"}}}]
`,
		warning: "skipped 4 pods of suspended Jobs (spec.suspend)",
	}, {
		name: "a Job resumed",
		in: `apiVersion: batch/v1
kind: Job
metadata: {name: admitted}
spec:
  suspend: false
  template:
    spec:
      containers: [{name: c, resources: {requests: {nvidia.com/gpu: "8"}}}]
`,
		want: []string{"default/admitted-0"},
	}, {
		name: "a workload whose template is gated",
		in: `apiVersion: apps/v1
kind: Deployment
metadata: {name: gated}
spec:
  replicas: 3
  template:
    spec:
      schedulingGates: [{name: example.com/wait}]
      containers: [{name: c, resources: {requests: {cpu: "1"}}}]
`,
		warning: "skipped 3 pods held by scheduling gates",
	}, {
		name: "a workload pinned to a node",
		in: `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: pinned}
spec:
  replicas: 2
  template:
    spec:
      nodeName: n1
      containers: [{name: c, resources: {requests: {cpu: "1"}}}]
`,
		warning: "skipped 2 pods bound to a node",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Decode("live.yaml", []byte(pending+"---\n"+tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range set.Pods {
				got = append(got, p.Namespace+"/"+p.Name)
			}
			if diff := cmp.Diff(append([]string{"default/pending"}, tt.want...), got); diff != "" {
				t.Errorf("pods to plan (-want +got):\n%s", diff)
			}
			var found []string
			for _, w := range set.Warnings {
				if tt.warning != "" && strings.Contains(w, tt.warning) {
					found = append(found, w)
				}
			}
			if tt.warning != "" && len(found) != 1 {
				t.Errorf("want one warning containing %q, got %q", tt.warning, set.Warnings)
			}
			if tt.warning == "" && len(set.Warnings) > 0 {
				t.Errorf("unexpected warnings %q", set.Warnings)
			}
		})
	}
}
