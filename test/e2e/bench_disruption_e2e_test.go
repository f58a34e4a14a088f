//go:build unix

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// Karpenter's published thresholds for its kwok scale cases
// (kubernetes-sigs/karpenter test/suites/performance, read 2026-12-04):
// basic_test.go scales 1,000 pods out within 2 minutes and, scaled down to
// 700, consolidates within 20 minutes; drift_performance_test.go deploys 600
// pods within 5 minutes and replaces every drifted node within 50 minutes.
const (
	benchKarpenterConsolidation = 20 * time.Minute
	benchKarpenterDriftDeploy   = 5 * time.Minute
	benchKarpenterDrift         = 50 * time.Minute
)

const (
	benchDisruptionNamespace = "bench-disruption"
	benchDisruptionPool      = "bench-cpu"
	// benchQuiet is how long no disruption command may start, with none in
	// flight, before consolidation counts as settled.
	benchQuiet = 2 * time.Minute
)

// TestBenchE2EDisruption runs Karpenter's kwok scale cases against Stowage
// as its own process with production defaults (a pass every 10 s, the
// default budget of 10% of a pool's nodes, consolidateAfter 0s): 1,000 pods
// (500 of 0.9 CPU / 3100Mi, 500 of 3.5 CPU / 28Gi) scaled down to 700, and
// 600 pods (300 spread one per node by hostname, 300 of 3.5 CPU / 28Gi)
// whose nodes all drift. It reports time and commands beside Karpenter's
// thresholds; like TestBenchE2E it asserts only that the work finishes.
func TestBenchE2EDisruption(t *testing.T) {
	if os.Getenv(benchEnvGate) != "1" {
		t.Skipf("set %s=1 (or run `make bench-e2e`) to run Karpenter's kwok consolidation and drift cases", benchEnvGate)
	}
	binary := benchBuildStowage(t)
	var tables []string
	t.Run("consolidation 1000 to 700 pods", func(t *testing.T) {
		tables = append(tables, benchConsolidation(t, binary))
	})
	t.Run("drift of 600 pods' nodes", func(t *testing.T) {
		tables = append(tables, benchDrift(t, binary))
	})
	if out := os.Getenv(benchEnvOut); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			_, err = f.WriteString("\n" + strings.Join(tables, "\n"))
			err = joinErr(err, f.Close())
		}
		if err != nil {
			t.Errorf("writing %s=%s: %v", benchEnvOut, out, err)
		}
	}
}

// benchDisruptionCluster starts a control plane, the controller and the
// pool of the disruption cases: any non-GPU amd64 type, spot or on-demand,
// with the API server's default disruption settings.
func benchDisruptionCluster(t *testing.T, binary string) (*controlplane.ControlPlane, *benchController) {
	e2eSetLogger(t)
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	ctrl := benchStartController(t, binary, cp.KubeconfigPath)
	holdNamespace(t, cp.Client, benchDisruptionNamespace)
	holdApply(t, cp.Client, `apiVersion: stowage.dev/v1
kind: NodePool
metadata:
  name: `+benchDisruptionPool+`
spec:
  template:
    spec:
      requirements:
      - {key: stowage.dev/gpu-count, operator: DoesNotExist}
      - {key: kubernetes.io/arch, operator: In, values: [amd64]}
      - {key: stowage.dev/capacity-type, operator: In, values: [spot, on-demand]}`)
	return cp, ctrl
}

// benchWorkload is a Deployment of replicas pods of cpu and memory on the
// disruption pool.
func benchWorkload(name string, replicas int32, cpu, memory string) *appsv1.Deployment {
	d := disrDeployment(benchDisruptionNamespace, name, benchDisruptionPool, replicas, "cpu", cpu, "memory", memory)
	d.Spec.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](0)
	return d
}

// benchWaitRunning waits until want pods of the namespace run, and returns how long that took.
func benchWaitRunning(t *testing.T, c client.Client, want int, began time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pods := &corev1.PodList{}
		if err := c.List(context.Background(), pods, client.InNamespace(benchDisruptionNamespace)); err == nil {
			running := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
					running++
				}
			}
			if running == want && len(pods.Items) == want {
				return time.Since(began)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d pods Running after %s", running, want, timeout)
			}
		}
		time.Sleep(time.Second)
	}
}

// benchFleet is the pool's NodeClaims: how many, their names, and what they cost.
func benchFleet(ctx context.Context, c client.Client) (names map[string]bool, deleting int, cost float64, err error) {
	list := &v1.NodeClaimList{}
	if err := c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: benchDisruptionPool}); err != nil {
		return nil, 0, 0, err
	}
	names = map[string]bool{}
	for _, cl := range list.Items {
		if cl.DeletionTimestamp != nil {
			deleting++
			continue
		}
		names[cl.Name] = true
		var p float64
		if _, err := fmt.Sscanf(cl.Status.PricePerHour, "%g", &p); err == nil {
			cost += p
		}
	}
	return names, deleting, cost, nil
}

