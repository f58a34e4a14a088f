package manifest

import "testing"

// Kubernetes defaults a Job's unset parallelism to 1, so a Job of 16
// completions without parallelism runs one pod at a time; the controller
// sizes such a Job as 1 (provisioning.jobPods). simulate must not plan 16.
func TestAuditJobWithoutParallelismRunsOnePod(t *testing.T) {
	set, err := Decode("job.yaml", []byte(`apiVersion: batch/v1
kind: Job
metadata: {name: sweep}
spec:
  completions: 16
  completionMode: Indexed
  template:
    spec:
      containers: [{name: c, resources: {requests: {nvidia.com/gpu: "8"}}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Pods) != 1 {
		t.Errorf("%d pods, want 1: parallelism defaults to 1", len(set.Pods))
	}
	if got := set.JobPods["default/sweep"]; got != 1 {
		t.Errorf("indexed job size %d, want 1", got)
	}
}
