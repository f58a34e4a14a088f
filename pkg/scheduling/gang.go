package scheduling

import (
	"fmt"
	"strconv"
	"strings"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Keys other projects put on the pods of a group that must start together.
const (
	// LabelKueuePodGroup and AnnotationKueuePodGroupTotal are how Kueue's
	// plain-pod integration declares a pod group and its size.
	LabelKueuePodGroup           = "kueue.x-k8s.io/pod-group-name"
	AnnotationKueuePodGroupTotal = "kueue.x-k8s.io/pod-group-total-count"
	// LabelJobSetName names the JobSet a pod belongs to.
	LabelJobSetName = "jobset.sigs.k8s.io/jobset-name"
	// LabelLWSName, LabelLWSGroupIndex and AnnotationLWSSize place a pod in
	// one replica (a leader and its workers) of a LeaderWorkerSet;
	// LabelLWSWorkerIndex is 0 on the leader.
	LabelLWSName        = "leaderworkerset.sigs.k8s.io/name"
	LabelLWSGroupIndex  = "leaderworkerset.sigs.k8s.io/group-index"
	LabelLWSWorkerIndex = "leaderworkerset.sigs.k8s.io/worker-index"
	AnnotationLWSSize   = "leaderworkerset.sigs.k8s.io/size"
)

// GangSource names a kind of workload whose pods Stowage may treat as a gang
// when the user opts in (they are not gangs by declaration, only by habit).
type GangSource string

// The opt-in gang sources.
const (
	GangSourceJobSet          GangSource = "jobset"
	GangSourceLeaderWorkerSet GangSource = "leaderworkerset"
	GangSourceIndexedJob      GangSource = "indexed-job"
)

// GangSources lists every opt-in source, for flags and docs.
var GangSources = []GangSource{GangSourceJobSet, GangSourceLeaderWorkerSet, GangSourceIndexedJob}

// ParseGangSources reads a comma-separated list such as "jobset,indexed-job".
func ParseGangSources(s string) (map[GangSource]bool, error) {
	out := map[GangSource]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		known := false
		for _, g := range GangSources {
			if GangSource(f) == g {
				known = true
			}
		}
		if !known {
			return nil, fmt.Errorf("unknown gang source %q (known: jobset, leaderworkerset, indexed-job)", f)
		}
		out[GangSource(f)] = true
	}
	return out, nil
}

// GangSizer looks up gang sizes a pod does not carry itself.
type GangSizer interface {
	// IndexedJobSize is how many pods an Indexed Job runs at once:
	// its parallelism, capped by its completions.
	IndexedJobSize(namespace, name string) (int, error)
	// JobSetSize is how many pods a JobSet runs at once: over its
	// replicated jobs, replicas times each job's pods at once.
	JobSetSize(namespace, name string) (int, error)
	// LeaderWorkerSetLeaderFirst reports whether a LeaderWorkerSet creates
	// its workers only once their leader is Ready (startupPolicy
	// LeaderReady).
	LeaderWorkerSetLeaderFirst(namespace, name string) (bool, error)
}

// Gangs recognises pod groups that must be placed all at once. Its zero
// value knows the declarations that need no opt-in: Stowage's own key
// (stowage.dev/pod-group and stowage.dev/pod-group-size, each as a label or
// an annotation) and Kueue's pod groups.
type Gangs struct {
	// Sources are the opted-in workload kinds.
	Sources map[GangSource]bool
	// Sizes resolves JobSet and Indexed Job sizes; without it those
	// sources are not recognised.
	Sizes GangSizer
	// KueueSucceeded counts the succeeded members of Kueue pod groups, by
	// namespace/group name (see CountKueueSucceeded). Kueue counts them
	// toward the group's total and they need no room, so the group still to
	// start together is the rest: without this, a failed member's
	// replacement waited for a full group of live pods that never comes.
	KueueSucceeded map[string]int
}

// CountKueueSucceeded is Gangs.KueueSucceeded for the given pods.
func CountKueueSucceeded(pods []*corev1.Pod) map[string]int {
	var out map[string]int
	for _, p := range pods {
		if name := p.Labels[LabelKueuePodGroup]; name != "" && p.Status.Phase == corev1.PodSucceeded {
			if out == nil {
				out = map[string]int{}
			}
			out[p.Namespace+"/"+name]++
		}
	}
	return out
}

