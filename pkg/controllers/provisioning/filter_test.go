package provisioning

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func TestProvisionable(t *testing.T) {
	yes := true
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"unschedulable", pendingPod("p"), true},
		{"never tried by the scheduler", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, false},
		{"scheduling gated", withPod(pendingPod("p"), func(p *corev1.Pod) {
			p.Status.Conditions[0].Reason = corev1.PodReasonSchedulingGated
		}), false},
		{"bound", withPod(pendingPod("p"), func(p *corev1.Pod) { p.Spec.NodeName = "n1" }), false},
		{"terminal", withPod(pendingPod("p"), func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), false},
		{"deleting", withPod(pendingPod("p"), func(p *corev1.Pod) { p.DeletionTimestamp = &metav1.Time{} }), false},
		{"mirror", withPod(pendingPod("p"), func(p *corev1.Pod) {
			p.Annotations = map[string]string{mirrorPodAnnotation: "x"}
		}), false},
		{"daemonset", withPod(pendingPod("p"), func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "DaemonSet", Name: "ds", Controller: &yes}}
		}), false},
		{"replicaset", withPod(pendingPod("p"), func(p *corev1.Pod) {
			p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs", Controller: &yes}}
		}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := provisionable(tt.pod); got != tt.want {
				t.Errorf("provisionable() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPoolIncompatibility(t *testing.T) {
	gpuPool := &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{
			ObjectMeta: v1.ObjectMeta{Labels: map[string]string{"team": "ml"}},
			Spec: v1.NodeClaimTemplateSpec{
				Taints: []corev1.Taint{
					{Key: "nvidia.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule},
					{Key: "soft", Effect: corev1.TaintEffectPreferNoSchedule},
				},
				Requirements: []v1.NodeSelectorRequirementWithMinValues{
					{Key: v1.LabelGPUName, Operator: corev1.NodeSelectorOpIn, Values: []string{"a10g", "l4"}},
					{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpNotIn, Values: []string{"spot"}},
					{Key: v1.LabelGPUCount, Operator: corev1.NodeSelectorOpLt, Values: []string{"5"}},
				},
			},
		}},
	}
	tolerates := func(p *corev1.Pod) {
		p.Spec.Tolerations = []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists}}
	}
	selector := func(kv ...string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.NodeSelector = map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				p.Spec.NodeSelector[kv[i]] = kv[i+1]
			}
		}
	}
	affinity := func(terms ...[]corev1.NodeSelectorRequirement) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			sel := &corev1.NodeSelector{}
			for _, t := range terms {
				sel.NodeSelectorTerms = append(sel.NodeSelectorTerms, corev1.NodeSelectorTerm{MatchExpressions: t})
			}
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: sel}}
		}
	}
	req := func(key string, op corev1.NodeSelectorOperator, values ...string) corev1.NodeSelectorRequirement {
		return corev1.NodeSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want string
	}{
		{"untolerated taint", pendingPod("p"), "taint nvidia.com/gpu=true:NoSchedule not tolerated"},
		{"tolerated, no constraints", withPod(pendingPod("p"), tolerates), ""},
		{"selector on an allowed GPU", withPod(pendingPod("p"), tolerates, selector(v1.LabelGPUName, "l4")), ""},
		{"selector on a GPU the pool excludes", withPod(pendingPod("p"), tolerates, selector(v1.LabelGPUName, "h100")),
			"node selector stowage.dev/gpu-name In [h100]: the pool allows stowage.dev/gpu-name In [a10g,l4]"},
		{"selector on spot, which the pool forbids", withPod(pendingPod("p"), tolerates, selector(v1.LabelCapacityType, "spot")),
			"node selector stowage.dev/capacity-type In [spot]: the pool allows stowage.dev/capacity-type NotIn [spot]"},
		{"selector on the template label", withPod(pendingPod("p"), tolerates, selector("team", "ml")), ""},
		{"selector on another team", withPod(pendingPod("p"), tolerates, selector("team", "web")),
			"node selector team In [web]: the pool's nodes have team=ml"},
		{"selector on a label nothing sets", withPod(pendingPod("p"), tolerates, selector("disk", "ssd")),
			"node selector disk In [ssd]: the pool's nodes do not have label disk"},
		{"selector on the pool by name", withPod(pendingPod("p"), tolerates, selector(v1.LabelNodePool, "gpu")), ""},
		{"selector on another pool", withPod(pendingPod("p"), tolerates, selector(v1.LabelNodePool, "cpu")),
			"node selector stowage.dev/nodepool In [cpu]: the pool's nodes have stowage.dev/nodepool=gpu"},
		{"well-known zone label is fine", withPod(pendingPod("p"), tolerates, selector(v1.LabelZone, "us-east-1a")), ""},
		{"affinity: one satisfiable term suffices", withPod(pendingPod("p"), tolerates, affinity(
			[]corev1.NodeSelectorRequirement{req(v1.LabelGPUName, corev1.NodeSelectorOpIn, "h100")},
			[]corev1.NodeSelectorRequirement{req(v1.LabelGPUName, corev1.NodeSelectorOpIn, "a10g")},
		)), ""},
		{"affinity: no term satisfiable", withPod(pendingPod("p"), tolerates, affinity(
			[]corev1.NodeSelectorRequirement{req(v1.LabelGPUName, corev1.NodeSelectorOpNotIn, "a10g", "l4")},
			[]corev1.NodeSelectorRequirement{req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot")},
		)), "node affinity stowage.dev/gpu-name NotIn [a10g,l4]: the pool allows stowage.dev/gpu-name In [a10g,l4] or " +
			"stowage.dev/capacity-type In [spot]: the pool allows stowage.dev/capacity-type NotIn [spot]"},
		{"affinity: gpu count in range", withPod(pendingPod("p"), tolerates, affinity(
			[]corev1.NodeSelectorRequirement{req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "1")},
		)), ""},
		{"affinity: DoesNotExist on a label the pool pins", withPod(pendingPod("p"), tolerates, affinity(
			[]corev1.NodeSelectorRequirement{req(v1.LabelGPUName, corev1.NodeSelectorOpDoesNotExist)},
		)), "node affinity stowage.dev/gpu-name DoesNotExist: the pool's nodes always have stowage.dev/gpu-name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, poolIncompatibility(tt.pod, gpuPool)); diff != "" {
				t.Errorf("poolIncompatibility() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
