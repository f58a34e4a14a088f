package scenarios

import (
	"context"
	"os"
	"testing"

	"github.com/stowage-k8s/stowage/pkg/simulate"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pricing"
)

// BenchmarkScenarios solves each scenario against the AWS catalog. Besides
// time it reports the plan's quality, which the summary of `make bench`
// tabulates: pods/s, $/h, the lower bound, the gap to it in percent, the
// naive one-node-per-pod $/h, and cost relative to plain first-fit-decreasing
// (ffd-ratio below 1 means cheaper than FFD).
func BenchmarkScenarios(b *testing.B) {
	for _, s := range All() {
		b.Run(s.Name, func(b *testing.B) {
			if s.Name == "diverse-100k" && os.Getenv("STOWAGE_BENCH_100K") == "" {
				b.Skip("set STOWAGE_BENCH_100K=1 (make bench does) to solve 100,000 pods")
			}
			set, err := s.Load()
			if err != nil {
				b.Fatal(err)
			}
			c, err := pricing.Load(catalogName)
			if err != nil {
				b.Fatal(err)
			}
			snap, err := simulate.BuildSnapshot(simulate.Input{Manifests: set, Catalog: c})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var plan *solver.Plan
			for b.Loop() {
				if plan, err = solver.Solve(ctx, snap); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			perOp := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(float64(len(snap.Pods))/perOp, "pods/s")
			b.ReportMetric(plan.CostPerHour, "$/h")
			b.ReportMetric(plan.LowerBoundPerHour, "lb-$/h")
			gap := 0.0
			if plan.LowerBoundPerHour > 0 {
				gap = (plan.CostPerHour - plan.LowerBoundPerHour) / plan.LowerBoundPerHour * 100
			}
			b.ReportMetric(gap, "gap-%")
			naive, _ := simulate.NaiveCost(snap, c.InstanceTypes)
			b.ReportMetric(naive, "naive-$/h")
			ffd, err := solver.Solve(ctx, snap, solver.WithStrategy(solver.StrategyFFD))
			if err != nil {
				b.Fatal(err)
			}
			if ffd.CostPerHour > 0 {
				b.ReportMetric(plan.CostPerHour/ffd.CostPerHour, "ffd-ratio")
			}
			b.ReportMetric(float64(len(plan.Unschedulable)), "unschedulable")
		})
	}
}
