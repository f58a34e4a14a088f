package manifest

import (
	"strings"
	"testing"
)

// A bad quantity anywhere simulate reads one must name its field, as the
// docs promise ("Errors name the file, the document, the object and the field").
func TestAuditBadQuantityNamesItsField(t *testing.T) {
	tests := []struct{ name, doc, field string }{{
		name: "pod-level resources",
		doc: `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  resources: {requests: {cpu: lots}}
  containers: [{name: c}]
`,
		field: "spec.resources.requests.cpu",
	}, {
		name: "pod-level limits in a Deployment",
		doc: `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      resources: {limits: {memory: 4GB_}}
      containers: [{name: c}]
`,
		field: "spec.template.spec.resources.limits.memory",
	}, {
		name: "PersistentVolumeClaim",
		doc: `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: d}
spec:
  resources: {requests: {storage: 10 GB}}
`,
		field: "spec.resources.requests.storage",
	}, {
		name: "PersistentVolume",
		doc: `apiVersion: v1
kind: PersistentVolume
metadata: {name: pv}
spec:
  capacity: {storage: ten}
`,
		field: "spec.capacity.storage",
	}, {
		name: "StatefulSet volumeClaimTemplates",
		doc: `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  template:
    spec:
      containers: [{name: c}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      resources: {requests: {storage: lots}}
`,
		field: "spec.volumeClaimTemplates[0].spec.resources.requests.storage",
	}, {
		name: "generic ephemeral volume",
		doc: `apiVersion: v1
kind: Pod
metadata: {name: p}
spec:
  containers: [{name: c}]
  volumes:
  - name: scratch
    ephemeral:
      volumeClaimTemplate:
        spec:
          resources: {requests: {storage: big}}
`,
		field: "spec.volumes[0].ephemeral.volumeClaimTemplate.spec.resources.requests.storage",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("m.yaml", []byte(tt.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error does not name %s: %v", tt.field, err)
			}
		})
	}
}
