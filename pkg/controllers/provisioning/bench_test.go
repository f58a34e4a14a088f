package provisioning

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

// BenchmarkSchedulePass times one provisioning pass, with the real solver,
// on a cluster of nodes of 8 CPU, four fifths of the pods bound to them and
// one fifth pending, at 100 nodes / 500 pods, 1,000 nodes / 5,000 pods and
// 4,000 nodes / 10,000 pods. A pass linear in nodes and pods takes about ten
// times as long at 1,000 nodes as at 100; a per-pod walk of every node, as
// the state once did, about a hundred times (its pass took 25 s at 4,000
// nodes / 10,000 pods). make bench-e2e prints all three, with the pending
// pods decided per second.
func BenchmarkSchedulePass(b *testing.B) {
	for _, scale := range []struct{ nodes, pods int }{{100, 500}, {1000, 5000}, {4000, 10000}} {
		b.Run(fmt.Sprintf("nodes=%d/pods=%d", scale.nodes, scale.pods), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				ctrl := benchCluster(scale.nodes, scale.pods)
				b.StartTimer()
				r, err := ctrl.Schedule(context.Background(), Window{Opened: now, Closed: now})
				if err != nil {
					b.Fatal(err)
				}
				if len(r.Pods) != scale.pods/5 {
					b.Fatalf("planned %d pods, want %d", len(r.Pods), scale.pods/5)
				}
			}
			// Pending pods decided per second of pass, the unit of Karpenter's
			// scheduling benchmark (its MinPodsPerSec is 100).
			b.ReportMetric(float64(scale.pods/5*b.N)/b.Elapsed().Seconds(), "pods/s")
		})
	}
}

var benchType = &cloudprovider.InstanceType{
	Name:     "m.2xlarge",
	Capacity: res("cpu", "8", "memory", "32Gi", "pods", "110"),
	Offerings: []cloudprovider.Offering{
		{Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 0.4, Available: true},
	},
}

// benchCluster is a controller whose state holds nodes initialized claims
// with their nodes and pods pods: 1 CPU each, bound four to a node until a
// fifth of them are left pending.
func benchCluster(nodes, pods int) *Controller {
	clk := clocktesting.NewFakeClock(now)
	cluster := state.NewCluster(clk)
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "bench", UID: "bench"}}
	cluster.UpdateNodePool(pool)
	for i := range nodes {
		name := fmt.Sprintf("bench-%04d", i)
		cluster.UpdateNodeClaim(&v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodePool: "bench"}},
			Spec:       v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{{InstanceType: benchType.Name, Zone: "zone-a", CapacityType: v1.CapacityTypeOnDemand}}},
			Status: v1.NodeClaimStatus{ProviderID: "fake://" + name, NodeName: "n-" + name, Allocatable: benchType.Allocatable(),
				Conditions: []metav1.Condition{{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, LastTransitionTime: metav1.NewTime(now)}}},
		})
		cluster.UpdateNode(&corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n-" + name, Labels: map[string]string{v1.LabelNodePool: "bench", v1.LabelNodeClaim: name,
				v1.LabelZone: "zone-a", v1.LabelInstanceType: benchType.Name, v1.LabelCapacityType: v1.CapacityTypeOnDemand}},
			Spec: corev1.NodeSpec{ProviderID: "fake://" + name},
			Status: corev1.NodeStatus{Allocatable: benchType.Allocatable(), Capacity: benchType.Capacity,
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		})
	}
	for i := range pods {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: fmt.Sprintf("pod-%05d", i), UID: types.UID(fmt.Sprintf("uid-%05d", i))},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}}}},
		}
		if i < pods*4/5 {
			p.Spec.NodeName = fmt.Sprintf("n-bench-%04d", i%nodes)
			p.Status.Phase = corev1.PodRunning
		} else {
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
				Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable}}}
		}
		cluster.UpdatePod(p)
	}
	return NewController(Deps{
		Client:        cloudtest.NewClientBuilder().Build(),
		Cluster:       cluster,
		CloudProvider: &stubCloud{types: map[string][]*cloudprovider.InstanceType{"bench": {benchType}}},
		Solver:        SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }),
		Clock:         clk,
		Recorder:      &events.FakeRecorder{},
	})
}
