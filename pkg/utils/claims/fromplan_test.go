package claims

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

func TestFromPlan(t *testing.T) {
	it := &cloudprovider.InstanceType{Name: "g5.xlarge"}
	offering := cloudprovider.Offering{Zone: "us-east-1a", CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.50912, ReservationID: ""}
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu", UID: "pool-uid"}}
	pool.Spec.Template.ObjectMeta.Labels = map[string]string{"team": "ml"}
	pool.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}}
	n := &solver.NewNode{
		NodePool: "gpu",
		Choices:  []solver.Choice{{InstanceType: it, Offering: offering}},
		Requests: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("1")},
		Requirements: []v1.NodeSelectorRequirementWithMinValues{
			{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1a"}},
			{Key: v1.LabelNodePool, Operator: corev1.NodeSelectorOpIn, Values: []string{"gpu"}},
			{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot"}},
		},
	}
	claim, err := FromPlan(pool, n)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"team": "ml", v1.LabelNodePool: "gpu"}, claim.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if claim.GenerateName != "gpu-" {
		t.Errorf("generateName = %q", claim.GenerateName)
	}
	wantOwner := []metav1.OwnerReference{{APIVersion: "stowage.dev/v1", Kind: "NodePool", Name: "gpu", UID: "pool-uid"}}
	if diff := cmp.Diff(wantOwner, claim.OwnerReferences); diff != "" {
		t.Errorf("owner references (-want +got):\n%s", diff)
	}
	wantReqs := []v1.NodeSelectorRequirementWithMinValues{ // sorted, without the reserved pool label
		{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot"}},
		{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1a"}},
	}
	if diff := cmp.Diff(wantReqs, claim.Spec.Requirements); diff != "" {
		t.Errorf("requirements (-want +got):\n%s", diff)
	}
	wantOfferings := []v1.OfferingChoice{{InstanceType: "g5.xlarge", Zone: "us-east-1a", CapacityType: "spot", PricePerHour: "0.50912"}}
	if diff := cmp.Diff(wantOfferings, claim.Spec.Offerings); diff != "" {
		t.Errorf("offerings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(pool.Spec.Template.Spec.Taints, claim.Spec.Taints); diff != "" {
		t.Errorf("taints (-want +got):\n%s", diff)
	}
}

func TestFromPlanBoundsOfferings(t *testing.T) {
	it := &cloudprovider.InstanceType{Name: "g5.xlarge"}
	n := &solver.NewNode{NodePool: "gpu"}
	for i := 0; i < 70; i++ {
		n.Choices = append(n.Choices, solver.Choice{InstanceType: it, Offering: cloudprovider.Offering{Zone: "z", CapacityType: "spot"}})
	}
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	claim, err := FromPlan(pool, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(claim.Spec.Offerings) != maxOfferings {
		t.Errorf("%d offerings, want the API's bound %d", len(claim.Spec.Offerings), maxOfferings)
	}
	if _, err := FromPlan(pool, &solver.NewNode{NodePool: "gpu"}); err == nil {
		t.Error("FromPlan accepted a node without choices")
	}
}

func TestFromPlanGangAndPlacement(t *testing.T) {
	it := &cloudprovider.InstanceType{Name: "p5.48xlarge", Placement: true}
	n := &solver.NewNode{
		NodePool:       "gpu",
		Choices:        []solver.Choice{{InstanceType: it, Offering: cloudprovider.Offering{Zone: "us-east-1a", CapacityType: "on-demand"}}},
		Gang:           "ml/llm-pretrain",
		PlacementGroup: solver.PlacementGroupName("ml/llm-pretrain", "us-east-1a"),
	}
	claim, err := FromPlan(&v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := claim.Labels[v1.LabelGang]; got != solver.GangLabelValue("ml/llm-pretrain") {
		t.Errorf("gang label %q", got)
	}
	if got := claim.Annotations[v1.AnnotationGang]; got != "ml/llm-pretrain" {
		t.Errorf("gang annotation %q", got)
	}
	if claim.Spec.Placement == nil || claim.Spec.Placement.Group != n.PlacementGroup {
		t.Errorf("placement %+v, want group %s", claim.Spec.Placement, n.PlacementGroup)
	}
	n.Gang, n.PlacementGroup = "", ""
	claim, _ = FromPlan(&v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}, n)
	if _, ok := claim.Labels[v1.LabelGang]; ok || claim.Spec.Placement != nil || claim.Annotations != nil {
		t.Errorf("a node outside gangs got %v %v %+v", claim.Labels, claim.Annotations, claim.Spec.Placement)
	}
}
