package helm

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// documentedMetric is one row of a metrics table in docs/metrics.md.
type documentedMetric struct {
	Name   string
	Type   string // counter, gauge or histogram
	Labels []string
	Line   int
}

// parseMetricsDoc reads the metric tables of docs/metrics.md: every table
// row whose first cell is a backquoted stowage_* name. file names the
// document in errors.
func parseMetricsDoc(r io.Reader, file string) ([]documentedMetric, error) {
	var out []documentedMetric
	seen := map[string]int{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "| `stowage_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) < 3 {
			return nil, fmt.Errorf("%s:%d: metric row has %d cells, want name | type | labels | meaning", file, n, len(cells))
		}
		m := documentedMetric{
			Name: strings.Trim(strings.TrimSpace(cells[0]), "`"),
			Type: strings.TrimSpace(cells[1]),
			Line: n,
		}
		if !model.LegacyValidation.IsValidMetricName(m.Name) {
			return nil, fmt.Errorf("%s:%d: %q is not a valid metric name", file, n, m.Name)
		}
		switch m.Type {
		case "counter", "gauge", "histogram":
		default:
			return nil, fmt.Errorf("%s:%d: %s: type %q, want counter, gauge or histogram", file, n, m.Name, m.Type)
		}
		for _, l := range strings.Split(cells[2], ",") {
			if l = strings.Trim(strings.TrimSpace(l), "`"); l != "" {
				m.Labels = append(m.Labels, l)
			}
		}
		slices.Sort(m.Labels)
		if prev, ok := seen[m.Name]; ok {
			return nil, fmt.Errorf("%s:%d: %s is documented twice (first on line %d)", file, n, m.Name, prev)
		}
		seen[m.Name] = n
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no metric table rows (| `stowage_...` |) found", file)
	}
	return out, nil
}

// runtimeMetricsMarker starts the paragraph of docs/metrics.md that lists
// the controller-runtime metrics served besides Stowage's own.
const runtimeMetricsMarker = "controller-runtime's own metrics"

// parseRuntimeMetrics returns the backquoted names in the paragraph that
// starts with runtimeMetricsMarker; a name ending in * is a prefix.
func parseRuntimeMetrics(r io.Reader, file string) ([]string, error) {
	var out []string
	in := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.Contains(line, runtimeMetricsMarker) {
			in = true
		}
		if !in {
			continue
		}
		if line == "" {
			break
		}
		parts := strings.Split(line, "`")
		for i := 1; i < len(parts); i += 2 {
			out = append(out, parts[i])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", file, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no paragraph with %q naming metrics in backquotes", file, runtimeMetricsMarker)
	}
	return out, nil
}

// servedName reports whether families has name, or a name starting with
// the prefix when name ends in *.
func servedName(families map[string]*dto.MetricFamily, name string) bool {
	prefix, isPrefix := strings.CutSuffix(name, "*")
	if !isPrefix {
		_, ok := families[name]
		return ok
	}
	for n := range families {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// metricsDocPath is docs/metrics.md relative to the module root.
const metricsDocPath = "docs/metrics.md"

// loadMetricsDoc parses docs/metrics.md: the stowage_* metric tables and
// the controller-runtime metrics it says are served too.
func loadMetricsDoc(t *testing.T) ([]documentedMetric, []string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), metricsDocPath))
	if err != nil {
		t.Fatal(err)
	}
	docs, err := parseMetricsDoc(bytes.NewReader(data), metricsDocPath)
	if err != nil {
		t.Fatal(err)
	}
	runtime, err := parseRuntimeMetrics(bytes.NewReader(data), metricsDocPath)
	if err != nil {
		t.Fatal(err)
	}
	return docs, runtime
}

// phase is the point of the e2e scenario after which a documented metric
// must be served.
type phase int

const (
	// afterProvisioning: a pending GPU pod got a new node and runs on it.
	afterProvisioning phase = iota + 1
	// afterTermination: that node's NodeClaim was deleted and drained.
	afterTermination
	// untilEvent: served only once an event this scenario does not cause
	// happens (the reason says which). When served anyway, type and labels
	// are still checked against the docs.
	untilEvent
)

