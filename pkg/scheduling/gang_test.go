package scheduling

import (
	"errors"
	"maps"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

type sizes map[string]int

func (s sizes) IndexedJobSize(ns, name string) (int, error) { return s.get("job/" + ns + "/" + name) }
func (s sizes) JobSetSize(ns, name string) (int, error)     { return s.get("jobset/" + ns + "/" + name) }
func (s sizes) LeaderWorkerSetLeaderFirst(ns, name string) (bool, error) {
	n, err := s.get("lws/" + ns + "/" + name)
	return n == 1, err
}
func (s sizes) get(k string) (int, error) {
	if n, ok := s[k]; ok {
		return n, nil
	}
	return 0, errors.New(k + " not found")
}

func TestGangsOf(t *testing.T) {
	all := map[GangSource]bool{GangSourceJobSet: true, GangSourceLeaderWorkerSet: true, GangSourceIndexedJob: true}
	lookups := sizes{"job/ml/train": 4, "jobset/ml/big": 16, "job/ml/serial": 1, "lws/ml/llm": 0, "lws/ml/ready": 1, "lws/ml/pair": 1}
	lwsPod := func(set, worker, size string) (map[string]string, map[string]string) {
		return map[string]string{LabelLWSName: set, LabelLWSGroupIndex: "1", LabelLWSWorkerIndex: worker}, map[string]string{AnnotationLWSSize: size}
	}
	createdL, createdA := lwsPod("llm", "2", "4")
	leaderL, leaderA := lwsPod("ready", "0", "4")
	workerL, workerA := lwsPod("ready", "3", "4")
	pairL, pairA := lwsPod("pair", "1", "2")
	goneL, goneA := lwsPod("gone", "1", "4")
	tests := []struct {
		name        string
		labels      map[string]string
		annotations map[string]string
		gangs       Gangs
		wantName    string
		wantSize    int
		wantErr     bool
	}{
		{name: "no gang"},
		{name: "stowage labels", labels: map[string]string{v1.LabelPodGroup: "g", v1.LabelPodGroupSize: "4"}, wantName: "g", wantSize: 4},
		{name: "stowage annotations", annotations: map[string]string{v1.LabelPodGroup: "g", v1.LabelPodGroupSize: "3"}, wantName: "g", wantSize: 3},
		{name: "stowage label with annotated size", labels: map[string]string{v1.LabelPodGroup: "g"},
			annotations: map[string]string{v1.LabelPodGroupSize: "2"}, wantName: "g", wantSize: 2},
		{name: "stowage size not a number", labels: map[string]string{v1.LabelPodGroup: "g", v1.LabelPodGroupSize: "four"}, wantName: "g", wantErr: true},
		{name: "stowage size missing", annotations: map[string]string{v1.LabelPodGroup: "g"}, wantName: "g", wantErr: true},
		{name: "stowage size with a sign", labels: map[string]string{v1.LabelPodGroup: "g", v1.LabelPodGroupSize: "+4"}, wantName: "g", wantErr: true},
		{name: "kueue pod group", labels: map[string]string{LabelKueuePodGroup: "w1"},
			annotations: map[string]string{AnnotationKueuePodGroupTotal: "8"}, wantName: "kueue:w1", wantSize: 8},
		{name: "kueue pod group less its succeeded members", labels: map[string]string{LabelKueuePodGroup: "w1"},
			annotations: map[string]string{AnnotationKueuePodGroupTotal: "8"}, gangs: Gangs{KueueSucceeded: map[string]int{"ml/w1": 3, "other/w1": 1}},
			wantName: "kueue:w1", wantSize: 5},
		{name: "kueue pod group all succeeded but an extra pod", labels: map[string]string{LabelKueuePodGroup: "w1"},
			annotations: map[string]string{AnnotationKueuePodGroupTotal: "2"}, gangs: Gangs{KueueSucceeded: map[string]int{"ml/w1": 2}},
			wantName: "kueue:w1", wantSize: 1},
		{name: "kueue pod group without its count", labels: map[string]string{LabelKueuePodGroup: "w1"}, wantName: "kueue:w1", wantErr: true},
		{name: "stowage key wins over kueue", labels: map[string]string{v1.LabelPodGroup: "g", v1.LabelPodGroupSize: "2", LabelKueuePodGroup: "w1"},
			annotations: map[string]string{AnnotationKueuePodGroupTotal: "8"}, wantName: "g", wantSize: 2},
		{name: "leaderworkerset not opted in", labels: map[string]string{LabelLWSName: "llm", LabelLWSGroupIndex: "1"},
			annotations: map[string]string{AnnotationLWSSize: "4"}},
		{name: "leaderworkerset replica", labels: map[string]string{LabelLWSName: "llm", LabelLWSGroupIndex: "1"},
			annotations: map[string]string{AnnotationLWSSize: "4"}, gangs: Gangs{Sources: all}, wantName: "lws:llm/1", wantSize: 4},
		{name: "leaderworkerset read, leader created with workers", labels: createdL, annotations: createdA,
			gangs: Gangs{Sources: all, Sizes: lookups}, wantName: "lws:llm/1", wantSize: 4},
		// startupPolicy LeaderReady: the workers come only once the leader runs.
		{name: "leaderworkerset leader ready first: the leader goes alone", labels: leaderL, annotations: leaderA,
			gangs: Gangs{Sources: all, Sizes: lookups}, wantName: "lws:ready/1", wantSize: 1},
		{name: "leaderworkerset leader ready first: the workers with their leader", labels: workerL, annotations: workerA,
			gangs: Gangs{Sources: all, Sizes: lookups}, wantName: "lws:ready/1", wantSize: 4},
		{name: "leaderworkerset leader ready first: one worker", labels: pairL, annotations: pairA,
			gangs: Gangs{Sources: all, Sizes: lookups}, wantName: "lws:pair/1", wantSize: 2},
		{name: "leaderworkerset that cannot be read", labels: goneL, annotations: goneA,
			gangs: Gangs{Sources: all, Sizes: lookups}, wantName: "lws:gone/1", wantErr: true},
		{name: "jobset not opted in", labels: map[string]string{LabelJobSetName: "big"}, gangs: Gangs{Sizes: lookups}},
		{name: "jobset", labels: map[string]string{LabelJobSetName: "big"}, gangs: Gangs{Sources: all, Sizes: lookups},
			wantName: "jobset:big", wantSize: 16},
		{name: "jobset that cannot be read", labels: map[string]string{LabelJobSetName: "gone"}, gangs: Gangs{Sources: all, Sizes: lookups},
			wantName: "jobset:gone", wantErr: true},
		{name: "jobset opted in without a sizer", labels: map[string]string{LabelJobSetName: "big"}, gangs: Gangs{Sources: all}},
		{name: "indexed job", labels: map[string]string{batchv1.JobNameLabel: "train"},
			annotations: map[string]string{batchv1.JobCompletionIndexAnnotation: "0"}, gangs: Gangs{Sources: all, Sizes: lookups},
			wantName: "job:train", wantSize: 4},
		{name: "non-indexed job is no gang", labels: map[string]string{batchv1.JobNameLabel: "train"},
			gangs: Gangs{Sources: all, Sizes: lookups}},
		{name: "indexed job running one pod at a time is no gang", labels: map[string]string{batchv1.JobNameLabel: "serial"},
			annotations: map[string]string{batchv1.JobCompletionIndexAnnotation: "3"}, gangs: Gangs{Sources: all, Sizes: lookups}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "p", Labels: tt.labels, Annotations: tt.annotations}}
			name, size, err := tt.gangs.Of(pod)
			if name != tt.wantName || size != tt.wantSize || (err != nil) != tt.wantErr {
				t.Errorf("Of = %q, %d, %v; want %q, %d, error %v", name, size, err, tt.wantName, tt.wantSize, tt.wantErr)
			}
		})
	}
}

