package provisioning

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// A pod whose required node affinity names its node by field
// (matchFields metadata.name, as operators pin a pod to one node) can only
// run there: a new machine has another name, so buying one helps nothing,
// and the machine stands idle, held by the pod's nomination, for as long as
// the pod is pending.
func TestPodPinnedToANodeByNameBuysNothing(t *testing.T) {
	f := newFixture(t, nil)
	realSolverWith(f, g5)
	fullNodeIn(f, "n1", "us-east-1b")
	f.cluster.UpdatePod(withPod(pendingPod("pinned"), tolerateGPU, func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}},
			}}},
		}}
	}))
	r := f.schedule(t)
	if len(r.Created) != 0 {
		t.Errorf("%d machines bought for a pod that may only run on node n1", len(r.Created))
	}
}

// The pinned pod is still planned onto its node when that node has room.
func TestPodPinnedToANodeByNameIsPlannedThere(t *testing.T) {
	f := newFixture(t, nil)
	realSolverWith(f, g5)
	fullNodeIn(f, "n1", "us-east-1b")
	fullNodeIn(f, "n2", "us-east-1b")
	f.cluster.UpdatePod(withPod(pendingPod("pinned"), tolerateGPU, func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests = res("cpu", "1")
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}},
			}}},
		}}
	}))
	r := f.schedule(t)
	if len(r.Created) != 0 || len(r.Plan.Bindings) != 1 || r.Plan.Bindings[0].NodeName != "n2" {
		t.Errorf("plan %+v, want the pod bound to n2 and nothing bought", r.Plan)
	}
}