// metricExpectation says when the e2e scenario must see a documented metric.
// Every name in docs/metrics.md needs an entry, so a renamed metric or a
// new undocumented expectation fails TestMetricExpectationsCoverDocs.
type metricExpectation struct {
	when   phase
	reason string // for untilEvent: the event
	// perMachine series exist only while their pool has machines: gone
	// again after termination, as docs/metrics.md promises for the cost gauges.
	perMachine bool
}

var metricExpectations = map[string]metricExpectation{
	"stowage_cost_per_hour":                        {when: afterProvisioning, perMachine: true},
	"stowage_cost_on_demand_equivalent_per_hour":   {when: afterProvisioning, perMachine: true},
	"stowage_cost_idle_gpu_per_hour":               {when: afterProvisioning, perMachine: true},
	"stowage_pods_pending":                         {when: afterProvisioning},
	"stowage_scheduling_decision_duration_seconds": {when: afterProvisioning},
	"stowage_solver_duration_seconds":              {when: afterProvisioning},
	"stowage_nodeclaims_created_total":             {when: afterProvisioning},
	// A plain counter: served at zero from the start.
	"stowage_nominations_lapsed_total": {when: afterProvisioning},
	// Set for every pool the validation controller sees, 0 when valid.
	"stowage_nodepool_invalid":                         {when: afterProvisioning},
	"stowage_nodeclaims_launched_total":                {when: afterProvisioning},
	"stowage_nodeclaims_registered_total":              {when: afterProvisioning},
	"stowage_nodeclaims_initialized_total":             {when: afterProvisioning},
	"stowage_nodeclaims_launch_duration_seconds":       {when: afterProvisioning},
	"stowage_nodeclaims_registration_duration_seconds": {when: afterProvisioning},
	// A plain counter: served at zero from the start.
	"stowage_garbagecollection_machines_deleted_total": {when: afterProvisioning},
	// Set on every disruption pass, for each method and for each pool the
	// budgets are asked about.
	"stowage_disruption_eligible_nodes":               {when: afterProvisioning},
	"stowage_disruption_commands_in_flight":           {when: afterProvisioning},
	"stowage_nodeclaims_terminated_total":             {when: afterTermination},
	"stowage_nodeclaims_termination_duration_seconds": {when: afterTermination},
	"stowage_termination_evictions_total":             {when: afterTermination},

	"stowage_disruption_budget_allowed_nodes":            {when: untilEvent, reason: "a node is a disruption candidate (the GPU minimum lifetime keeps the scenario's node out)"},
	"stowage_nodeclaims_abandoned_total":                 {when: untilEvent, reason: "a claim is abandoned, e.g. its node never registers"},
	"stowage_commitment_utilization_ratio":               {when: untilEvent, reason: "a Commitment exists; the scenario declares none"},
	"stowage_commitment_savings_per_hour":                {when: untilEvent, reason: "a Commitment exists; the scenario declares none"},
	"stowage_cloudprovider_insufficient_capacity_total":  {when: untilEvent, reason: "a launch fails for lack of capacity; the fake injects that only in-process"},
	"stowage_garbagecollection_nodeclaims_deleted_total": {when: untilEvent, reason: "a claim's machine vanishes; the collector passes once a minute"},
	"stowage_disruption_decisions_total":                 {when: untilEvent, reason: "a disruption command starts"},
	"stowage_disruption_savings_per_hour_total":          {when: untilEvent, reason: "a disruption command that saves money completes"},
	"stowage_disruption_abandoned_total":                 {when: untilEvent, reason: "a disruption command is given up"},
	"stowage_disruption_invalidated_total":               {when: untilEvent, reason: "a disruption decision no longer holds at its validation"},
	"stowage_nodeclaims_disruption_conditions":           {when: untilEvent, reason: "a NodeClaim is Drifted, Expired or Consolidatable"},
	"stowage_interruption_events_total":                  {when: untilEvent, reason: "the cloud sends an interruption; the fake raises one only in-process"},
	"stowage_interruption_actions_total":                 {when: untilEvent, reason: "an interruption is acted on"},
	"stowage_aws_price_source":                           {when: untilEvent, reason: "the aws provider runs (this is the fake cloud)"},
	"stowage_gcp_price_source":                           {when: untilEvent, reason: "the gcp provider runs (TestInstallGCPIntoControlPlane checks it)"},
	"stowage_azure_price_source":                         {when: untilEvent, reason: "the azure provider runs (this is the fake cloud)"},
}

