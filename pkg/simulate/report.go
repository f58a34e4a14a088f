package simulate

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// Report is the outcome of one simulation. Its JSON form is the `-o json`
// output and is a stable interface for scripts.
type Report struct {
	Nodes            []NodeReport          `json:"nodes"`
	Unschedulable    []UnschedulableReport `json:"unschedulable"`
	CostPerHour      float64               `json:"costPerHour"`
	NaiveCostPerHour float64               `json:"naiveCostPerHour"`
	// NaiveExcluded are the pods the naive baseline could not price (no
	// machine of their pools holds them); absent when it priced every pod.
	NaiveExcluded     []string `json:"naiveExcluded,omitempty"`
	LowerBoundPerHour float64  `json:"lowerBoundPerHour"`
	SolveSeconds      float64  `json:"solveSeconds"`
	// Commitments says how much of each declared commitment the plan uses;
	// absent when none was declared.
	Commitments []CommitmentReport `json:"commitments,omitempty"`

	// Warnings from reading the manifests (skipped objects); the CLI prints
	// them on stderr so they never mix with -o json.
	Warnings []string `json:"-"`
}

// NodeReport is one machine to buy.
type NodeReport struct {
	InstanceType string   `json:"instanceType"`
	Zone         string   `json:"zone"`
	CapacityType string   `json:"capacityType"`
	PricePerHour float64  `json:"pricePerHour"`
	Pods         []string `json:"pods"`
}

// CommitmentReport is one commitment's use by the plan.
type CommitmentReport struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Committed is machines (count) or dollars per hour (amount); 0 for a Discount.
	Committed float64 `json:"committed"`
	Unit      string  `json:"unit,omitempty"`
	// Used is how much of Committed the plan's covered machines spend.
	Used float64 `json:"used"`
	// Machines are the plan's new machines the commitment pays for.
	Machines int `json:"machines"`
}

func commitmentReports(cs []*v1.Commitment, plan *solver.Plan) []CommitmentReport {
	var out []CommitmentReport
	for _, c := range cs {
		r := CommitmentReport{Name: c.Name, Type: string(c.Spec.Type)}
		switch {
		case c.Spec.Count != nil:
			r.Committed, r.Unit = float64(*c.Spec.Count), "machines"
		case c.Spec.AmountPerHour != nil:
			r.Committed, r.Unit = c.Spec.AmountPerHour.AsApproximateFloat64(), "$/h"
		}
		for _, n := range plan.NewNodes {
			if len(n.Choices) > 0 && n.Choices[0].Offering.Commitment == c.Name {
				r.Machines++
				r.Used += n.Choices[0].Offering.CommitmentCost
			}
		}
		out = append(out, r)
	}
	return out
}

// UnschedulableReport is a pod nothing can hold, and why.
type UnschedulableReport struct {
	Pod    string `json:"pod"`
	Reason string `json:"reason"`
}

func newReport(plan *solver.Plan, elapsed time.Duration) *Report {
	r := &Report{
		Nodes:             []NodeReport{},
		Unschedulable:     []UnschedulableReport{},
		CostPerHour:       plan.CostPerHour,
		LowerBoundPerHour: plan.LowerBoundPerHour,
		SolveSeconds:      elapsed.Seconds(),
	}
	for _, n := range plan.NewNodes {
		nr := NodeReport{Pods: make([]string, 0, len(n.Pods))}
		if len(n.Choices) > 0 {
			c := n.Choices[0]
			nr.InstanceType = c.InstanceType.Name
			nr.Zone = c.Offering.Zone
			nr.CapacityType = c.Offering.CapacityType
			nr.PricePerHour = c.Offering.PricePerHour
		}
		for _, p := range n.Pods {
			nr.Pods = append(nr.Pods, podName(p))
		}
		r.Nodes = append(r.Nodes, nr)
	}
	for _, u := range plan.Unschedulable {
		r.Unschedulable = append(r.Unschedulable, UnschedulableReport{Pod: podName(u.Pod), Reason: u.Reason})
	}
	return r
}

func podName(p *corev1.Pod) string { return p.Namespace + "/" + p.Name }

// PodsPlaced counts the pods on new nodes.
func (r *Report) PodsPlaced() int {
	n := 0
	for _, node := range r.Nodes {
		n += len(node.Pods)
	}
	return n
}

