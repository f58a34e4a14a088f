package disruption

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func TestPoolDrift(t *testing.T) {
	req := func(key string, op corev1.NodeSelectorOperator, vals ...string) v1.NodeSelectorRequirementWithMinValues {
		return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: vals}
	}
	cases := []struct {
		name  string
		pool  func(*v1.NodePool)
		claim func(*v1.NodeClaim)
		want  string
	}{
		{name: "unchanged"},
		{name: "requirement still met", pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
				req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot", "on-demand"),
				req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "0"),
				req("absent", corev1.NodeSelectorOpDoesNotExist),
			}
		}},
		{name: "capacity type no longer allowed", want: ReasonRequirementsDrifted, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "spot")}
		}},
		{name: "instance type excluded", want: ReasonRequirementsDrifted, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{req(v1.LabelInstanceType, corev1.NodeSelectorOpNotIn, "gpu1")}
		}},
		{name: "gpu count bound", want: ReasonRequirementsDrifted, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "1")}
		}},
		{name: "template label added", want: ReasonLabelsDrifted, pool: func(p *v1.NodePool) {
			p.Spec.Template.ObjectMeta.Labels = map[string]string{"team": "ml"}
		}},
		{name: "taint added", want: ReasonTaintsDrifted, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}},
		{name: "taint removed", want: ReasonTaintsDrifted, claim: func(c *v1.NodeClaim) {
			c.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}},
		{name: "same taints", pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}, claim: func(c *v1.NodeClaim) {
			c.Spec.Taints = []corev1.Taint{{Key: "gpu", Effect: corev1.TaintEffectNoSchedule}}
		}},
		{name: "startup taint added", want: ReasonStartupTaintsDrifted, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.StartupTaints = []corev1.Taint{{Key: "driver", Effect: corev1.TaintEffectNoSchedule}}
		}},
		{name: "node class changed", want: ReasonNodeClassRefDrifted, pool: func(p *v1.NodePool) {
			p.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "aws.stowage.dev", Kind: "EC2NodeClass", Name: "b"}
		}, claim: func(c *v1.NodeClaim) {
			c.Spec.NodeClassRef = &v1.NodeClassReference{Group: "aws.stowage.dev", Kind: "EC2NodeClass", Name: "a"}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
			if tc.pool != nil {
				tc.pool(p)
			}
			claim := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "n"}}
			if tc.claim != nil {
				tc.claim(claim)
			}
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{
				v1.LabelInstanceType: "gpu1", v1.LabelCapacityType: "on-demand", v1.LabelGPUCount: "1",
			}}}
			got, msg := PoolDrift(p, claim, node)
			if got != tc.want {
				t.Errorf("PoolDrift = %q (%s), want %q", got, msg, tc.want)
			}
			if (got == "") != (msg == "") {
				t.Errorf("reason %q with message %q: want both or neither", got, msg)
			}
		})
	}
}