func benchConsolidation(t *testing.T, binary string) string {
	cp, ctrl := benchDisruptionCluster(t, binary)
	ctx := context.Background()
	small, large := benchWorkload("small", 500, "900m", "3100Mi"), benchWorkload("large", 500, "3500m", "28Gi")
	began := time.Now()
	provCreate(t, cp.Client, small, large)
	scaleOut := benchWaitRunning(t, cp.Client, 1000, began, 15*time.Minute)
	before, _, costBefore, err := benchFleet(ctx, cp.Client)
	if err != nil {
		t.Fatal(err)
	}
	base, err := ctrl.counters(ctx, "stowage_disruption_decisions_total")
	if err != nil {
		t.Fatal(err)
	}

	for _, d := range []*appsv1.Deployment{small, large} {
		patch := client.MergeFrom(d.DeepCopy())
		d.Spec.Replicas = ptr.To[int32](350)
		if err := cp.Client.Patch(ctx, d, patch); err != nil {
			t.Fatal(err)
		}
	}
	scaledDown := time.Now()
	lastChange, lastCount, lastFleet := scaledDown, -1.0, -1
	deadline := scaledDown.Add(30 * time.Minute)
	for {
		time.Sleep(2 * time.Second)
		names, deleting, _, err := benchFleet(ctx, cp.Client)
		if err != nil {
			continue
		}
		counts, err := ctrl.counters(ctx, "stowage_disruption_decisions_total")
		if err != nil {
			continue
		}
		inflight, _ := ctrl.gauge(ctx, "stowage_disruption_commands_in_flight")
		total := sumCounters(counts)
		if total != lastCount || len(names) != lastFleet || deleting > 0 || inflight > 0 {
			lastChange, lastCount, lastFleet = time.Now(), total, len(names)
		}
		if time.Since(lastChange) >= benchQuiet {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("consolidation still busy after %s: %d NodeClaims, %d deleting, %v commands in flight",
				deadline.Sub(scaledDown), len(names), deleting, inflight)
		}
	}
	took := lastChange.Sub(scaledDown)
	benchWaitRunning(t, cp.Client, 700, scaledDown, time.Minute)
	after, _, costAfter, err := benchFleet(ctx, cp.Client)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := ctrl.counters(ctx, "stowage_disruption_decisions_total")
	if err != nil {
		t.Fatal(err)
	}
	commands := diffCounters(counts, base)
	mem, _ := benchReadMem(ctrl.pid())
	rows := [][]string{
		{"measure", "value", "vs Karpenter kwok threshold"},
		{"scale-out of 1000 pods", scaleOut.Round(time.Second).String(), ratioOf(scaleOut, benchKarpenterScaleOut)},
		{"NodeClaims at 1000 pods / after 700", fmt.Sprintf("%d / %d", len(before), len(after)), ""},
		{"cost at 1000 pods / after", fmt.Sprintf("$%.2f/h / $%.2f/h", costBefore, costAfter), ""},
		{"consolidation to settled", took.Round(time.Second).String(), ratioOf(took, benchKarpenterConsolidation)},
		{"commands (reason/action)", describeCounters(commands), ""},
		{"controller peak RSS (VmHWM)", benchMB(mem.HWM), fmt.Sprintf("%.2fx of 260 MB", float64(mem.HWM)/benchKarpenterMemory)},
	}
	table := "consolidation: 1000 pods scaled down to 700 (" + benchDisruptionPool + ", production defaults):\n" + benchTable(rows)
	t.Logf("%s", table)
	return table
}

