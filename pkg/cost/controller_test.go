package cost

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/metrics"
)

func newFakeClient(t *testing.T, s State) client.Client {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	b := fake.NewClientBuilder().WithScheme(scheme)
	for i := range s.NodeClaims {
		b = b.WithObjects(&s.NodeClaims[i])
	}
	for i := range s.Nodes {
		b = b.WithObjects(&s.Nodes[i])
	}
	for i := range s.Pods {
		b = b.WithObjects(&s.Pods[i])
	}
	return b.Build()
}

// series gathers the gauges into "name{label=value,...} value" lines, sorted.
func series(t *testing.T, g *metrics.CostGauges) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := metrics.Register(reg, g.Collectors()...); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			lines = append(lines, fmt.Sprintf("%s{%s} %.6g", f.GetName(), strings.Join(labels, ","), m.GetGauge().GetValue()))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

func TestControllerExportsAndForgetsSeries(t *testing.T) {
	ctx := context.Background()
	s := cluster()
	kube := newFakeClient(t, s)
	gauges := metrics.NewCostGauges()
	c := NewController(Deps{
		Client: kube,
		Clock:  clocktesting.NewFakeClock(time.Unix(0, 0)),
		Gauges: gauges,
		Pricer: fakePricer{"m.xlarge": 0.19},
		Model:  testModel,
	})
	if err := c.Reconcile(ctx); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	want := strings.Join([]string{
		`stowage_cost_idle_gpu_per_hour{nodepool=general} 0`,
		`stowage_cost_idle_gpu_per_hour{nodepool=gpu} 2.34`,
		`stowage_cost_on_demand_equivalent_per_hour{nodepool=general} 0.39`,
		`stowage_cost_on_demand_equivalent_per_hour{nodepool=gpu} 10`,
		`stowage_cost_per_hour{capacity_type=on-demand,nodepool=general} 0.2`,
		`stowage_cost_per_hour{capacity_type=on-demand,nodepool=gpu} 10`,
		`stowage_cost_per_hour{capacity_type=spot,nodepool=general} 0.12`,
	}, "\n")
	if diff := cmp.Diff(want, series(t, gauges)); diff != "" {
		t.Fatalf("after the first pass (-want +got):\n%s", diff)
	}

	// The GPU machine goes away: its pool's series must go, not stay at $10.
	gpuClaim := &s.NodeClaims[0]
	if err := kube.Delete(ctx, gpuClaim); err != nil {
		t.Fatal(err)
	}
	if err := c.Reconcile(ctx); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	want = strings.Join([]string{
		`stowage_cost_idle_gpu_per_hour{nodepool=general} 0`,
		`stowage_cost_on_demand_equivalent_per_hour{nodepool=general} 0.39`,
		`stowage_cost_per_hour{capacity_type=on-demand,nodepool=general} 0.2`,
		`stowage_cost_per_hour{capacity_type=spot,nodepool=general} 0.12`,
	}, "\n")
	if diff := cmp.Diff(want, series(t, gauges)); diff != "" {
		t.Fatalf("after the gpu machine left (-want +got):\n%s", diff)
	}
}

func TestControllerRunsOnEveryTick(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := newFakeClient(t, State{})
	clk := clocktesting.NewFakeClock(time.Unix(0, 0))
	gauges := metrics.NewCostGauges()
	c := NewController(Deps{Client: kube, Clock: clk, Gauges: gauges, Interval: time.Minute})
	done := make(chan error)
	go func() { done <- c.run(ctx) }()

	// The first pass runs at start; add a machine and tick once to see it.
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	s := cluster()
	if err := kube.Create(ctx, &s.NodeClaims[2]); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Minute)
	// Wait for the second pass: the ticker has fired once nobody waits on it.
	want := "stowage_cost_idle_gpu_per_hour{nodepool=general} 0\n" +
		"stowage_cost_on_demand_equivalent_per_hour{nodepool=general} 0.2\n" +
		"stowage_cost_per_hour{capacity_type=on-demand,nodepool=general} 0.2"
	for series(t, gauges) != want {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run returned %v", err)
	}
}
