package simulate

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// Pods are planned where their volumes are: a pod bound to a zonal volume
// in its zone, a StatefulSet whose claims wait for their first consumer in
// a zone its StorageClass allows, and a pod whose claim the manifests do
// not hold anywhere, with a warning.
func TestRunHonoursVolumeTopology(t *testing.T) {
	const docs = `
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: zonal}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
allowedTopologies:
- matchLabelExpressions: [{key: topology.ebs.csi.aws.com/zone, values: [zone-b]}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-model}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  csi: {driver: ebs.csi.aws.com, volumeHandle: vol-1}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [zone-b]}]
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: model}
spec: {volumeName: pv-model, accessModes: [ReadWriteOnce], resources: {requests: {storage: 10Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  containers: [{name: c, image: x, resources: {requests: {cpu: "12"}}}]
  volumes: [{name: m, persistentVolumeClaim: {claimName: model}}]
---
apiVersion: v1
kind: Pod
metadata: {name: orphan}
spec:
  containers: [{name: c, image: x, resources: {requests: {cpu: "12"}}}]
  volumes: [{name: m, persistentVolumeClaim: {claimName: elsewhere}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 1
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: x, resources: {requests: {cpu: "12"}}}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {storageClassName: zonal, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`
	set, err := manifest.Decode("storage.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.PersistentVolumeClaims) != 2 || set.PersistentVolumeClaims[1].Name != "data-db-0" {
		t.Fatalf("claims = %d (second %q), want model and the StatefulSet's data-db-0", len(set.PersistentVolumeClaims), set.PersistentVolumeClaims[1].Name)
	}
	r, err := Run(context.Background(), Input{Manifests: set, Catalog: testCatalog()}, Options{Solve: func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }})
	if err != nil {
		t.Fatal(err)
	}
	// 12 CPU each: one "large" node per pod.
	zones := map[string]string{}
	for _, n := range r.Nodes {
		for _, p := range n.Pods {
			zones[p] = n.Zone
		}
	}
	want := map[string]string{"default/reader": "zone-b", "default/db-0": "zone-b", "default/orphan": zones["default/orphan"]}
	if diff := cmp.Diff(want, zones); diff != "" {
		t.Errorf("zones of the pods (-want +got):\n%s", diff)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "default/orphan") {
		t.Errorf("warnings = %q, want one about default/orphan's claim", r.Warnings)
	}
}

// A StatefulSet's claims count against the attach limit of the machines
// they are planned on: 12 small replicas fit one "large" machine by CPU, but
// it attaches only 5 volumes.
func TestRunCountsAttachLimits(t *testing.T) {
	const docs = `
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: gp3}
provisioner: ebs.csi.aws.com
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 12
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      nodeSelector: {node.kubernetes.io/instance-type: large}
      containers: [{name: c, image: x, resources: {requests: {cpu: "1"}}}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {storageClassName: gp3, accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
`
	set, err := manifest.Decode("db.yaml", []byte(docs))
	if err != nil {
		t.Fatal(err)
	}
	catalog := testCatalog()
	for _, it := range catalog.InstanceTypes {
		if it.Name == "large" {
			it.Capacity[cloudprovider.AttachLimitResource("ebs.csi.aws.com")] = resource.MustParse("5")
		}
	}
	r, err := Run(context.Background(), Input{Manifests: set, Catalog: catalog}, Options{Solve: func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }})
	if err != nil {
		t.Fatal(err)
	}
	var perNode []int
	for _, n := range r.Nodes {
		perNode = append(perNode, len(n.Pods))
	}
	if len(r.Nodes) != 3 || slices.Max(perNode) > 5 {
		t.Errorf("pods per machine %v, want 3 machines of at most 5 (the attach limit)", perNode)
	}
}