func benchDrift(t *testing.T, binary string) string {
	cp, ctrl := benchDisruptionCluster(t, binary)
	ctx := context.Background()
	spread := benchWorkload("spread", 300, "900m", "3100Mi")
	spread.Spec.Template.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{
		MaxSkew: 1, TopologyKey: corev1.LabelHostname, WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "spread"}},
	}}
	standard := benchWorkload("standard", 300, "3500m", "28Gi")
	began := time.Now()
	provCreate(t, cp.Client, spread, standard)
	deploy := benchWaitRunning(t, cp.Client, 600, began, 20*time.Minute)
	old, _, _, err := benchFleet(ctx, cp.Client)
	if err != nil {
		t.Fatal(err)
	}
	base, err := ctrl.counters(ctx, "stowage_disruption_decisions_total")
	if err != nil {
		t.Fatal(err)
	}

	// Drift: the pool's template gains a label its nodes do not have.
	pool := &v1.NodePool{}
	if err := cp.Client.Get(ctx, client.ObjectKey{Name: benchDisruptionPool}, pool); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(pool.DeepCopy())
	pool.Spec.Template.ObjectMeta.Labels = map[string]string{"drift-trigger": "1"}
	if err := cp.Client.Patch(ctx, pool, patch); err != nil {
		t.Fatal(err)
	}
	drifted := time.Now()
	deadline := drifted.Add(60 * time.Minute)
	most := 0
	for {
		time.Sleep(2 * time.Second)
		names, deleting, _, err := benchFleet(ctx, cp.Client)
		if err != nil {
			continue
		}
		left := 0
		for n := range names {
			if old[n] {
				left++
			}
		}
		most = max(most, deleting)
		pods := &corev1.PodList{}
		if err := cp.Client.List(ctx, pods, client.InNamespace(benchDisruptionNamespace)); err != nil {
			continue
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				running++
			}
		}
		if left == 0 && deleting == 0 && running == 600 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d drifted NodeClaims left after %s (%d deleting, %d pods Running)", left, len(old), deadline.Sub(drifted), deleting, running)
		}
	}
	took := time.Since(drifted)
	after, _, _, err := benchFleet(ctx, cp.Client)
	if err != nil {
		t.Fatal(err)
	}
	counts, err := ctrl.counters(ctx, "stowage_disruption_decisions_total")
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := benchReadMem(ctrl.pid())
	rows := [][]string{
		{"measure", "value", "vs Karpenter kwok threshold"},
		{"deploy 600 pods", deploy.Round(time.Second).String(), ratioOf(deploy, benchKarpenterDriftDeploy)},
		{"drifted NodeClaims / after", fmt.Sprintf("%d / %d", len(old), len(after)), ""},
		{"drift to all replaced, 600 pods Running", took.Round(time.Second).String(), ratioOf(took, benchKarpenterDrift)},
		{"most NodeClaims deleting at once", fmt.Sprintf("%d (budget 10%%)", most), ""},
		{"commands (reason/action)", describeCounters(diffCounters(counts, base)), ""},
		{"controller peak RSS (VmHWM)", benchMB(mem.HWM), fmt.Sprintf("%.2fx of 260 MB", float64(mem.HWM)/benchKarpenterMemory)},
	}
	table := "drift: every node of 600 pods (300 spread by hostname) drifts (" + benchDisruptionPool + ", production defaults):\n" + benchTable(rows)
	t.Logf("%s", table)
	return table
}

func ratioOf(got, ref time.Duration) string {
	return fmt.Sprintf("%.2fx of %s", got.Seconds()/ref.Seconds(), ref)
}

func benchTable(rows [][]string) string {
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(w, strings.Join(r, "\t")+"\t")
	}
	_ = w.Flush()
	var out strings.Builder
	for _, line := range strings.SplitAfter(b.String(), "\n") {
		if line != "" {
			out.WriteString(strings.TrimRight(line, " \n") + "\n")
		}
	}
	return out.String()
}

// counters scrapes a counter's series from /metrics, by their labels
// ("reason=Empty,action=delete").
func (c *benchController) counters(ctx context.Context, name string) (map[string]float64, error) {
	mf, err := c.family(ctx, name)
	if err != nil || mf == nil {
		return map[string]float64{}, err
	}
	out := map[string]float64{}
	for _, m := range mf.GetMetric() {
		var labels []string
		for _, l := range m.GetLabel() {
			labels = append(labels, l.GetName()+"="+l.GetValue())
		}
		sort.Strings(labels)
		out[strings.Join(labels, ",")] = m.GetCounter().GetValue()
	}
	return out, nil
}

// gauge scrapes an unlabelled gauge; 0 when not exposed.
func (c *benchController) gauge(ctx context.Context, name string) (float64, error) {
	mf, err := c.family(ctx, name)
	if err != nil || mf == nil || len(mf.GetMetric()) == 0 {
		return 0, err
	}
	return mf.GetMetric()[0].GetGauge().GetValue(), nil
}

// family scrapes one metric family, nil when it is not exposed (yet).
func (c *benchController) family(ctx context.Context, name string) (*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", c.metricsURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", c.metricsURL, err)
	}
	return families[name], nil
}

func sumCounters(m map[string]float64) float64 {
	var s float64
	for _, v := range m {
		s += v
	}
	return s
}

func diffCounters(now, base map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range now {
		if d := v - base[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

func describeCounters(m map[string]float64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %.0f", k, m[k]))
	}
	return strings.Join(parts, "; ")
}
