package pricing

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const validFile = `{
  "cloud": "gcp", "region": "us-central1", "zones": ["us-central1-a", "us-central1-b"],
  "sources": [{"id": "s", "what": "specs and prices", "from": "a test", "date": "2026-11-27"}],
  "types": [
    {"name": "g2-standard-4", "family": "g2", "vcpu": 4, "memoryMiB": 16384, "arch": "amd64",
     "gpu": {"manufacturer": "nvidia", "name": "l4", "count": 1, "memoryMiB": 24576},
     "currentGeneration": true, "zones": ["us-central1-a"], "onDemand": 0.7, "spot": 0.4,
     "onDemandSource": "s", "spotSource": "s"}
  ]
}`

func TestParse(t *testing.T) {
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write([]byte(validFile))
	_ = w.Close()
	for name, data := range map[string][]byte{"plain": []byte(validFile), "gzipped": gz.Bytes()} {
		c, err := Parse("test.json", data)
		if err != nil {
			t.Fatalf("%s: Parse: %v", name, err)
		}
		it, ok := Lookup(c, "g2-standard-4")
		if !ok {
			t.Fatalf("%s: g2-standard-4 missing", name)
		}
		var offerings []string
		for _, o := range it.Offerings {
			offerings = append(offerings, o.ID(it.Name).String())
		}
		want := []string{"g2-standard-4/us-central1-a/on-demand", "g2-standard-4/us-central1-a/spot"}
		if diff := cmp.Diff(want, offerings); diff != "" {
			t.Errorf("%s: offerings (-want +got):\n%s", name, diff)
		}
		if pods := it.Capacity.Pods().Value(); pods != 110 {
			t.Errorf("%s: pods = %d, want the GKE default 110", name, pods)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr []string // substrings the error must contain
	}{
		{"not json", func(string) string { return "{" }, []string{"bad.json"}},
		{"unknown field", func(s string) string { return strings.Replace(s, `"family"`, `"famly": "x", "family"`, 1) }, []string{"bad.json", "famly"}},
		{"unknown cloud", func(s string) string { return strings.Replace(s, `"gcp"`, `"ibm"`, 1) }, []string{"bad.json", `"ibm"`}},
		{"no sources", func(s string) string {
			return strings.Replace(s, `[{"id": "s", "what": "specs and prices", "from": "a test", "date": "2026-11-27"}]`, `[]`, 1)
		}, []string{"bad.json", "types[0] (g2-standard-4)", "onDemandSource"}},
		{"bad date", func(s string) string { return strings.Replace(s, "2026-11-27", "mid-2026", 1) }, []string{"bad.json", "sources[0]", "date"}},
		{"zone outside the region", func(s string) string {
			return strings.Replace(s, `"zones": ["us-central1-a"]`, `"zones": ["us-east1-b"]`, 1)
		}, []string{"bad.json", "types[0] (g2-standard-4)", `zone "us-east1-b"`}},
		{"spot not cheaper", func(s string) string { return strings.Replace(s, `"spot": 0.4`, `"spot": 0.9`, 1) }, []string{"types[0] (g2-standard-4)", "spot price 0.9"}},
		{"free on-demand", func(s string) string { return strings.Replace(s, `"onDemand": 0.7`, `"onDemand": 0`, 1) }, []string{"types[0] (g2-standard-4)", "onDemand price"}},
		{"bad arch", func(s string) string { return strings.Replace(s, `"amd64"`, `"x86_64"`, 1) }, []string{"types[0] (g2-standard-4)", `arch "x86_64"`}},
		{"gpu without count", func(s string) string { return strings.Replace(s, `"count": 1`, `"count": 0`, 1) }, []string{"types[0] (g2-standard-4)", "gpu"}},
		{"unknown gpu maker", func(s string) string { return strings.Replace(s, `"nvidia"`, `"acme"`, 1) }, []string{"types[0] (g2-standard-4)", `"acme"`}},
		{"duplicate type", func(s string) string {
			i := strings.Index(s, `{"name"`)
			j := strings.LastIndex(s, "}\n  ]")
			return s[:j+1] + "," + s[i:j+1] + s[j+1:]
		}, []string{"types[1] (g2-standard-4)", "duplicate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.json", []byte(tt.edit(validFile)))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestGPUInfo(t *testing.T) {
	tests := []struct {
		name      string
		memoryMiB int64
		want      GPUModel
		wantOK    bool
	}{
		{"a100", 40960, GPUModel{Manufacturer: "nvidia", Name: "a100", MemoryMiB: 40960, MIGProfiles: map[string]int{"1g.5gb": 7, "1g.10gb": 4, "2g.10gb": 3, "3g.20gb": 2, "4g.20gb": 1, "7g.40gb": 1}, ProductName: "NVIDIA A100-SXM4-40GB", Architecture: "Ampere", ComputeCapability: "8.0"}, true},
		{"a100", 80 * 1024, GPUModel{Manufacturer: "nvidia", Name: "a100", MemoryMiB: 81920, MIGProfiles: map[string]int{"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1}, ProductName: "NVIDIA A100-SXM4-80GB", Architecture: "Ampere", ComputeCapability: "8.0"}, true},
		{"a100", 0, GPUModel{Manufacturer: "nvidia", Name: "a100", MemoryMiB: 40960, MIGProfiles: map[string]int{"1g.5gb": 7, "1g.10gb": 4, "2g.10gb": 3, "3g.20gb": 2, "4g.20gb": 1, "7g.40gb": 1}, ProductName: "NVIDIA A100-SXM4-40GB", Architecture: "Ampere", ComputeCapability: "8.0"}, true},
		{"h100", 81920, GPUModel{Manufacturer: "nvidia", Name: "h100", MemoryMiB: 81920, MIGProfiles: map[string]int{"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1}, ProductName: "NVIDIA H100 80GB HBM3", Architecture: "Hopper", ComputeCapability: "9.0"}, true},
		{"h200", 143771, GPUModel{Manufacturer: "nvidia", Name: "h200", MemoryMiB: 144384, MIGProfiles: map[string]int{"1g.18gb": 7, "1g.35gb": 4, "2g.35gb": 3, "3g.71gb": 2, "4g.71gb": 1, "7g.141gb": 1}, ProductName: "NVIDIA H200", Architecture: "Hopper", ComputeCapability: "9.0"}, true},
		{"l4", 2861, GPUModel{Manufacturer: "nvidia", Name: "l4", MemoryMiB: 22888, MIGProfiles: nil, ProductName: "NVIDIA L4", Architecture: "Ada Lovelace", ComputeCapability: "8.9"}, true},
		{"trainium", 32768, GPUModel{Manufacturer: "aws", Name: "trainium", MemoryMiB: 32768, MIGProfiles: nil}, true},
		{"H100", 81920, GPUModel{}, false},
		{"rtx-9090", 0, GPUModel{}, false},
	}
	for _, tt := range tests {
		got, ok := GPUInfo(tt.name, tt.memoryMiB)
		if ok != tt.wantOK {
			t.Errorf("GPUInfo(%q, %d) ok = %v, want %v", tt.name, tt.memoryMiB, ok, tt.wantOK)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("GPUInfo(%q, %d) (-want +got):\n%s", tt.name, tt.memoryMiB, diff)
		}
	}

	// The result is the caller's to change.
	m, _ := GPUInfo("h100", 81920)
	m.MIGProfiles["1g.10gb"] = 1
	if again, _ := GPUInfo("h100", 81920); again.MIGProfiles["1g.10gb"] != 7 {
		t.Errorf("GPUInfo returned shared MIG profiles")
	}
}

func TestParseGPUFactsErrors(t *testing.T) {
	tests := []struct {
		name, data, want string
	}{
		{"no sources", `{"models": []}`, "sources"},
		{"undated source", `{"sources":[{"id":"x","what":"w","from":"f","date":"mid-2026"}], "models": []}`, "sources[0] (x)"},
		{"bad maker", `{"sources":[{"id":"x","what":"w","from":"f","date":"2026-11-27"}], "models": [{"manufacturer": "acme", "name": "x1", "memoryMiB": 1}]}`, `models[0] (x1): unknown manufacturer "acme"`},
		{"no memory", `{"sources":[{"id":"x","what":"w","from":"f","date":"2026-11-27"}], "models": [{"manufacturer": "nvidia", "name": "x1"}]}`, "models[0] (x1)"},
		{"nvidia without DRA facts", `{"sources":[{"id":"x","what":"w","from":"f","date":"2026-11-27"}], "models": [{"manufacturer": "nvidia", "name": "x1", "memoryMiB": 1, "productName": "X1", "architecture": "Y", "computeCapability": "9"}]}`, "computeCapability"},
		{"bad override", `{"sources":[{"id":"x","what":"w","from":"f","date":"2026-11-27"}], "productNames": [{"cloud": "azure"}], "models": []}`, "productNames[0]"},
		{"zero mig", `{"sources":[{"id":"x","what":"w","from":"f","date":"2026-11-27"}], "models": [{"manufacturer": "nvidia", "name": "x1", "memoryMiB": 1, "mig": {"1g.1gb": 0}}]}`, "1g.1gb"},
	}
	for _, tt := range tests {
		_, err := parseGPUFacts("gpus.json", []byte(tt.data))
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "gpus.json") {
			t.Errorf("%s: error %v, want one naming gpus.json and %q", tt.name, err, tt.want)
		}
	}
}

func TestProductNamePerCloudAndType(t *testing.T) {
	a100, _ := GPUInfo("a100", 81920)
	tests := []struct{ cloud, typ, want string }{
		{"aws", "p4de.24xlarge", "NVIDIA A100-SXM4-80GB"},
		{"gcp", "a2-ultragpu-8g", "NVIDIA A100-SXM4-80GB"},
		{"azure", "Standard_NC24ads_A100_v4", "NVIDIA A100 80GB PCIe"},
		{"azure", "Standard_ND96amsr_A100_v4", "NVIDIA A100-SXM4-80GB"},
	}
	for _, tt := range tests {
		if got := ProductName(tt.cloud, tt.typ, a100); got != tt.want {
			t.Errorf("ProductName(%s, %s) = %q, want %q", tt.cloud, tt.typ, got, tt.want)
		}
	}
	cat, err := Load("azure/eastus")
	if err != nil {
		t.Fatal(err)
	}
	it, ok := Lookup(cat, "Standard_NC24ads_A100_v4")
	if !ok || it.GPU == nil || it.GPU.ProductName != "NVIDIA A100 80GB PCIe" || it.GPU.ComputeCapability != "8.0" || it.GPU.Architecture != "Ampere" {
		t.Errorf("catalog type carries GPU facts %+v", it.GPU)
	}
}
