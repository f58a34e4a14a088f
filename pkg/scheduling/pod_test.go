package scheduling

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// An empty namespaceSelector widens a term to every namespace even when
// namespaces also lists some: the scheduler takes the union.
func TestAffinityTermEmptyNamespaceSelectorMeansAll(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Labels: map[string]string{"app": "web"}}}
	terms := []corev1.PodAffinityTerm{
		{TopologyKey: "h", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Namespaces: []string{"web"}, NamespaceSelector: &metav1.LabelSelector{}},
		{TopologyKey: "h", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, Namespaces: []string{"web"}},
		{TopologyKey: "h", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
	}
	got, err := affinityTerms(pod, terms, false, "t")
	if err != nil {
		t.Fatal(err)
	}
	db := map[string]string{"app": "db"}
	for i, want := range []bool{true, false, false} {
		if m := got[i].Matches("data", db); m != want {
			t.Errorf("term %d matches a db pod in namespace data: %v, want %v", i, m, want)
		}
		if !got[i].Matches("web", db) {
			t.Errorf("term %d does not match a db pod in the pod's own namespace", i)
		}
	}
}

// Namespace labels are not known to the solver, so an anti-affinity term
// with a namespaceSelector looks in every namespace (a pod there may be one
// the selector matches), while an affinity term keeps the pod's own.
func TestAntiAffinityNamespaceSelectorMeansAll(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web"}}
	term := corev1.PodAffinityTerm{TopologyKey: "h", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "data"}}}
	pod.Spec.Affinity = &corev1.Affinity{
		PodAffinity:     &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}},
		PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term}},
	}
	pc, err := NewPodConstraints(pod)
	if err != nil {
		t.Fatal(err)
	}
	db := map[string]string{"app": "db"}
	if !pc.AntiAffinity[0].Matches("data", db) {
		t.Error("anti-affinity with a namespaceSelector does not match a db pod in another namespace")
	}
	if pc.Affinity[0].Matches("data", db) || !pc.Affinity[0].Matches("web", db) {
		t.Error("affinity with a namespaceSelector: want the pod's own namespace only")
	}
}
