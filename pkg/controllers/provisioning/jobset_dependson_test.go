package provisioning

import (
	"context"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

// A JobSet whose replicated jobs depend on others (spec.replicatedJobs[].
// dependsOn, as Kubeflow Trainer's initializer -> trainer runtimes use)
// creates a dependent job only once the one it depends on is Ready or
// Complete. Sized as one gang of every job, the initializer's pods wait for
// trainer pods that are created only after the initializer finished: the
// JobSet never starts.
func TestJobSetWithDependsOnIsNoGang(t *testing.T) {
	f := newFixture(t, nil)
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	js := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet",
		"metadata": map[string]any{"namespace": "default", "name": "llm"},
		"spec": map[string]any{
			"replicatedJobs": []any{
				map[string]any{"name": "initializer", "replicas": int64(1), "template": map[string]any{"spec": map[string]any{"parallelism": int64(1), "completions": int64(1)}}},
				map[string]any{"name": "node", "replicas": int64(1),
					"dependsOn": []any{map[string]any{"name": "initializer", "status": "Complete"}},
					"template":  map[string]any{"spec": map[string]any{"parallelism": int64(4), "completions": int64(4)}}},
			}},
	}}
	f.client = cloudtest.NewClientBuilder().WithObjects(js).Build()
	f.ctrl.client = f.client
	f.ctrl.opts.GangSources = map[scheduling.GangSource]bool{scheduling.GangSourceJobSet: true}
	f.cluster.UpdatePod(withPod(pendingPod("llm-initializer-0-0"), tolerateGPU, func(p *corev1.Pod) {
		p.Labels = map[string]string{scheduling.LabelJobSetName: "llm", batchv1.JobNameLabel: "llm-initializer-0"}
	}))
	r := f.schedule(t)
	if len(r.Created) != 1 {
		for _, u := range r.Plan.Unschedulable {
			t.Logf("unschedulable %s: %s", u.Pod.Name, u.Reason)
		}
		t.Errorf("%d machines for the initializer of a JobSet whose node job depends on it; want 1 (the node job is created once it completes)", len(r.Created))
	}
}
