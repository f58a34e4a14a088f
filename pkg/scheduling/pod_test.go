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
	got, err := affinityTerms(pod, terms, "t")
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