func TestCountKueueSucceeded(t *testing.T) {
	pod := func(ns, group string, phase corev1.PodPhase) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p"}, Status: corev1.PodStatus{Phase: phase}}
		if group != "" {
			p.Labels = map[string]string{LabelKueuePodGroup: group}
		}
		return p
	}
	got := CountKueueSucceeded([]*corev1.Pod{pod("ml", "a", corev1.PodSucceeded), pod("ml", "a", corev1.PodSucceeded),
		pod("ml", "a", corev1.PodFailed), pod("ml", "a", corev1.PodRunning), pod("dev", "a", corev1.PodSucceeded), pod("ml", "", corev1.PodSucceeded)})
	if want := map[string]int{"ml/a": 2, "dev/a": 1}; !maps.Equal(got, want) {
		t.Errorf("CountKueueSucceeded = %v, want %v", got, want)
	}
}

func TestParseGangSources(t *testing.T) {
	got, err := ParseGangSources(" jobset, indexed-job,")
	if err != nil || !got[GangSourceJobSet] || !got[GangSourceIndexedJob] || got[GangSourceLeaderWorkerSet] {
		t.Errorf("ParseGangSources = %v, %v", got, err)
	}
	if _, err := ParseGangSources("jobset,mpijob"); err == nil {
		t.Error("ParseGangSources accepted mpijob")
	}
}
