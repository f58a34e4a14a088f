package solver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// syntheticCatalog builds n instance types shaped like an AWS region's:
// families with different memory-per-CPU ratios and sizes from 2 to 192 CPU,
// some GPU families, offered in zones × {spot, on-demand}, priced roughly
// linearly in size with per-family and per-zone spot noise. Deterministic.
func syntheticCatalog(n int, zones []string) []*cloudprovider.InstanceType {
	r := rand.New(rand.NewPCG(1, 2))
	sizes := []int64{2, 4, 8, 16, 32, 48, 64, 96, 128, 192}
	ratios := []int64{2, 4, 8, 16}
	var out []*cloudprovider.InstanceType
	for fam := 0; len(out) < n; fam++ {
		ratio := ratios[fam%len(ratios)]
		perCPU := 0.012 + 0.004*float64(ratio) + 0.01*r.Float64()
		gpu := fam%9 == 8
		for _, cpu := range sizes {
			if len(out) == n {
				break
			}
			s := itSpec{name: fmt.Sprintf("f%d.%dx", fam, cpu), cpu: cpu, memGi: cpu * ratio, price: perCPU * float64(cpu), zones: zones, noSpot: true}
			if gpu {
				s.gpus, s.gpuName = max(cpu/24, 1), "a10g"
				s.price += 1.0 * float64(s.gpus)
			}
			it := makeIT(s)
			for _, z := range zones {
				it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot,
					PricePerHour: s.price * (0.3 + 0.4*r.Float64()), Available: r.Float64() > 0.1})
			}
			out = append(out, it)
		}
	}
	return out
}

var benchZones = []string{"us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"}

// diversePods is Karpenter's "diverse" benchmark mix: one fifth each of no
// constraints, zone spread, hostname spread, zone self-affinity and hostname
// anti-affinity, with a few request sizes.
func diversePods(n int) []*corev1.Pod {
	r := rand.New(rand.NewPCG(3, 4))
	cpus := []string{"250m", "500m", "1", "2", "4"}
	mems := []string{"512Mi", "1Gi", "2Gi", "4Gi", "8Gi"}
	out := make([]*corev1.Pod, 0, n)
	for i := range n {
		kind := i % 5
		size := r.IntN(len(cpus))
		app := fmt.Sprintf("app-%d-%d", kind, size)
		sel := map[string]string{"app": app}
		opts := []podOpt{label("app", app)}
		switch kind {
		case 1:
			opts = append(opts, spread(v1.LabelZone, 1, true, sel))
		case 2:
			opts = append(opts, spread(v1.LabelHostname, 1, true, sel))
		case 3:
			opts = append(opts, podAffinity(v1.LabelZone, sel))
		case 4:
			opts = append(opts, podAntiAffinity(v1.LabelHostname, sel))
		}
		out = append(out, makePod(fmt.Sprintf("p-%06d", i), cpus[size], mems[size], opts...))
	}
	return out
}

func benchSolve(b *testing.B, pods int) {
	snap := &Snapshot{Pods: diversePods(pods), NodePools: []*NodePool{makePool("default", syntheticCatalog(1000, benchZones))}}
	ctx := context.Background()
	ffd, err := Solve(ctx, snap, WithStrategy(StrategyFFD))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var plan *Plan
	for b.Loop() {
		if plan, err = Solve(ctx, snap); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(plan.Unschedulable) > 0 {
		b.Fatalf("%d unschedulable, first: %s", len(plan.Unschedulable), plan.Unschedulable[0].Reason)
	}
	reportPlan(b, pods, plan, ffd)
}

func BenchmarkSolveDiverse10k(b *testing.B)  { benchSolve(b, 10_000) }
func BenchmarkSolveDiverse100k(b *testing.B) { benchSolve(b, 100_000) }

// BenchmarkSolveUniform10k is the case where the bound is tight: identical
// unconstrained pods.
func BenchmarkSolveUniform10k(b *testing.B) {
	snap := &Snapshot{Pods: makePods(10_000, "u", "1", "2Gi"), NodePools: []*NodePool{makePool("default", syntheticCatalog(1000, benchZones))}}
	ctx := context.Background()
	ffd, err := Solve(ctx, snap, WithStrategy(StrategyFFD))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var plan *Plan
	for b.Loop() {
		if plan, err = Solve(ctx, snap); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportPlan(b, 10_000, plan, ffd)
}

// BenchmarkSolveMixed10k: unconstrained pods of five sizes, where the
// fractional bound is nearly achievable.
func BenchmarkSolveMixed10k(b *testing.B) {
	cpus := []string{"250m", "500m", "1", "2", "4"}
	mems := []string{"512Mi", "1Gi", "2Gi", "4Gi", "8Gi"}
	var pods []*corev1.Pod
	for i := range 10_000 {
		pods = append(pods, makePod(fmt.Sprintf("m-%05d", i), cpus[i%5], mems[(i/5)%5]))
	}
	snap := &Snapshot{Pods: pods, NodePools: []*NodePool{makePool("default", syntheticCatalog(1000, benchZones))}}
	ctx := context.Background()
	ffd, err := Solve(ctx, snap, WithStrategy(StrategyFFD))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var plan *Plan
	for b.Loop() {
		if plan, err = Solve(ctx, snap); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reportPlan(b, len(pods), plan, ffd)
}

func reportPlan(b *testing.B, pods int, plan, ffd *Plan) {
	b.ReportMetric(float64(pods)*float64(b.N)/b.Elapsed().Seconds(), "pods/s")
	b.ReportMetric(plan.CostPerHour, "$/h")
	b.ReportMetric(plan.LowerBoundPerHour, "lb$/h")
	b.ReportMetric(100*(plan.CostPerHour-plan.LowerBoundPerHour)/plan.LowerBoundPerHour, "gap%")
	b.ReportMetric(ffd.CostPerHour, "ffd$/h")
	b.ReportMetric(float64(len(plan.NewNodes)), "nodes")
}

// BenchmarkSolveDiverse10kAWS is the diverse mix against the built-in AWS
// us-east-1 catalog (1,235 types), where type sizes and prices are uneven.
func BenchmarkSolveDiverse10kAWS(b *testing.B) {
	cat, err := pricing.Load("aws/us-east-1")
	if err != nil {
		b.Fatal(err)
	}
	snap := &Snapshot{Pods: diversePods(10_000), NodePools: []*NodePool{makePool("default", cat.InstanceTypes)}}
	ctx := context.Background()
	ffd, err := Solve(ctx, snap, WithStrategy(StrategyFFD))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var plan *Plan
	for b.Loop() {
		if plan, err = Solve(ctx, snap); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if len(plan.Unschedulable) > 0 {
		b.Fatalf("%d unschedulable, first: %s", len(plan.Unschedulable), plan.Unschedulable[0].Reason)
	}
	reportPlan(b, 10_000, plan, ffd)
}

// BenchmarkSolveTolerations: pods with thousands of tolerations must cost
// time linear in the tolerations (shape keys, taint checks), so ns/op grows
// about tenfold from 1k to 10k (issue 10: it was quadratic).
func BenchmarkSolveTolerations(b *testing.B) {
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("10pods-%dtolerations", n), func(b *testing.B) {
			pods := makePods(10, "t", "1", "1Gi")
			for _, p := range pods {
				for j := range n {
					tolerate(fmt.Sprintf("k-%d", j))(p)
				}
			}
			snap := &Snapshot{Pods: pods, NodePools: []*NodePool{makePool("default", gpuCatalog(), withTaint("k-7"))}}
			for b.Loop() {
				if _, err := Solve(context.Background(), snap); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
