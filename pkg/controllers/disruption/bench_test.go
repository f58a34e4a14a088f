package disruption

import (
	"context"
	"fmt"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

// BenchmarkPass times one disruption pass, reading the state and deciding,
// at 100 nodes / 500 pods and 1,000 nodes / 5,000 pods. The what-ifs answer
// at once (nothing fits), so what is timed is the controller's own work:
// linear code takes about ten times longer at the larger scale.
func BenchmarkPass(b *testing.B) {
	for _, scale := range []struct{ nodes, pods int }{{100, 500}, {1000, 5000}} {
		b.Run(fmt.Sprintf("nodes=%d/pods=%d", scale.nodes, scale.pods), func(b *testing.B) {
			objs := []client.Object{pool("p")}
			for i := range scale.nodes {
				c, n := machine(fmt.Sprintf("n-%04d", i), "p", catalog()[1], v1.CapacityTypeOnDemand, start)
				objs = append(objs, c, n)
			}
			for i := range scale.pods {
				objs = append(objs, pod(fmt.Sprintf("p-%05d", i), fmt.Sprintf("n-%04d", i%scale.nodes), "1"))
			}
			c := cloudtest.NewClientBuilder().WithObjects(objs...).Build()
			nothingFits := SolverFunc(func(_ context.Context, s *solver.Snapshot) (*solver.Plan, error) {
				plan := &solver.Plan{}
				for _, p := range s.Pods {
					plan.Unschedulable = append(plan.Unschedulable, solver.Unschedulable{Pod: p, Reason: "bench"})
				}
				return plan, nil
			})
			ctrl := NewController(Deps{Client: c, CloudProvider: &fakeCloud{types: catalog()}, Solver: nothingFits,
				Clock: clocktesting.NewFakeClock(start.Add(time.Hour))})
			for b.Loop() {
				if err := ctrl.Pass(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
