package solver

import (
	"context"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TestSeedExample is the product brief's example: GPU pools are tainted, as
// GPU operators usually do, so CPU pods land on CPU machines.
func TestSeedExample(t *testing.T) {
	cat := gpuCatalog()
	var gpuTypes, cpuTypes []*cloudprovider.InstanceType
	for _, it := range cat {
		if it.GPU != nil {
			gpuTypes = append(gpuTypes, it)
		} else {
			cpuTypes = append(cpuTypes, it)
		}
	}
	snap := &Snapshot{
		Pods: concat(
			makePods(3, "small-gpu", "8", "16Gi", gpus(1), tolerate(string(v1.ResourceNvidiaGPU))),
			makePods(5, "cpu", "4", "8Gi"),
			makePods(2, "big-gpu", "64", "512Gi", gpus(8), tolerate(string(v1.ResourceNvidiaGPU))),
		),
		NodePools: []*NodePool{
			makePool("gpu", gpuTypes, withTaint(string(v1.ResourceNvidiaGPU))),
			makePool("default", cpuTypes),
		},
	}
	plan, err := Solve(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Unschedulable) != 0 {
		t.Fatalf("unschedulable: %+v", plan.Unschedulable)
	}
	type nodeSummary struct {
		Pool string
		GPUs string
		Pods int
	}
	var got []nodeSummary
	for _, n := range plan.NewNodes {
		it := n.Choices[0].InstanceType
		got = append(got, nodeSummary{Pool: n.NodePool, GPUs: it.Labels[v1.LabelGPUCount], Pods: len(n.Pods)})
	}
	sort.Slice(got, func(i, j int) bool {
		if got[i].Pool != got[j].Pool {
			return got[i].Pool < got[j].Pool
		}
		if got[i].GPUs != got[j].GPUs {
			return got[i].GPUs < got[j].GPUs
		}
		return got[i].Pods < got[j].Pods
	})
	// 5 × 4 CPU cannot share one CPU machine here (the largest has 16 CPU), so
	// the cheapest CPU side is two c5.4xlarge (3 + 2 pods).
	want := []nodeSummary{
		{Pool: "default", Pods: 2},
		{Pool: "default", Pods: 3},
		{Pool: "gpu", GPUs: "4", Pods: 3},
		{Pool: "gpu", GPUs: "8", Pods: 1},
		{Pool: "gpu", GPUs: "8", Pods: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan structure (-want +got):\n%s", diff)
	}
	// The 8-GPU nodes must be the cheapest 8-GPU type.
	for _, n := range plan.NewNodes {
		if len(n.Pods) == 1 && n.Choices[0].InstanceType.Name != "g5.48xlarge" {
			t.Errorf("8-GPU pod on %s, want g5.48xlarge", n.Choices[0].InstanceType.Name)
		}
	}
	const wantCost = 2*16.288 + 5.672 + 2*0.68
	if d := plan.CostPerHour - wantCost; d > 1e-6 || d < -1e-6 {
		t.Errorf("cost = %.3f, want %.3f", plan.CostPerHour, wantCost)
	}
	if plan.LowerBoundPerHour > plan.CostPerHour+1e-9 {
		t.Errorf("lower bound %.3f above cost %.3f", plan.LowerBoundPerHour, plan.CostPerHour)
	}
	// The two 8-GPU pods and one 1-GPU pod pairwise cannot share a machine.
	if exclusive := 2*16.288 + 5.672; plan.LowerBoundPerHour < exclusive-1e-9 {
		t.Errorf("lower bound %.3f, want at least %.3f", plan.LowerBoundPerHour, exclusive)
	}
	t.Logf("cost %.3f lower bound %.3f", plan.CostPerHour, plan.LowerBoundPerHour)
}

// TestSeedExampleUntainted: without taints the CPU pods ride free on the GPU machines.
func TestSeedExampleUntainted(t *testing.T) {
	snap := &Snapshot{
		Pods:      concat(makePods(3, "small-gpu", "8", "16Gi", gpus(1)), makePods(5, "cpu", "4", "8Gi"), makePods(2, "big-gpu", "64", "512Gi", gpus(8))),
		NodePools: []*NodePool{makePool("all", gpuCatalog())},
	}
	plan, err := Solve(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Unschedulable) != 0 || len(plan.NewNodes) != 3 {
		t.Fatalf("want 3 nodes and nothing unschedulable, got %d nodes, %v", len(plan.NewNodes), plan.Unschedulable)
	}
	if want := 2*16.288 + 5.672; plan.CostPerHour > want+1e-6 {
		t.Errorf("cost = %.3f, want <= %.3f", plan.CostPerHour, want)
	}
	_ = corev1.ResourceCPU
}
