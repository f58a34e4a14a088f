package e2e

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// These cover the benchmark's arithmetic; they run without a control plane.

const benchExposition = `# HELP stowage_scheduling_decision_duration_seconds Time from a pod first seen unschedulable to its NodeClaim being created.
# TYPE stowage_scheduling_decision_duration_seconds histogram
stowage_scheduling_decision_duration_seconds_bucket{le="0.02"} 0
stowage_scheduling_decision_duration_seconds_bucket{le="0.01"} 0
stowage_scheduling_decision_duration_seconds_bucket{le="0.04"} 50
stowage_scheduling_decision_duration_seconds_bucket{le="0.08"} 90
stowage_scheduling_decision_duration_seconds_bucket{le="0.16"} 100
stowage_scheduling_decision_duration_seconds_bucket{le="+Inf"} 100
stowage_scheduling_decision_duration_seconds_sum 4.5
stowage_scheduling_decision_duration_seconds_count 100
# HELP stowage_pods_pending Pending pods.
# TYPE stowage_pods_pending gauge
stowage_pods_pending 3
# HELP stowage_nodeclaims_created_total NodeClaims created.
# TYPE stowage_nodeclaims_created_total counter
stowage_nodeclaims_created_total{nodepool="a"} 1
stowage_nodeclaims_created_total{nodepool="b"} 2
`

func TestBenchParseHistogram(t *testing.T) {
	tests := []struct {
		name    string
		metric  string
		want    benchHistogram
		wantErr string
	}{{
		name:   "buckets sorted, +Inf dropped",
		metric: "stowage_scheduling_decision_duration_seconds",
		want: benchHistogram{Count: 100, Sum: 4.5, Buckets: []benchBucket{
			{0.01, 0}, {0.02, 0}, {0.04, 50}, {0.08, 90}, {0.16, 100},
		}},
	}, {
		name:    "missing metric",
		metric:  "stowage_solver_duration_seconds",
		wantErr: "metric stowage_solver_duration_seconds not exposed",
	}, {
		name:    "not a histogram",
		metric:  "stowage_pods_pending",
		wantErr: "metric stowage_pods_pending is a GAUGE, want a histogram",
	}, {
		name:    "several series",
		metric:  "stowage_nodeclaims_created_total",
		wantErr: "is a COUNTER",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := benchParseHistogram(strings.NewReader(benchExposition), tc.metric)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("histogram (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := benchParseHistogram(strings.NewReader("not { valid"), "x"); err == nil {
		t.Error("parsing a malformed exposition succeeded")
	}
}

func TestBenchHistogramQuantile(t *testing.T) {
	h := benchHistogram{Count: 100, Buckets: []benchBucket{
		{0.01, 0}, {0.02, 0}, {0.04, 50}, {0.08, 90}, {0.16, 100},
	}}
	overflow := benchHistogram{Count: 10, Buckets: []benchBucket{{1, 5}, {2, 8}}}
	type result struct{ Estimate, Lower, Upper float64 }
	tests := []struct {
		name    string
		h       benchHistogram
		q       float64
		want    result
		wantErr error
	}{
		{"median at a bucket's top", h, 0.5, result{0.04, 0.02, 0.04}, nil},
		{"interpolated inside a bucket", h, 0.7, result{0.06, 0.04, 0.08}, nil},
		{"p99", h, 0.99, result{0.152, 0.08, 0.16}, nil},
		{"lowest bucket starts at zero", benchHistogram{Count: 4, Buckets: []benchBucket{{0.1, 4}}}, 0.5, result{0.05, 0, 0.1}, nil},
		{"rank in +Inf reports the highest bound", overflow, 0.9, result{2, 2, math.Inf(1)}, nil},
		{"empty", benchHistogram{}, 0.5, result{}, errBenchNoObservations},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, lo, hi, err := tc.h.Quantile(tc.q)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error = %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, result{v, lo, hi}, cmp.Comparer(func(a, b float64) bool {
				return a == b || math.Abs(a-b) < 1e-9
			})); diff != "" {
				t.Errorf("Quantile(%v) (-want +got):\n%s", tc.q, diff)
			}
		})
	}
	if _, _, _, err := h.Quantile(1.5); err == nil {
		t.Error("Quantile(1.5) succeeded")
	}
}

