package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cost"
	"github.com/stowage-k8s/stowage/pkg/operator"
)

type staticPricer map[string]float64

func (p staticPricer) OnDemandPrice(instanceType, _ string) (float64, bool) {
	v, ok := p[instanceType]
	return v, ok
}

// costCluster is one spot GPU machine ($1.00/h, on-demand $2.50) with
// 8 cores, 32 GiB, 1 GPU. CPU/memory reference value at the default model:
// 8*0.0316 + 32*0.0042 = 0.3872, so on-demand the GPU part is 2.1128, CPU
// 0.2528 and memory 0.1344; at spot each is scaled by 1.00/2.50: GPU 0.8451,
// CPU 0.1011, memory 0.0538. ml requests the GPU and 4 cores:
// 0.8451 + 0.0506 = 0.8957.
func costCluster(t *testing.T) *fake.ClientBuilder {
	t.Helper()
	scheme, err := operator.NewScheme()
	if err != nil {
		t.Fatal(err)
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"),
		v1.ResourceNvidiaGPU: resource.MustParse("1"),
	}
	return fake.NewClientBuilder().WithScheme(scheme).WithObjects(
		&v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "gpu-abc", Labels: map[string]string{v1.LabelNodePool: "gpu"}},
			Status: v1.NodeClaimStatus{ProviderID: "fake://1", NodeName: "n1", InstanceType: "g.big",
				CapacityType: v1.CapacityTypeSpot, PricePerHour: "1.00", Capacity: capacity},
		},
		&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"},
			Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "p"},
			Spec: corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("4"), v1.ResourceNvidiaGPU: resource.MustParse("1")}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning}},
	)
}

func TestRunCostTable(t *testing.T) {
	kube := costCluster(t).Build()
	var out, errOut bytes.Buffer
	if err := runCost(context.Background(), &out, &errOut, kube, staticPricer{"g.big": 2.5}, "table"); err != nil {
		t.Fatalf("runCost: %v", err)
	}
	want := `NODEPOOL  MACHINES  $/H     ON-DEMAND $/H  SAVED  IDLE GPU $/H
gpu       1         1.0000  2.5000         60.0%  0.0000
TOTAL     1         1.0000  2.5000         60.0%  0.0000

CAPACITY TYPE  MACHINES  $/H     SHARE
spot           1         1.0000  100.0%

NAMESPACE          $/H     GPU $/H  SHARE
ml                 0.8957  0.8451   89.6%
(idle GPUs)        0.0000  0.0000   0.0%
(idle CPU/memory)  0.1043  0.0000   10.4%
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("table mismatch (-want +got):\n%s", diff)
	}
	if errOut.Len() != 0 {
		t.Errorf("unexpected warnings: %s", errOut.String())
	}
}

func TestRunCostJSONAndWarnings(t *testing.T) {
	kube := costCluster(t).Build()
	var out, errOut bytes.Buffer
	if err := runCost(context.Background(), &out, &errOut, kube, staticPricer{}, "json"); err != nil {
		t.Fatalf("runCost: %v", err)
	}
	var got cost.Report
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("output is not a JSON report: %v\n%s", err, out.String())
	}
	if got.Total != 1 || got.OnDemandEquivalent != 1 || len(got.Namespaces) != 1 {
		t.Errorf("report = %+v; want total 1, on-demand equivalent 1 (no price known), one namespace", got)
	}
	if !strings.Contains(errOut.String(), `warning: nodeclaim gpu-abc: no on-demand price known for instance type "g.big"`) {
		t.Errorf("stderr = %q, want the missing on-demand price warning", errOut.String())
	}
}

func TestCostCommandRejectsBadOutput(t *testing.T) {
	root := newRootCommand()
	root.SetArgs([]string{"cost", "-o", "yaml"})
	root.SetOut(&bytes.Buffer{})
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), "-o/--output: want table or json") {
		t.Fatalf("error = %v, want it to name -o/--output", err)
	}
}

// TestRunCostCommitments: an on-demand machine ($2.50/h list) is charged to
// a Savings Plan of $4/h at 40% off, which it uses for $1.50/h, saving $1/h.
func TestRunCostCommitments(t *testing.T) {
	amount := resource.MustParse("4")
	discount := int32(40)
	kube := costCluster(t).WithObjects(
		&v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: "od", Labels: map[string]string{v1.LabelNodePool: "gpu"}},
			Status: v1.NodeClaimStatus{ProviderID: "fake://2", InstanceType: "g.big", Zone: "z1",
				CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "2.50"},
		},
		&v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: "sp"},
			Spec: v1.CommitmentSpec{Type: v1.CommitmentSavingsPlan, AmountPerHour: &amount, DiscountPercent: &discount}},
	).Build()
	var out, errOut bytes.Buffer
	if err := runCost(context.Background(), &out, &errOut, kube, staticPricer{"g.big": 2.5}, "table"); err != nil {
		t.Fatal(err)
	}
	want := "sp          SavingsPlan  1.5 $/h  4 $/h      37.5%        1         1.0000"
	if !strings.Contains(out.String(), want) {
		t.Errorf("commitments table missing %q:\n%s", want, out.String())
	}
}

// The JSON report names a commitment's fields as stowage simulate does.
func TestRunCostCommitmentsJSON(t *testing.T) {
	count := int32(2)
	kube := costCluster(t).WithObjects(&v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: "ri"},
		Spec: v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: &count}}).Build()
	var out, errOut bytes.Buffer
	if err := runCost(context.Background(), &out, &errOut, kube, staticPricer{}, "json"); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Commitments []map[string]any `json:"commitments"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Commitments) != 1 {
		t.Fatalf("commitments = %v, want one", got.Commitments)
	}
	for _, k := range []string{"name", "type", "committed", "used", "unit", "machines", "savingsPerHour"} {
		if _, ok := got.Commitments[0][k]; !ok {
			t.Errorf("commitment JSON %v lacks %q", got.Commitments[0], k)
		}
	}
}
