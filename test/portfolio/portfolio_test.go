package portfolio

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stowage-k8s/stowage/pricing"
)

// The seed article's monthly table: the same portfolio provisioned statically
// and with an autoscaler.
const (
	articleStatic    = 30240.0
	articleAutoscale = 11508.0
)

const step = 15 * time.Minute

type outcome struct {
	static       map[string]float64
	staticMonth  float64
	stowageMonth float64
	replay       *Replay
}

func run(t testing.TB) outcome {
	t.Helper()
	cat, err := pricing.Load("aws/us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pc := PoolCatalog{Catalog: cat}
	static, err := StaticPerHour(ctx, pc, Seeds())
	if err != nil {
		t.Fatal(err)
	}
	var perHour float64
	for _, v := range static {
		perHour += v
	}
	replay, err := RunDay(ctx, pc, Seeds(), step)
	if err != nil {
		t.Fatal(err)
	}
	return outcome{static: static, staticMonth: perHour * 24 * DaysPerMonth,
		stowageMonth: replay.PerDay * DaysPerMonth, replay: replay}
}

// report writes the comparison table.
func (o outcome) report() string {
	var b strings.Builder
	names := make([]string, 0, len(o.static))
	for n := range o.static {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(&b, "static provisioning (peak of each workload, on-demand, 24/7):\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-14s $%9.3f/h  $%10.0f/month\n", n, o.static[n], o.static[n]*24*DaysPerMonth)
	}
	fmt.Fprintf(&b, "stowage fleet by hour (nodes, spot nodes, $/h, nodes disrupted):\n")
	for _, s := range o.replay.Steps {
		if s.Offset%time.Hour == 0 {
			fmt.Fprintf(&b, "  %02d:00  %3d nodes  %3d spot  $%8.3f/h  %d\n", int(s.Offset.Hours()), s.Nodes, s.Spot, s.PerHour, s.Disruptions)
		}
	}
	fmt.Fprintf(&b, "disruption commands: %v; machines launched: %d\n", o.replay.Commands, o.replay.Launched)
	saved := 1 - o.stowageMonth/o.staticMonth
	fmt.Fprintf(&b, "%-22s %14s %14s %8s\n", "", "static/month", "stowage/month", "saved")
	fmt.Fprintf(&b, "%-22s %14.0f %14.0f %7.1f%%\n", "this replay (AWS)", o.staticMonth, o.stowageMonth, 100*saved)
	fmt.Fprintf(&b, "%-22s %14.0f %14.0f %7.1f%%\n", "seed article", articleStatic, articleAutoscale, 100*(1-articleAutoscale/articleStatic))
	return b.String()
}

// TestDay checks the replay's invariants: everything runs, Stowage costs
// less than static provisioning, batch runs on spot while it runs, and the
// fleet shrinks back to the inference endpoints when nothing else runs.
func TestDay(t *testing.T) {
	o := run(t)
	t.Log("\n" + o.report())
	if o.stowageMonth >= o.staticMonth {
		t.Errorf("stowage $%.0f/month is not below static $%.0f/month", o.stowageMonth, o.staticMonth)
	}
	byHour := map[int]Step{}
	for _, s := range o.replay.Steps {
		byHour[int(s.Offset/time.Minute)] = s
	}
	if s := byHour[10*60]; s.Spot == 0 {
		t.Errorf("at 10:00 batch runs but no node is spot: %+v", s)
	}
	// Only inference runs at 07:00 and 20:00: the fleet must be the same size.
	if a, b := byHour[7*60], byHour[20*60]; a.Nodes != b.Nodes || a.Spot != 0 || b.Spot != 0 {
		t.Errorf("inference-only fleet differs: 07:00 %+v, 20:00 %+v", a, b)
	}
	if o.replay.Commands["emptiness/delete"] == 0 {
		t.Errorf("no empty node was removed: %v", o.replay.Commands)
	}
}

// BenchmarkDay is `make bench-disruption`: the replay with its report.
func BenchmarkDay(b *testing.B) {
	var o outcome
	for b.Loop() {
		o = run(b)
	}
	b.ReportMetric(o.staticMonth, "static-$/month")
	b.ReportMetric(o.stowageMonth, "stowage-$/month")
	b.ReportMetric(o.stowageMonth/o.staticMonth, "stowage/static")
	b.Log("\n" + o.report())
}
