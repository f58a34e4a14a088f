package manifest

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
)

const trainingObjectsYAML = `apiVersion: resource.k8s.io/v1
kind: DeviceClass
metadata: {name: gpu.nvidia.com}
spec:
  selectors:
  - cel: {expression: "device.driver == 'gpu.nvidia.com'"}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaimTemplate
metadata: {name: big, namespace: serving}
spec:
  spec:
    devices:
      requests:
      - name: gpu
        exactly: {deviceClassName: gpu.nvidia.com}
---
apiVersion: resource.k8s.io/v1
kind: ResourceClaim
metadata: {name: shared}
spec:
  devices:
    requests:
    - name: gpu
      firstAvailable:
      - {name: big, deviceClassName: gpu.nvidia.com}
---
apiVersion: v1
kind: PodTemplate
metadata: {name: worker, namespace: research}
template:
  spec:
    containers: [{name: w, resources: {requests: {nvidia.com/gpu: "8"}}}]
---
apiVersion: autoscaling.x-k8s.io/v1
kind: ProvisioningRequest
metadata: {name: pretrain, namespace: research}
spec:
  provisioningClassName: best-effort-atomic-scale-up.autoscaling.x-k8s.io
  podSets: [{podTemplateRef: {name: worker}, count: 4}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: train, namespace: research}
spec:
  completionMode: Indexed
  parallelism: 3
  completions: 3
  template:
    spec:
      containers: [{name: t}]
`

func TestDecodeTrainingObjects(t *testing.T) {
	set, err := Decode("training.yaml", []byte(trainingObjectsYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Warnings) != 0 {
		t.Errorf("warnings %v", set.Warnings)
	}
	if len(set.DeviceClasses) != 1 || len(set.ResourceClaimTemplates) != 1 || len(set.ResourceClaims) != 1 ||
		len(set.PodTemplates) != 1 || len(set.ProvisioningRequests) != 1 {
		t.Fatalf("decoded %d classes, %d templates, %d claims, %d pod templates, %d requests",
			len(set.DeviceClasses), len(set.ResourceClaimTemplates), len(set.ResourceClaims), len(set.PodTemplates), len(set.ProvisioningRequests))
	}
	if set.ResourceClaims[0].Namespace != "default" {
		t.Errorf("claim namespace %q, want default", set.ResourceClaims[0].Namespace)
	}
	if len(set.Pods) != 3 || set.JobPods["research/train"] != 3 {
		t.Fatalf("job pods %d, sizes %v", len(set.Pods), set.JobPods)
	}
	for i, p := range set.Pods {
		if p.Labels[batchv1.JobNameLabel] != "train" || p.Annotations[batchv1.JobCompletionIndexAnnotation] != string(rune('0'+i)) {
			t.Errorf("indexed job pod %s: labels %v annotations %v", p.Name, p.Labels, p.Annotations)
		}
	}
}

func TestDecodeTrainingErrors(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"request without a template", "apiVersion: autoscaling.x-k8s.io/v1\nkind: ProvisioningRequest\nmetadata: {name: p}\n" +
			"spec: {provisioningClassName: x, podSets: [{podTemplateRef: {}, count: 1}]}\n",
			`training.yaml: document 1 (ProvisioningRequest default/p): spec.podSets[0].podTemplateRef.name: required`},
		{"request count", "apiVersion: autoscaling.x-k8s.io/v1\nkind: ProvisioningRequest\nmetadata: {name: p}\n" +
			"spec: {provisioningClassName: x, podSets: [{podTemplateRef: {name: t}, count: 0}]}\n",
			`spec.podSets[0].count: must be between 1`},
		{"claim request without a class", "apiVersion: resource.k8s.io/v1\nkind: ResourceClaimTemplate\nmetadata: {name: c}\n" +
			"spec: {spec: {devices: {requests: [{name: gpu, exactly: {count: 1}}]}}}\n",
			`(ResourceClaimTemplate default/c): spec.spec.devices.requests[0].exactly.deviceClassName: required`},
		{"claim request with both forms", "apiVersion: resource.k8s.io/v1\nkind: ResourceClaim\nmetadata: {name: c}\n" +
			"spec: {devices: {requests: [{name: gpu, exactly: {deviceClassName: a}, firstAvailable: [{name: b, deviceClassName: b}]}]}}\n",
			`spec.devices.requests[0]: exactly one of exactly and firstAvailable`},
		{"namespaced device class", "apiVersion: resource.k8s.io/v1\nkind: DeviceClass\nmetadata: {name: d, namespace: x}\n",
			`metadata.namespace: DeviceClasses are cluster-scoped`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("training.yaml", []byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
