// Command benchsummary passes `go test -bench` output through unchanged and
// then prints the scenario benchmarks' metrics as one table. `make bench`
// pipes into it.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
)

// columns are the metrics BenchmarkScenarios reports, in table order.
var columns = []struct{ unit, header string }{
	{"sec/op", "SEC/SOLVE"},
	{"pods/s", "PODS/S"},
	{"$/h", "$/H"},
	{"lb-$/h", "LOWER BOUND $/H"},
	{"gap-%", "GAP %"},
	{"bound-%", "BOUND % OF TIME"},
	{"naive-$/h", "NAIVE $/H"},
	{"ffd-ratio", "VS FFD"},
	{"time-vs-legacy", "TIME VS LEGACY"},
	{"cost-vs-legacy", "COST VS LEGACY"},
	{"peak-MB", "PEAK HEAP MB"},
	{"live-MB", "LIVE HEAP MB"},
	{"unschedulable", "UNSCHEDULABLE"},
}

// gomaxprocs is the "-N" suffix go test adds to benchmark names.
var gomaxprocs = regexp.MustCompile(`-\d+$`)

type row struct {
	name    string
	metrics map[string]string
}

func main() {
	rows, err := summarize(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
	if len(rows) == 0 {
		return
	}
	fmt.Println()
	fmt.Println("Scenario summary (AWS us-east-1 catalog):")
	if err := write(os.Stdout, rows); err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(1)
	}
}

// summarize copies in to out and collects the BenchmarkScenarios lines.
func summarize(in io.Reader, out io.Writer) ([]row, error) {
	var rows []row
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if _, err := fmt.Fprintln(out, line); err != nil {
			return nil, err
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkScenarios/") {
			continue
		}
		r := row{name: gomaxprocs.ReplaceAllString(strings.TrimPrefix(f[0], "BenchmarkScenarios/"), ""), metrics: map[string]string{}}
		// f[1] is the iteration count; then value-unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			r.metrics[f[i+1]] = f[i]
		}
		if ns, err := strconv.ParseFloat(r.metrics["ns/op"], 64); err == nil {
			r.metrics["sec/op"] = strconv.FormatFloat(ns/1e9, 'f', 3, 64)
		}
		rows = append(rows, r)
	}
	return rows, sc.Err()
}

func write(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "SCENARIO\t")
	for _, c := range columns {
		fmt.Fprintf(tw, "%s\t", c.header)
	}
	fmt.Fprintln(tw)
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t", r.name)
		for _, c := range columns {
			v, ok := r.metrics[c.unit]
			if !ok {
				v = "-"
			}
			fmt.Fprintf(tw, "%s\t", v)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