func TestBenchParseProcStatus(t *testing.T) {
	const status = "Name:\tstowage\nVmPeak:\t 1500000 kB\nVmHWM:\t   90000 kB\nVmRSS:\t   80000 kB\nThreads:\t12\n"
	tests := []struct {
		name    string
		in      string
		want    benchProcMem
		wantErr string
	}{
		{"running process", status, benchProcMem{RSS: 80000 * 1024, HWM: 90000 * 1024}, ""},
		{"zombie has no memory fields", "Name:\tstowage\nState:\tZ (zombie)\n", benchProcMem{}, "field VmRSS missing"},
		{"no peak", "VmRSS:\t 1 kB\n", benchProcMem{}, "field VmHWM missing"},
		{"unexpected unit", "VmRSS:\t 1 MB\nVmHWM:\t 1 kB\n", benchProcMem{}, `field VmRSS: value "1 MB"`},
		{"not a number", "VmRSS:\t x kB\nVmHWM:\t 1 kB\n", benchProcMem{}, "field VmRSS: strconv.ParseUint"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := benchParseProcStatus(strings.NewReader(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("memory (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBenchPercentile(t *testing.T) {
	samples := []uint64{50, 10, 40, 20, 30, 60, 70, 80, 90, 100}
	tests := []struct {
		q    float64
		want uint64
	}{{0.5, 50}, {0.95, 100}, {0.9, 90}, {0.01, 10}, {1, 100}}
	for _, tc := range tests {
		if got := benchPercentile(samples, tc.q); got != tc.want {
			t.Errorf("benchPercentile(q=%v) = %d, want %d", tc.q, got, tc.want)
		}
	}
	if samples[0] != 50 {
		t.Errorf("benchPercentile reordered its input: %v", samples)
	}
	if got := benchPercentile([]time.Duration(nil), 0.5); got != 0 {
		t.Errorf("benchPercentile(nil) = %v, want 0", got)
	}
}

// benchSampleResult is a run over both targets on decisions and final memory.
func benchSampleResult() benchResult {
	return benchResult{
		Pods: 1000, CPUPods: 800, GPUPods: 200,
		AllRunning:    90 * time.Second,
		PodRunningP50: 40 * time.Second, PodRunningP99: 85 * time.Second,
		NodeClaims: 60, Nodes: 59,
		InstanceTypes: map[string]int{"m7i.48xlarge": 5, "g5.48xlarge": 25, "c7i.48xlarge": 5},
		CostPerHour:   123.456,
		GPU:           benchGPUUse{GPUNodes: 30, GPUNodesWithoutGPUPod: 4, CPUPodsOnGPUNodes: 9},
		Decision: benchHistogram{Count: 1000, Buckets: []benchBucket{
			{0.32, 0}, {0.64, 500}, {1.28, 1000},
		}},
		Solver:  benchHistogram{Count: 3, Buckets: []benchBucket{{0.1, 1}}},
		PeakRSS: 130e6, RSSP95: 120e6, FinalRSS: 210e6, RSSSamples: 90,
		Throttling: benchThrottling{Waits: 12, Longest: 34404 * time.Millisecond},
	}
}

func TestBenchResultRows(t *testing.T) {
	want := [][]string{
		{"measure", "value", "vs Karpenter kwok threshold", "vs Stowage target"},
		{"pods", "1000 (800 CPU, 200 GPU)", "", ""},
		{"wall time to all Running", "1m30s", "0.75x of 2m0s", ""},
		{"pod Running p50 / p99", "40s / 1m25s", "", ""},
		{"NodeClaims / Nodes", "60 / 59", "", ""},
		{"cost of the nodes", "$123.46/h", "", ""},
		{"GPU nodes / without a GPU pod", "30 / 4 (9 CPU pods on GPU nodes)", "", ""},
		{"decisions observed", "1000 for 1000 pods", "", ""},
		{"decision p50", "0.640 s (bucket 0.32-0.64 s)", "", ""},
		// Interpolated to 1.267 s: over the 1 s target.
		{"decision p99", "1.267 s (bucket 0.64-1.28 s)", "", "missed (< 1s)"},
		{"solver p50 per batch", "> 0.10 s (above the highest bucket)", "", ""},
		{"solver p99 per batch", "> 0.10 s (above the highest bucket)", "", ""},
		{"controller RSS p95", "120.0 MB (90 samples)", "0.46x of 260 MB", ""},
		{"controller peak RSS (VmHWM)", "130.0 MB", "0.50x of 260 MB", "met (< 200 MB)"},
		{"controller final RSS", "210.0 MB", "", "missed (< 200 MB)"},
		{"client-side throttling (logged waits)", "12, longest 34.4s", "", ""},
	}
	if diff := cmp.Diff(want, benchSampleResult().Rows()); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}

	// The decision p99 row when the estimate is not a point.
	p99Rows := []struct {
		name     string
		decision benchHistogram
		want     []string
	}{
		{"no observations", benchHistogram{},
			[]string{"decision p99", "n/a (histogram has no observations)", "", "n/a"}},
		{"above the highest bucket, which is under the target", benchHistogram{Count: 10, Buckets: []benchBucket{{0.5, 5}}},
			[]string{"decision p99", "> 0.50 s (above the highest bucket)", "", "n/a"}},
		{"above the highest bucket, which is over the target", benchHistogram{Count: 10, Buckets: []benchBucket{{81.92, 5}}},
			[]string{"decision p99", "> 81.92 s (above the highest bucket)", "", "missed (< 1s)"}},
	}
	for _, tc := range p99Rows {
		if diff := cmp.Diff(tc.want, benchResult{Decision: tc.decision}.Rows()[9]); diff != "" {
			t.Errorf("%s: decision p99 row (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestBenchResultRender(t *testing.T) {
	r := benchSampleResult()
	rows := r.Rows()
	got := r.Render()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != len(rows)+1 {
		t.Fatalf("rendered %d lines, want %d:\n%s", len(lines), len(rows)+1, got)
	}
	// Every cell starts in its header's column, and no line ends in spaces.
	for i, row := range rows {
		for j, cell := range row {
			if cell == "" {
				continue
			}
			want := strings.Index(lines[0], rows[0][j])
			if at := strings.Index(lines[i], cell); at != want {
				t.Errorf("line %d: cell %q at byte %d, want %d (under %q):\n%s", i, cell, at, want, rows[0][j], got)
			}
		}
		if strings.HasSuffix(lines[i], " ") {
			t.Errorf("line %d %q ends in spaces", i, lines[i])
		}
	}
	if diff := cmp.Diff("instance types: g5.48xlarge x25, c7i.48xlarge x5, m7i.48xlarge x5", lines[len(lines)-1]); diff != "" {
		t.Errorf("instance types line (-want +got):\n%s", diff)
	}
}

func TestBenchParseThrottling(t *testing.T) {
	const log = `{"level":"info","ts":1,"logger":"events","msg":"Waited before sending request","delay":1.001443278,"reason":"client-side throttling, not priority and fairness","verb":"POST"}
not json, Waited before sending request
{"level":"info","ts":2,"msg":"created nodeclaim","note":"Waited before sending request"}
{"level":"info","ts":3,"msg":"Waited before sending request","delay":34.404449504}
{"level":"info","ts":4,"msg":"Waited before sending request","delay":11.1}
`
	got, err := benchParseThrottling(strings.NewReader(log))
	if err != nil {
		t.Fatal(err)
	}
	want := benchThrottling{Waits: 3, Longest: 34404449504 * time.Nanosecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("throttling (-want +got):\n%s", diff)
	}
}

func TestBenchGPUPlacement(t *testing.T) {
	node := func(name, gpus string) corev1.Node {
		n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")}
		if gpus != "" {
			n.Status.Allocatable[v1.ResourceNvidiaGPU] = resource.MustParse(gpus)
		}
		return n
	}
	pod := func(node string, gpu bool) corev1.Pod {
		req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
		if gpu {
			req[v1.ResourceNvidiaGPU] = resource.MustParse("1")
		}
		return corev1.Pod{Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{
			Resources: corev1.ResourceRequirements{Requests: req},
		}}}}
	}
	nodes := []corev1.Node{node("cpu-a", ""), node("gpu-zero", "0"), node("gpu-a", "1"), node("gpu-b", "1"), node("gpu-c", "4")}
	pods := []corev1.Pod{
		pod("cpu-a", false), pod("gpu-zero", false),
		pod("gpu-a", true), pod("gpu-a", false),
		pod("gpu-b", false), pod("gpu-b", false),
		pod("gpu-c", true), pod("gpu-c", true),
		pod("", true), // pending
	}
	want := benchGPUUse{GPUNodes: 3, GPUNodesWithoutGPUPod: 1, CPUPodsOnGPUNodes: 3}
	if diff := cmp.Diff(want, benchGPUPlacement(nodes, pods)); diff != "" {
		t.Errorf("GPU use (-want +got):\n%s", diff)
	}
}
