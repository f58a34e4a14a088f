package helm

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The controller must never run on a node Stowage may remove, whatever
// affinity the user adds: a consolidation that drains the leader stalls
// every decision until a replacement is scheduled, and with one replica
// Stowage can remove the node it runs on.
func TestControllerStaysOffItsOwnNodes(t *testing.T) {
	guard := corev1.NodeSelectorRequirement{Key: "stowage.dev/nodepool", Operator: corev1.NodeSelectorOpDoesNotExist}
	for name, tt := range map[string]struct {
		affinity  string
		wantTerms int
		check     func(t *testing.T, a *corev1.Affinity)
	}{
		"default": {wantTerms: 1},
		"pod anti-affinity only": {
			affinity:  `{"podAntiAffinity":{"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":100,"podAffinityTerm":{"topologyKey":"kubernetes.io/hostname","labelSelector":{"matchLabels":{"app":"x"}}}}]}}`,
			wantTerms: 1,
			check: func(t *testing.T, a *corev1.Affinity) {
				if a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
					t.Errorf("the user's podAntiAffinity was lost: %+v", a)
				}
			},
		},
		"own required node terms": {
			affinity: `{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[` +
				`{"matchExpressions":[{"key":"pool","operator":"In","values":["system"]}]},` +
				`{"matchFields":[{"key":"metadata.name","operator":"In","values":["n1"]}]}]},` +
				`"preferredDuringSchedulingIgnoredDuringExecution":[{"weight":1,"preference":{"matchExpressions":[{"key":"a","operator":"Exists"}]}}]}}`,
			wantTerms: 2,
			check: func(t *testing.T, a *corev1.Affinity) {
				terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
				if len(terms[0].MatchExpressions) != 2 || terms[0].MatchExpressions[0].Key != "pool" || len(terms[1].MatchFields) != 1 {
					t.Errorf("the user's node selector terms were changed: %+v", terms)
				}
				if len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
					t.Errorf("the user's preferred node affinity was lost")
				}
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			args := []string{"--set", "cloud=fake", "--set", "clusterName=c"}
			if tt.affinity != "" {
				args = append(args, "--set-json", "affinity="+tt.affinity)
			}
			d := into[appsv1.Deployment](t, render(t, args...), "Deployment/stowage")
			a := d.Spec.Template.Spec.Affinity
			if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
				t.Fatalf("no required node affinity: %+v", a)
			}
			terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
			if len(terms) != tt.wantTerms {
				t.Fatalf("%d node selector terms, want %d: %+v", len(terms), tt.wantTerms, terms)
			}
			for i, term := range terms {
				if !slices.ContainsFunc(term.MatchExpressions, func(r corev1.NodeSelectorRequirement) bool {
					return r.Key == guard.Key && r.Operator == guard.Operator && len(r.Values) == 0
				}) {
					t.Errorf("node selector term %d lets the controller onto Stowage's nodes: %+v", i, term)
				}
			}
			if tt.check != nil {
				tt.check(t, a)
			}
		})
	}
}