func TestParseMetricsDoc(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    []documentedMetric
		wantErr string
	}{
		{
			name: "tables",
			doc: "# Metrics\n\n| Metric | Type | Labels | Meaning |\n|---|---|---|---|\n" +
				"| `stowage_a_total` | counter | `nodepool`, `capacity_type` | A. |\n" +
				"| `stowage_b_seconds` | histogram | | B, with a | in prose? no. |\n" +
				"\nprose mentioning `stowage_c` | is ignored\n",
			want: []documentedMetric{
				{Name: "stowage_a_total", Type: "counter", Labels: []string{"capacity_type", "nodepool"}, Line: 5},
				{Name: "stowage_b_seconds", Type: "histogram", Line: 6},
			},
		},
		{name: "bad type", doc: "| `stowage_a` | summary | | A |\n", wantErr: "doc.md:1: stowage_a: type \"summary\""},
		{name: "duplicate", doc: "| `stowage_a` | gauge | | A |\n| `stowage_a` | gauge | | A |\n", wantErr: "doc.md:2: stowage_a is documented twice (first on line 1)"},
		{name: "bad name", doc: "| `stowage_a-b` | gauge | | A |\n", wantErr: "doc.md:1: \"stowage_a-b\" is not a valid metric name"},
		{name: "short row", doc: "| `stowage_a` | gauge |\n", wantErr: "doc.md:1: metric row has 2 cells"},
		{name: "no rows", doc: "# Metrics\n", wantErr: "doc.md: no metric table rows"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMetricsDoc(strings.NewReader(tt.doc), "doc.md")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseMetricsDoc (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRuntimeMetrics(t *testing.T) {
	doc := "| `stowage_a` | gauge | | A |\n\n" + runtimeMetricsMarker + " (`workqueue_*`,\n`leader_election_master_status`) are served.\n\n`later_paragraph`\n"
	got, err := parseRuntimeMetrics(strings.NewReader(doc), "doc.md")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"workqueue_*", "leader_election_master_status"}, got); diff != "" {
		t.Errorf("parseRuntimeMetrics (-want +got):\n%s", diff)
	}
	if _, err := parseRuntimeMetrics(strings.NewReader("# Metrics\n"), "doc.md"); err == nil {
		t.Error("a document without the paragraph parsed without error")
	}
}

func TestServedAsDocumented(t *testing.T) {
	docs := []documentedMetric{
		{Name: "stowage_a_total", Type: "counter", Labels: []string{"nodepool"}, Line: 3},
		{Name: "stowage_b", Type: "gauge", Line: 4},
		{Name: "stowage_c_seconds", Type: "histogram", Line: 5},
	}
	families := parseExposition(t, `# TYPE stowage_a_total counter
stowage_a_total{nodepool="gpu",zone="a"} 1
# TYPE stowage_b counter
stowage_b 2
# TYPE stowage_c_seconds histogram
stowage_c_seconds_bucket{le="1"} 1
stowage_c_seconds_bucket{le="+Inf"} 1
stowage_c_seconds_sum 0.5
stowage_c_seconds_count 1
`)
	want := []string{
		"stowage_a_total is served with labels [nodepool zone]; docs/metrics.md:3 documents [nodepool]",
		"stowage_b is served as a counter; docs/metrics.md:4 says gauge",
	}
	if diff := cmp.Diff(want, servedAsDocumented(docs, families)); diff != "" {
		t.Errorf("servedAsDocumented (-want +got):\n%s", diff)
	}
}

func TestMissingMetrics(t *testing.T) {
	docs := []documentedMetric{
		{Name: "stowage_cost_per_hour"}, {Name: "stowage_nodeclaims_created_total"},
		{Name: "stowage_nodeclaims_terminated_total"}, {Name: "stowage_interruption_events_total"},
	}
	tests := []struct {
		name   string
		served string
		by     phase
		want   []string
	}{
		{name: "nothing served after provisioning", by: afterProvisioning,
			want: []string{"stowage_cost_per_hour", "stowage_nodeclaims_created_total"}},
		{name: "per-machine gauges not due after termination", by: afterTermination,
			served: "stowage_nodeclaims_created_total{nodepool=\"p\"} 1\n",
			want:   []string{"stowage_nodeclaims_terminated_total"}},
		{name: "all due served", by: afterTermination,
			served: "stowage_nodeclaims_created_total{nodepool=\"p\"} 1\nstowage_nodeclaims_terminated_total{nodepool=\"p\",reason=\"deleted\"} 1\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := missingMetrics(docs, parseExposition(t, tt.served), tt.by)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("missingMetrics (-want +got):\n%s", diff)
			}
		})
	}
}

