package manifest

import (
	"strings"
	"testing"
)

// A ProvisioningRequest's PodTemplates become pods the solver plans, so
// their quantities must be checked like every other pod's: negative or
// uncountable requests are errors, not a pod that fits anywhere.
func TestAuditPodTemplateQuantitiesAreChecked(t *testing.T) {
	for _, q := range []string{`"-16"`, `99999999Ei`, `1e400`} {
		_, err := Decode("pr.yaml", []byte(`apiVersion: v1
kind: PodTemplate
metadata: {name: w}
template:
  spec:
    containers:
    - name: c
      resources:
        requests: {cpu: `+q+`}
`))
		if err == nil {
			t.Errorf("cpu %s: accepted", q)
			continue
		}
		if !strings.Contains(err.Error(), "template.spec.containers[0].resources.requests[cpu]") {
			t.Errorf("cpu %s: error does not name the field: %v", q, err)
		}
	}
}

// --max-pods bounds every pod the manifests expand into, including a
// ProvisioningRequest's.
func TestAuditProvisioningRequestCountsTowardMaxPods(t *testing.T) {
	l := NewLoader(Options{MaxPods: 10})
	err := l.Decode("pr.yaml", strings.NewReader(`apiVersion: v1
kind: PodTemplate
metadata: {name: w}
template:
  spec:
    containers: [{name: c}]
---
apiVersion: autoscaling.x-k8s.io/v1
kind: ProvisioningRequest
metadata: {name: pr}
spec:
  provisioningClassName: best-effort-atomic-scale-up.autoscaling.x-k8s.io
  podSets: [{podTemplateRef: {name: w}, count: 200000}, {podTemplateRef: {name: w}, count: 200000}]
`))
	if err == nil || !strings.Contains(err.Error(), "--max-pods") {
		t.Errorf("400,000 pods with --max-pods 10: err = %v", err)
	}
}
