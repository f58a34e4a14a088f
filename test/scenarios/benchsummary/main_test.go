package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	in := `goos: linux
BenchmarkScenarios/seeds-example-2         	      10	 111356 ns/op	  89.80 pods/s	 19.09 $/h	 8.925 lb-$/h	 113.9 gap-%	 30.20 naive-$/h	 1.000 ffd-ratio	 0 unschedulable	 2048 B/op	 12 allocs/op
BenchmarkScenarios/diverse-100k-2          	SKIP
BenchmarkOther-2 	 5	 10 ns/op
PASS
`
	var out bytes.Buffer
	rows, err := summarize(strings.NewReader(in), &out)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != in {
		t.Errorf("input not passed through unchanged:\n%s", out.String())
	}
	want := []row{{name: "seeds-example", metrics: map[string]string{
		"ns/op": "111356", "sec/op": "0.000", "pods/s": "89.80", "$/h": "19.09", "lb-$/h": "8.925", "gap-%": "113.9",
		"naive-$/h": "30.20", "ffd-ratio": "1.000", "unschedulable": "0", "B/op": "2048", "allocs/op": "12",
	}}}
	if diff := cmp.Diff(want, rows, cmp.AllowUnexported(row{})); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	var table bytes.Buffer
	if err := write(&table, rows); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "seeds-example") || !strings.Contains(table.String(), "113.9") {
		t.Errorf("table:\n%s", table.String())
	}
}