func parseExposition(t *testing.T, text string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return families
}

// TestMetricExpectationsCoverDocs keeps metricExpectations and
// docs/metrics.md in step without a cluster: a documented name the e2e test
// has no expectation for, or an expectation for an undocumented name, fails.
func TestMetricExpectationsCoverDocs(t *testing.T) {
	documented := map[string]bool{}
	docs, _ := loadMetricsDoc(t)
	for _, m := range docs {
		documented[m.Name] = true
		e, ok := metricExpectations[m.Name]
		if !ok {
			t.Errorf("docs/metrics.md:%d: %s has no entry in metricExpectations: say when the e2e scenario must see it", m.Line, m.Name)
			continue
		}
		if (e.when == untilEvent) != (e.reason != "") {
			t.Errorf("metricExpectations[%s]: a reason is required exactly for untilEvent", m.Name)
		}
	}
	for name := range metricExpectations {
		if !documented[name] {
			t.Errorf("metricExpectations has %s, which docs/metrics.md does not document", name)
		}
	}
}

// scrape fetches and parses a Prometheus text endpoint with a bearer token.
func scrape(ctx context.Context, url, token string) (map[string]*dto.MetricFamily, error) {
	resp, err := metricsGet(ctx, url, token)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: status %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics from %s: %w", url, err)
	}
	return families, nil
}

// metricsClient skips verifying the controller's self-signed certificate,
// as the chart's ServiceMonitor does.
var metricsClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed, loopback only

// metricsGet sends GET url with token as a bearer token, if any.
func metricsGet(ctx context.Context, url, token string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return metricsClient.Do(req)
}

// missingMetrics returns the documented metrics due by phase that the
// scrape lacks. Per-machine series are due only in their own phase.
func missingMetrics(docs []documentedMetric, families map[string]*dto.MetricFamily, by phase) []string {
	var missing []string
	for _, m := range docs {
		e, ok := metricExpectations[m.Name]
		if !ok {
			continue // TestMetricExpectationsCoverDocs reports it
		}
		if e.when == by || (e.when < by && !e.perMachine) {
			if f, ok := families[m.Name]; !ok || len(f.GetMetric()) == 0 {
				missing = append(missing, m.Name)
			}
		}
	}
	return missing
}

// servedAsDocumented compares the type and label names of every served
// documented metric with its row in docs/metrics.md and returns the
// differences.
func servedAsDocumented(docs []documentedMetric, families map[string]*dto.MetricFamily) []string {
	var problems []string
	for _, m := range docs {
		f, ok := families[m.Name]
		if !ok {
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != m.Type {
			problems = append(problems, fmt.Sprintf("%s is served as a %s; %s:%d says %s", m.Name, got, metricsDocPath, m.Line, m.Type))
		}
		for _, s := range f.GetMetric() {
			var labels []string
			for _, l := range s.GetLabel() {
				labels = append(labels, l.GetName())
			}
			slices.Sort(labels)
			if !slices.Equal(m.Labels, labels) {
				problems = append(problems, fmt.Sprintf("%s is served with labels %v; %s:%d documents %v", m.Name, labels, metricsDocPath, m.Line, m.Labels))
				break
			}
		}
	}
	return problems
}

// sample returns the value of the series of family name whose labels include
// match: a counter's or gauge's value, a histogram's sample count.
func sample(families map[string]*dto.MetricFamily, name string, match map[string]string) (float64, bool) {
	f, ok := families[name]
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
series:
	for _, s := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range s.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range match {
			if have[k] != v {
				continue series
			}
		}
		found = true
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Histogram != nil:
			sum += float64(s.GetHistogram().GetSampleCount())
		}
	}
	return sum, found
}
