package scenarios

import (
	"context"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stowage-k8s/stowage/pkg/simulate"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pricing"
)

// BenchmarkScenarios solves each scenario against the AWS catalog with the
// default pool (or the scenario's own pools). Besides time it reports the
// plan's quality, which the summary of `make bench` tabulates: pods/s, $/h,
// the lower bound and the gap to it in percent, the naive one-node-per-pod
// $/h, cost relative to plain first-fit-decreasing, and, measured in the
// same run, today's solver against the one before the LP relaxation
// (WithLegacy): its time ratio and its cost ratio (below 1: faster,
// cheaper). It also reports the bound's share of the solve time, the peak
// heap of one solve and its live heap.
func BenchmarkScenarios(b *testing.B) {
	for _, s := range All() {
		b.Run(s.Name, func(b *testing.B) {
			if strings.HasSuffix(s.Name, "-100k") && os.Getenv("STOWAGE_BENCH_100K") == "" {
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
			var stats solver.Stats
			for b.Loop() {
				if plan, err = solver.Solve(ctx, snap, solver.WithStats(&stats)); err != nil {
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
			if math.Abs(gap) < 1e-9 {
				// A bound equal to the plan, summed in another order: print 0, not -0.0000000.
				gap = 0
			}
			b.ReportMetric(gap, "gap-%")
			b.ReportMetric(100*stats.Bound.Seconds()/stats.Total.Seconds(), "bound-%")
			naive, _ := simulate.NaiveCost(snap, c.InstanceTypes)
			b.ReportMetric(naive, "naive-$/h")
			ffd, err := solver.Solve(ctx, snap, solver.WithStrategy(solver.StrategyFFD))
			if err != nil {
				b.Fatal(err)
			}
			if ffd.CostPerHour > 0 {
				b.ReportMetric(plan.CostPerHour/ffd.CostPerHour, "ffd-ratio")
			}
			// Today's solver against the one before it, back to back.
			start := time.Now()
			legacy, err := solver.Solve(ctx, snap, solver.WithLegacy())
			if err != nil {
				b.Fatal(err)
			}
			legacyTime := time.Since(start)
			start = time.Now()
			if _, err := solver.Solve(ctx, snap); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(time.Since(start).Seconds()/legacyTime.Seconds(), "time-vs-legacy")
			if legacy.CostPerHour > 0 {
				b.ReportMetric(plan.CostPerHour/legacy.CostPerHour, "cost-vs-legacy")
			}
			b.ReportMetric(peakHeapMB(func() { _, _ = solver.Solve(ctx, snap) }), "peak-MB")
			b.ReportMetric(liveHeapMB(func() { _, _ = solver.Solve(ctx, snap) }), "live-MB")
			b.ReportMetric(float64(len(plan.Unschedulable)), "unschedulable")
		})
	}
}

// peakHeapMB runs f and samples the heap every 5 ms, returning the largest
// value seen less the heap before f, in MB. The heap holds garbage not yet
// collected: with the default GOGC=100 it may grow to twice the live heap,
// the input included, so this says how far the heap grows, not what f needs.
func peakHeapMB(f func()) float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak := base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				var s runtime.MemStats
				runtime.ReadMemStats(&s)
				peak = max(peak, s.HeapAlloc)
			}
		}
	}()
	f()
	close(done)
	wg.Wait()
	return float64(peak-base) / 1e6
}

// liveHeapMB is peakHeapMB with the collector run at GOGC=5, so the heap
// stays a few percent above the live heap (5% of it, plus what is allocated
// while a cycle marks): an upper bound on the memory f itself keeps live at
// its peak, which is what a process with a memory limit (GOMEMLIMIT) needs
// above its input.
func liveHeapMB(f func()) float64 {
	defer debug.SetGCPercent(debug.SetGCPercent(5))
	return peakHeapMB(f)
}
