// Command gen rebuilds the built-in catalogs under pricing/data from public
// data saved on disk (see docs/pricing.md for where each input comes from):
//
//	go run ./pricing/internal/gen -moto DIR -aws-prices FILE -gcp-prices FILE -azure-prices FILE
//	go run ./pricing/internal/gen -only azure -azure-prices FILE
//
// It only converts facts (specs, zones, list prices) into Stowage's own JSON
// format; estimates it has to make are labelled with their own source entry.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/stowage-k8s/stowage/pricing/internal/format"
)

func main() {
	var o options
	flag.StringVar(&o.motoDir, "moto", "", "moto's ec2/resources directory (instance_types.json.gz, instance_type_offerings/)")
	flag.StringVar(&o.awsPrices, "aws-prices", "", "aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go")
	flag.StringVar(&o.gcpPrices, "gcp-prices", "", "cloudpilot-ai/karpenter-provider-gcp pkg/providers/pricing/initial-prices.json")
	flag.StringVar(&o.azurePrices, "azure-prices", "", "Azure/karpenter-provider-azure pkg/providers/pricing/zz_generated.pricing.go")
	flag.StringVar(&o.out, "out", "pricing/data", "output directory")
	flag.StringVar(&o.clouds, "clouds", "aws,gcp,azure", "which catalogs to rebuild (a refresh of one cloud needs only its inputs)")
	flag.StringVar(&o.gcpGPUOnly, "gcp-gpu-only", "", "only refresh the n1 + GPU, A3 Mega, A3 Ultra and A4 rows of this GCP catalog file in place")
	flag.StringVar(&o.today, "date", time.Now().UTC().Format(time.DateOnly), "date recorded for estimates made by this generator")
	flag.Parse()
	run := run
	if o.gcpGPUOnly != "" {
		run = refreshGCPGPUChoices
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

type options struct {
	motoDir, awsPrices, gcpPrices, azurePrices, out, today, clouds string
	gcpGPUOnly                                                     string
}

// refreshGCPGPUChoices rewrites the GCP GPU choices of an existing catalog
// file, for a refresh without the upstream price file.
func refreshGCPGPUChoices(o options) error {
	var f format.File
	if err := readJSON(o.gcpGPUOnly, &f); err != nil {
		return err
	}
	addGCPGPUChoices(&f)
	if err := f.Validate(o.gcpGPUOnly); err != nil {
		return err
	}
	if err := write(o.gcpGPUOnly, &f, false); err != nil {
		return err
	}
	fmt.Printf("wrote %s: %d types\n", o.gcpGPUOnly, len(f.Types))
	return nil
}

func run(o options) error {
	type job struct {
		cloud string
		file  string
		gzip  bool
		build func(options) (*format.File, error)
	}
	for _, j := range []job{
		{"aws", "aws-us-east-1.json.gz", true, buildAWS},
		{"gcp", "gcp-us-central1.json", false, buildGCP},
		{"azure", "azure-eastus.json", false, buildAzure},
	} {
		if o.clouds != "" && !slices.Contains(strings.Split(o.clouds, ","), j.cloud) {
			continue
		}
		f, err := j.build(o)
		if err != nil {
			return fmt.Errorf("building %s: %w", j.file, err)
		}
		if err := f.Validate(j.file); err != nil {
			return err
		}
		if err := write(filepath.Join(o.out, j.file), f, j.gzip); err != nil {
			return err
		}
		fmt.Printf("wrote %s: %d types\n", j.file, len(f.Types))
	}
	return nil
}

// write emits one type per line so diffs of a refresh stay reviewable.
func write(path string, f *format.File, gz bool) error {
	var buf bytes.Buffer
	head := *f
	head.Types = nil
	h, err := json.MarshalIndent(head, "", "  ")
	if err != nil {
		return err
	}
	// Splice the types in by hand: MarshalIndent would spread each over 20 lines.
	buf.Write(bytes.TrimSuffix(h, []byte("\n}")))
	buf.WriteString(",\n  \"types\": [\n")
	for i, t := range f.Types {
		line, err := json.Marshal(t)
		if err != nil {
			return err
		}
		buf.WriteString("    ")
		buf.Write(line)
		if i < len(f.Types)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("  ]\n}\n")
	data := buf.Bytes()
	if gz {
		var z bytes.Buffer
		w, err := gzip.NewWriterLevel(&z, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		data = z.Bytes()
	}
	return os.WriteFile(path, data, 0o644)
}

func round6(f float64) float64 { return math.Round(f*1e6) / 1e6 }

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if filepath.Ext(path) == ".gz" {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		defer zr.Close()
		if err := json.NewDecoder(zr).Decode(v); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
