package main

import (
	"strings"
	"testing"
)

// A file of only skipped kinds fails with "no pods to place"; the warning
// that says why each object was skipped must still reach stderr.
func TestAuditSimulateWarnsEvenWhenItFails(t *testing.T) {
	stubSolver(t)
	dir := writeManifest(t, `apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 * * *"
  jobTemplate: {spec: {template: {spec: {containers: [{name: c}]}}}}
`)
	_, stderr, err := runWithStderr("simulate", "-f", dir)
	if err == nil {
		t.Fatal("want an error: no pods to place")
	}
	if !strings.Contains(stderr, "CronJob") {
		t.Errorf("stderr does not say the CronJob was skipped:\n%s\nerror: %v", stderr, err)
	}
}
