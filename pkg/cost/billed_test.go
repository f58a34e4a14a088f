package cost

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// The prices a claim records for reserved capacity (list / 10,000,000) and
// for a commitment's covered offering ($0.0001/h) are marginal prices for the
// solver, not what the bill charges. The cost report must show what the
// machine costs: a capacity reservation at its on-demand rate (billed whether
// used or not), a covered machine at its commitment's rate, and a machine
// whose commitment ended at list price.
func TestAttributePricesMachinesAsTheBillDoes(t *testing.T) {
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	gpus := resources("cpu", "8", "memory", "64Gi", "nvidia.com/gpu", "4")
	plain := v1.OfferingChoice{InstanceType: "g.2xlarge", Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "10.0000"}
	covered := plain
	covered.PricePerHour = "0.0001"

	reserved := claim("r", "gpu", v1.CapacityTypeReserved, "g.2xlarge", "0.000001", "n", "p://r", gpus)
	reserved.Spec.Offerings = []v1.OfferingChoice{{InstanceType: "g.2xlarge", Zone: "zone-a", CapacityType: v1.CapacityTypeReserved, PricePerHour: "0.000001"}, plain}
	onCommitment := claim("c", "gpu", v1.CapacityTypeOnDemand, "g.2xlarge", "0.0001", "n", "p://c", gpus)
	onCommitment.Spec.Offerings = []v1.OfferingChoice{covered, plain}
	sp := v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: "sp"}, Spec: v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan,
		AmountPerHour: ptr.To(resource.MustParse("20")), DiscountPercent: ptr.To(int32(30))}}
	ended := sp
	ended.Spec.EndTime = &metav1.Time{Time: now.Add(-time.Hour)}
	busy := pod("ml", "train", "n", corev1.PodRunning, resources("cpu", "8", "memory", "64Gi", "nvidia.com/gpu", "4"))

	for _, tt := range []struct {
		name        string
		claim       v1.NodeClaim
		commitments []v1.Commitment
		want        float64
	}{
		{"capacity reservation", reserved, nil, 10},
		{"covered by an active savings plan", onCommitment, []v1.Commitment{sp}, 7},
		{"its savings plan ended", onCommitment, []v1.Commitment{ended}, 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := State{NodeClaims: []v1.NodeClaim{tt.claim}, Nodes: []corev1.Node{node("n", tt.claim.Status.ProviderID, gpus)},
				Pods: []corev1.Pod{busy}, Commitments: tt.commitments, Now: now}
			r := Attribute(s, testModel, nil)
			if d := r.Total - tt.want; d > 1e-6 || d < -1e-6 {
				t.Errorf("total $%.6f/h, want $%.4f/h", r.Total, tt.want)
			}
			if len(r.Namespaces) != 1 || r.Namespaces[0].PerHour-tt.want > 1e-6 || tt.want-r.Namespaces[0].PerHour > 1e-6 {
				t.Errorf("namespace ml, which requests the whole machine, pays %+v; want $%.4f/h", r.Namespaces, tt.want)
			}
		})
	}
}