// GapPercent is how far the plan's cost is above the lower bound, in percent
// of the bound; 0 when the bound is 0.
func (r *Report) GapPercent() float64 {
	if r.LowerBoundPerHour <= 0 {
		return 0
	}
	return (r.CostPerHour - r.LowerBoundPerHour) / r.LowerBoundPerHour * 100
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people.
func (r *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE TYPE\tZONE\tCAPACITY\t$/HOUR\tPODS\tNAMES")
	for _, n := range r.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.4f\t%d\t%s\n", n.InstanceType, n.Zone, n.CapacityType, n.PricePerHour, len(n.Pods), Abbreviate(n.Pods, 4))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%d nodes for %d pods\n", len(r.Nodes), r.PodsPlaced())
	fmt.Fprintf(w, "cost:         $%.4f/h\n", r.CostPerHour)
	naive := fmt.Sprintf("$%.4f/h", r.NaiveCostPerHour)
	if r.NaiveCostPerHour > 0 {
		naive += fmt.Sprintf(" (one on-demand node per pod; stowage saves %.1f%%)", (r.NaiveCostPerHour-r.CostPerHour)/r.NaiveCostPerHour*100)
	}
	if n := len(r.NaiveExcluded); n > 0 {
		naive += fmt.Sprintf(", leaving out %d pods no machine of their pools holds", n)
	}
	fmt.Fprintf(w, "naive:        %s\n", naive)
	fmt.Fprintf(w, "lower bound:  $%.4f/h (gap %.1f%%)\n", r.LowerBoundPerHour, r.GapPercent())
	fmt.Fprintf(w, "solve time:   %s\n", time.Duration(r.SolveSeconds*float64(time.Second)).Round(time.Microsecond))
	for _, c := range r.Commitments {
		if c.Committed > 0 {
			fmt.Fprintf(w, "commitment:   %s (%s): %d new machines use %.4g of %.4g %s\n", c.Name, c.Type, c.Machines, c.Used, c.Committed, c.Unit)
		} else {
			fmt.Fprintf(w, "commitment:   %s (%s)\n", c.Name, c.Type)
		}
	}
	if len(r.Unschedulable) > 0 {
		fmt.Fprintf(w, "\n%d unschedulable pods:\n", len(r.Unschedulable))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "POD\tREASON")
		for _, u := range r.Unschedulable {
			fmt.Fprintf(tw, "%s\t%s\n", u.Pod, u.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// Abbreviate shortens a list of pod names for one table cell: the default
// namespace is dropped, pods of one workload (name-0, name-1, ...) collapse
// into name-[0-4] or name-[0,2,7], and after max groups the rest is counted.
func Abbreviate(pods []string, max int) string {
	type group struct {
		base string
		idx  []int
		// plain is set for names without a numeric suffix.
		plain bool
	}
	var groups []*group
	byBase := map[string]*group{}
	for _, p := range pods {
		p = strings.TrimPrefix(p, "default/")
		base, idx, ok := splitIndex(p)
		if !ok {
			groups = append(groups, &group{base: p, plain: true})
			continue
		}
		g := byBase[base]
		if g == nil {
			g = &group{base: base}
			byBase[base] = g
			groups = append(groups, g)
		}
		g.idx = append(g.idx, idx)
	}
	var parts []string
	for i, g := range groups {
		if i == max {
			rest := 0
			for _, g := range groups[max:] {
				rest += max1(len(g.idx))
			}
			parts = append(parts, fmt.Sprintf("+%d more", rest))
			break
		}
		parts = append(parts, renderGroup(g.plain, g.base, g.idx))
	}
	return strings.Join(parts, " ")
}

func max1(n int) int {
	if n == 0 {
		return 1
	}
	return n
}

// renderGroup renders one workload's pods.
func renderGroup(plain bool, base string, idx []int) string {
	if plain {
		return base
	}
	if len(idx) == 1 {
		return base + "-" + strconv.Itoa(idx[0])
	}
	slices.Sort(idx)
	consecutive := idx[len(idx)-1]-idx[0] == len(idx)-1
	if consecutive {
		return fmt.Sprintf("%s-[%d-%d]", base, idx[0], idx[len(idx)-1])
	}
	s := make([]string, len(idx))
	for i, n := range idx {
		s[i] = strconv.Itoa(n)
	}
	if len(s) > 6 {
		return fmt.Sprintf("%s-[%s,...] (%d)", base, strings.Join(s[:5], ","), len(s))
	}
	return base + "-[" + strings.Join(s, ",") + "]"
}

// splitIndex splits "web-12" into "web", 12.
func splitIndex(name string) (string, int, bool) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return "", 0, false
	}
	n, err := strconv.Atoi(name[i+1:])
	if err != nil || n < 0 || strconv.Itoa(n) != name[i+1:] {
		return "", 0, false
	}
	return name[:i], n, true
}
