package metrics

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestName(t *testing.T) {
	if got, want := Name(CostSubsystem, "per_hour"), "stowage_cost_per_hour"; got != want {
		t.Errorf("Name() = %q, want %q", got, want)
	}
}

func TestRegisterToleratesDuplicates(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	g := NewCostGauges()
	if err := Register(reg, g.Collectors()...); err != nil {
		t.Fatalf("first Register: %v", err)
	}
	// A second manager in the same process registers the same collectors again.
	if err := Register(reg, g.Collectors()...); err != nil {
		t.Fatalf("second Register: %v", err)
	}
	// A different collector under a taken name is a real conflict.
	clash := prometheus.NewGauge(prometheus.GaugeOpts{Name: "stowage_cost_per_hour", Help: "other"})
	err := Register(reg, clash)
	if err == nil || !strings.Contains(err.Error(), "registering metric collector") {
		t.Fatalf("Register(clash) = %v, want a wrapped registration error", err)
	}
}

func TestCostGaugeNamesAndReset(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	g := NewCostGauges()
	if err := Register(reg, g.Collectors()...); err != nil {
		t.Fatal(err)
	}
	g.PerHour.WithLabelValues("gpu", "spot").Set(1)
	g.OnDemandEquivalentPerHour.WithLabelValues("gpu").Set(2)
	g.IdleGPUPerHour.WithLabelValues("gpu").Set(0.5)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	want := []string{"stowage_cost_idle_gpu_per_hour", "stowage_cost_on_demand_equivalent_per_hour", "stowage_cost_per_hour"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("metric names (-want +got):\n%s", diff)
	}
	g.Reset()
	families, err = reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(families) != 0 {
		t.Errorf("after Reset, %d metric families remain", len(families))
	}
}