// GangOf is Gangs{}.Of: Stowage's and Kueue's declarations only.
func GangOf(pod *corev1.Pod) (string, int, error) { return Gangs{}.Of(pod) }

// Of returns the pod's gang, unique within its namespace, and how many pods
// the gang needs before any of them gets capacity; "" when the pod is in no
// gang. A declaration with a missing or invalid size is an error naming the key.
func (g Gangs) Of(pod *corev1.Pod) (string, int, error) {
	if name := labelOrAnnotation(pod, v1.LabelPodGroup); name != "" {
		n, err := positiveInt(pod, v1.LabelPodGroupSize, labelOrAnnotation(pod, v1.LabelPodGroupSize))
		return name, n, err
	}
	if name := pod.Labels[LabelKueuePodGroup]; name != "" {
		n, err := positiveInt(pod, AnnotationKueuePodGroupTotal, pod.Annotations[AnnotationKueuePodGroupTotal])
		if done := g.KueueSucceeded[pod.Namespace+"/"+name]; err == nil && done > 0 {
			n = max(n-done, 1)
		}
		return "kueue:" + name, n, err
	}
	if lws := pod.Labels[LabelLWSName]; g.Sources[GangSourceLeaderWorkerSet] && lws != "" && pod.Annotations[AnnotationLWSSize] != "" {
		// One replica of the set, its leader and workers, is the unit that starts together.
		name := "lws:" + lws + "/" + pod.Labels[LabelLWSGroupIndex]
		n, err := positiveInt(pod, AnnotationLWSSize, pod.Annotations[AnnotationLWSSize])
		if err != nil || g.Sizes == nil {
			return name, n, err
		}
		leaderFirst, err := g.Sizes.LeaderWorkerSetLeaderFirst(pod.Namespace, lws)
		if err != nil {
			return name, 0, fmt.Errorf("pod %s/%s: sizing its gang: %w", pod.Namespace, pod.Name, err)
		}
		if leaderFirst && pod.Labels[LabelLWSWorkerIndex] == "0" {
			// The workers are created once the leader runs: waiting for
			// them would hold the leader forever. The leader is a gang of
			// one; its workers then make the gang whole with it, in its zone.
			return name, 1, nil
		}
		return name, n, nil
	}
	if g.Sizes == nil {
		return "", 0, nil
	}
	if js := pod.Labels[LabelJobSetName]; g.Sources[GangSourceJobSet] && js != "" {
		n, err := g.Sizes.JobSetSize(pod.Namespace, js)
		if err != nil {
			return "jobset:" + js, 0, fmt.Errorf("pod %s/%s: sizing its gang: %w", pod.Namespace, pod.Name, err)
		}
		if n <= 1 {
			return "", 0, nil // one pod, or jobs started in turn: no gang
		}
		return "jobset:" + js, n, nil
	}
	_, indexed := pod.Annotations[batchv1.JobCompletionIndexAnnotation]
	if job := pod.Labels[batchv1.JobNameLabel]; g.Sources[GangSourceIndexedJob] && job != "" && indexed {
		n, err := g.Sizes.IndexedJobSize(pod.Namespace, job)
		if err != nil {
			return "job:" + job, 0, fmt.Errorf("pod %s/%s: sizing its gang: %w", pod.Namespace, pod.Name, err)
		}
		if n <= 1 {
			return "", 0, nil // a job that runs one pod at a time is no gang
		}
		return "job:" + job, n, nil
	}
	return "", 0, nil
}

// labelOrAnnotation prefers the label: it is what selectors see.
func labelOrAnnotation(pod *corev1.Pod, key string) string {
	if v := pod.Labels[key]; v != "" {
		return v
	}
	return pod.Annotations[key]
}

func positiveInt(pod *corev1.Pod, key, raw string) (int, error) {
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 || strconv.Itoa(n) != raw {
		return 0, fmt.Errorf("pod %s/%s: %s=%q must be a positive integer", pod.Namespace, pod.Name, key, raw)
	}
	return n, nil
}
