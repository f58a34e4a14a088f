package claims

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func TestLabels(t *testing.T) {
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "c1", Labels: map[string]string{v1.LabelNodePool: "gpu", "team": "ml"}},
		Spec: v1.NodeClaimSpec{Requirements: []v1.NodeSelectorRequirementWithMinValues{
			{Key: "stowage.dev/gpu-name", Operator: corev1.NodeSelectorOpIn, Values: []string{"a100"}},
			{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"z1", "z2"}},
			{Key: v1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"other"}},
			{Key: "arch", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"arm64"}},
		}},
		Status: v1.NodeClaimStatus{InstanceType: "p4d.24xlarge", Zone: "z2"},
	}
	want := map[string]string{
		v1.LabelNodePool: "gpu", "team": "ml", "stowage.dev/gpu-name": "a100",
		v1.LabelInstanceType: "p4d.24xlarge", v1.LabelZone: "z2", v1.LabelNodeClaim: "c1",
	}
	if diff := cmp.Diff(want, Labels(claim)); diff != "" {
		t.Errorf("Labels (-want +got):\n%s", diff)
	}
}
