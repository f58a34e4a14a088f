package provisioning

import (
	"context"
	"fmt"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// JobSets and LeaderWorkerSets are read as unstructured: Stowage needs a
// few fields of them and should not depend on their modules for those.
var (
	jobSetKind = schema.GroupVersionKind{Group: "jobset.x-k8s.io", Version: "v1alpha2", Kind: "JobSet"}
	lwsKind    = schema.GroupVersionKind{Group: "leaderworkerset.x-k8s.io", Version: "v1", Kind: "LeaderWorkerSet"}
)

// gangs is the recognizer for one pass: the opted-in sources, with sizes
// looked up once per workload, and Kueue pod groups less their succeeded
// members.
func (c *Controller) gangs(ctx context.Context) scheduling.Gangs {
	g := scheduling.Gangs{KueueSucceeded: scheduling.CountKueueSucceeded(c.cluster.Pods(func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded && p.Labels[scheduling.LabelKueuePodGroup] != ""
	}))}
	if len(c.opts.GangSources) > 0 {
		g.Sources, g.Sizes = c.opts.GangSources, &workloadSizes{ctx: ctx, c: c.client, memo: map[string]sized{}}
	}
	return g
}

type sized struct {
	n   int
	err error
}

// workloadSizes reads Jobs and JobSets, remembering each answer for the pass.
type workloadSizes struct {
	ctx  context.Context
	c    client.Reader
	memo map[string]sized
}

var _ scheduling.GangSizer = (*workloadSizes)(nil)

func (w *workloadSizes) IndexedJobSize(ns, name string) (int, error) {
	return w.once("job/"+ns+"/"+name, func() (int, error) {
		job := &batchv1.Job{}
		if err := w.c.Get(w.ctx, client.ObjectKey{Namespace: ns, Name: name}, job); err != nil {
			return 0, fmt.Errorf("reading job %s/%s: %w", ns, name, err)
		}
		return max(jobPods(job.Spec.Parallelism, job.Spec.Completions, job.Status.Succeeded), 1), nil
	})
}

func (w *workloadSizes) JobSetSize(ns, name string) (int, error) {
	return w.once("jobset/"+ns+"/"+name, func() (int, error) {
		js := &unstructured.Unstructured{}
		js.SetGroupVersionKind(jobSetKind)
		if err := w.c.Get(w.ctx, client.ObjectKey{Namespace: ns, Name: name}, js); err != nil {
			return 0, fmt.Errorf("reading jobset %s/%s: %w", ns, name, err)
		}
		if order, _, _ := unstructured.NestedString(js.Object, "spec", "startupPolicy", "startupPolicyOrder"); order == "InOrder" {
			// Its replicated jobs are created in turn, each once the one
			// before is ready: never all at once, so no gang.
			return 1, nil
		}
		rjs, _, err := unstructured.NestedSlice(js.Object, "spec", "replicatedJobs")
		if err != nil {
			return 0, fmt.Errorf("jobset %s/%s: spec.replicatedJobs: %w", ns, name, err)
		}
		total := 0
		for i, raw := range rjs {
			rj, ok := raw.(map[string]any)
			if !ok {
				return 0, fmt.Errorf("jobset %s/%s: spec.replicatedJobs[%d] is not an object", ns, name, i)
			}
			if deps, _, _ := unstructured.NestedSlice(rj, "dependsOn"); len(deps) > 0 {
				// This job is created only once the one it depends on is
				// Ready or Complete: never all at once, so no gang.
				return 1, nil
			}
			replicas, found, _ := unstructured.NestedInt64(rj, "replicas")
			if !found {
				replicas = 1
			}
			var parallelism, completions *int32
			if p, found, _ := unstructured.NestedInt64(rj, "template", "spec", "parallelism"); found {
				v := int32(p)
				parallelism = &v
			}
			if c, found, _ := unstructured.NestedInt64(rj, "template", "spec", "completions"); found {
				v := int32(c)
				completions = &v
			}
			total += int(replicas) * jobPods(parallelism, completions, 0)
		}
		// Pods that finished are neither pending nor present: a child Job
		// with some done needs only the rest.
		children := &batchv1.JobList{}
		if err := w.c.List(w.ctx, children, client.InNamespace(ns), client.MatchingLabels{scheduling.LabelJobSetName: name}); err != nil {
			return 0, fmt.Errorf("listing the jobs of jobset %s/%s: %w", ns, name, err)
		}
		for _, j := range children.Items {
			if j.Status.Succeeded > 0 {
				total -= jobPods(j.Spec.Parallelism, j.Spec.Completions, 0) - jobPods(j.Spec.Parallelism, j.Spec.Completions, j.Status.Succeeded)
			}
		}
		return max(total, 1), nil
	})
}

func (w *workloadSizes) LeaderWorkerSetLeaderFirst(ns, name string) (bool, error) {
	n, err := w.once("lws/"+ns+"/"+name, func() (int, error) {
		lws := &unstructured.Unstructured{}
		lws.SetGroupVersionKind(lwsKind)
		if err := w.c.Get(w.ctx, client.ObjectKey{Namespace: ns, Name: name}, lws); err != nil {
			return 0, fmt.Errorf("reading leaderworkerset %s/%s: %w", ns, name, err)
		}
		if policy, _, _ := unstructured.NestedString(lws.Object, "spec", "startupPolicy"); policy == "LeaderReady" {
			return 1, nil
		}
		return 0, nil
	})
	return n == 1, err
}

func (w *workloadSizes) once(key string, f func() (int, error)) (int, error) {
	if s, ok := w.memo[key]; ok {
		return s.n, s.err
	}
	n, err := f()
	w.memo[key] = sized{n, err}
	return n, err
}

// jobPods is how many pods a Job runs at once: its parallelism (default 1),
// capped by the completions it still needs when they are set (succeeded of
// them done). Without the cap, the last pods of a Job whose completions
// exceed its parallelism would wait forever for peers that never come.
func jobPods(parallelism, completions *int32, succeeded int32) int {
	n := 1
	if parallelism != nil {
		n = int(*parallelism)
	}
	if completions != nil {
		n = min(n, max(int(*completions-succeeded), 0))
	}
	return n
}
