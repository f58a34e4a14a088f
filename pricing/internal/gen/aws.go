package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/stowage-k8s/stowage/pricing/internal/format"
)

// Provenance of the AWS inputs; update these with the inputs on a refresh.
const (
	awsMotoFrom    = "moto 5.2.1 (github.com/getmoto/moto), moto/ec2/resources/instance_types.json.gz: DescribeInstanceTypes output"
	awsMotoZones   = "moto 5.2.1, moto/ec2/resources/instance_type_offerings/availability-zone/us-east-1.json.gz: DescribeInstanceTypeOfferings output"
	awsMotoDate    = "2026-05-20"
	awsPricesFrom  = "github.com/aws/karpenter-provider-aws, pkg/providers/pricing/zz_generated.pricing_aws.go at commit 6fc13b5236fd04fd16ff3f9dc7490d0813994099 (InitialOnDemandPricesAWS[\"us-east-1\"], from the AWS Price List API)"
	awsPricesDate  = "2026-07-20"
	cloudNotesFrom = "Stowage notes/cloud-apis.md, \"Representative GPU catalog\" (list prices from public price files, mid-2026)"
	cloudNotesDate = "2026-07-01"
)

// awsNoteSpot are the regional-average spot prices in cloud-apis.md.
var awsNoteSpot = map[string]float64{
	"g4dn.xlarge": 0.320, "g4dn.12xlarge": 1.554,
	"g5.xlarge": 0.509, "g5.12xlarge": 3.492, "g5.48xlarge": 9.103,
	"g6.xlarge": 0.538, "g6e.12xlarge": 3.148,
	"p4d.24xlarge": 14.231, "p5.4xlarge": 2.63, "p5.48xlarge": 19.49, "p5en.48xlarge": 27.07,
}

// Spot/on-demand ratios for types with no published spot figure: a family with
// figures in the note uses their mean; anything else a flat default.
const (
	awsSpotRatioAccelerator = 0.50 // mean of the note's GPU family ratios, rounded
	awsSpotRatioCPU         = 0.40 // no public figure here; a conservative mid-point of typical 55-70% discounts
)

type motoType struct {
	InstanceType      string
	CurrentGeneration bool
	VCpuInfo          struct{ DefaultVCpus int }
	MemoryInfo        struct{ SizeInMiB int64 }
	ProcessorInfo     struct{ SupportedArchitectures []string }
	GpuInfo           *struct {
		Gpus []struct {
			Name, Manufacturer string
			Count              int
			LogicalGpuCount    int
			MemoryInfo         struct{ SizeInMiB int64 }
		}
	}
	NeuronInfo *struct {
		NeuronDevices []struct {
			Name       string
			Count      int
			MemoryInfo struct{ SizeInMiB int64 }
		}
	}
	NetworkInfo struct {
		NetworkPerformance        string
		MaximumNetworkInterfaces  int
		Ipv4AddressesPerInterface int
		DefaultNetworkCardIndex   int
		NetworkCards              []struct{ NetworkCardIndex, MaximumNetworkInterfaces int }
		EfaSupported              bool
		EfaInfo                   *struct{ MaximumEfaInterfaces int }
	}
	EbsInfo               *struct{ MaximumEbsAttachments int }
	PlacementGroupInfo    *struct{ SupportedStrategies []string }
	SupportedUsageClasses []string
}

// awsNeuronMemoryMiB corrects device memory the DescribeInstanceTypes data
// gets wrong: moto 5.2.1 reports 512 GiB per Trainium2 device, the Neuron
// documentation 96 GiB (awsdocs-neuron.readthedocs-hosted.com, "Amazon EC2
// Trn2 Architecture": 16 chips, 1,536 GiB device memory; read 2026-12-04).
var awsNeuronMemoryMiB = map[string]int64{"trainium2": 96 * 1024}

func buildAWS(o options) (*format.File, error) {
	var types map[string]motoType
	if err := readJSON(filepath.Join(o.motoDir, "instance_types.json.gz"), &types); err != nil {
		return nil, err
	}
	var offerings []struct{ InstanceType, Location string }
	if err := readJSON(filepath.Join(o.motoDir, "instance_type_offerings", "availability-zone", "us-east-1.json.gz"), &offerings); err != nil {
		return nil, err
	}
	prices, err := readAWSPrices(o.awsPrices)
	if err != nil {
		return nil, err
	}
	zonesOf := map[string][]string{}
	allZones := map[string]bool{}
	for _, off := range offerings {
		zonesOf[off.InstanceType] = append(zonesOf[off.InstanceType], off.Location)
		allZones[off.Location] = true
	}
	familyRatio := awsFamilySpotRatios(prices)

	f := &format.File{
		Cloud:  "aws",
		Region: "us-east-1",
		Sources: []format.Source{
			{ID: "moto-specs", What: "specs", From: awsMotoFrom, Date: awsMotoDate},
			{ID: "moto-zones", What: "zones", From: awsMotoZones, Date: awsMotoDate},
			{ID: "karpenter-aws", What: "on-demand prices", From: awsPricesFrom, Date: awsPricesDate},
			{ID: "cloud-apis-note", What: "spot prices (regional average) of the representative GPU types", From: cloudNotesFrom, Date: cloudNotesDate},
			{ID: "estimate-family-ratio", What: "spot prices, ESTIMATE", From: "on-demand x the mean spot/on-demand ratio of the family's types in cloud-apis.md", Date: o.today},
			{ID: "estimate-default-ratio", What: "spot prices, ESTIMATE", From: fmt.Sprintf("on-demand x %.2f for accelerator types, x %.2f for CPU-only types (no public per-type figure)", awsSpotRatioAccelerator, awsSpotRatioCPU), Date: o.today},
		},
	}
	for z := range allZones {
		f.Zones = append(f.Zones, z)
	}
	sort.Strings(f.Zones)

	var skipped []string
	for name, m := range types {
		od, priced := prices[name]
		zones := zonesOf[name]
		arch := awsArch(m.ProcessorInfo.SupportedArchitectures)
		if !priced || len(zones) == 0 || arch == "" {
			skipped = append(skipped, name)
			continue
		}
		sort.Strings(zones)
		family, _, _ := strings.Cut(name, ".")
		t := format.Type{
			Name:              name,
			Family:            family,
			VCPU:              m.VCpuInfo.DefaultVCpus,
			MemoryMiB:         m.MemoryInfo.SizeInMiB,
			Arch:              arch,
			GPU:               awsGPU(m),
			MaxPods:           awsMaxPods(m),
			Network:           m.NetworkInfo.NetworkPerformance,
			Volumes:           awsVolumes(m),
			EFA:               awsEFA(m),
			Placement:         m.PlacementGroupInfo != nil && slices.Contains(m.PlacementGroupInfo.SupportedStrategies, "cluster"),
			CurrentGeneration: m.CurrentGeneration,
			Zones:             zones,
			OnDemand:          od,
			OnDemandSource:    "karpenter-aws",
		}
		if slices.Contains(m.SupportedUsageClasses, "spot") {
			switch r, ok := familyRatio[family]; {
			case awsNoteSpot[name] > 0:
				t.Spot, t.SpotSource = awsNoteSpot[name], "cloud-apis-note"
			case ok:
				t.Spot, t.SpotSource = round6(od*r), "estimate-family-ratio"
			case t.GPU != nil:
				t.Spot, t.SpotSource = round6(od*awsSpotRatioAccelerator), "estimate-default-ratio"
			default:
				t.Spot, t.SpotSource = round6(od*awsSpotRatioCPU), "estimate-default-ratio"
			}
		}
		f.Types = append(f.Types, t)
	}
	sort.Slice(f.Types, func(i, j int) bool { return f.Types[i].Name < f.Types[j].Name })
	sort.Strings(skipped)
	fmt.Fprintf(os.Stderr, "aws: skipped %d types without a us-east-1 price, zone or linux arch: %s\n", len(skipped), strings.Join(skipped, " "))
	return f, nil
}

// readAWSPrices pulls the us-east-1 map out of Karpenter's generated Go file.
// Only the numbers are used; the file is read as text, never compiled.
func readAWSPrices(path string) (map[string]float64, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	s := string(src)
	start := strings.Index(s, `"us-east-1": {`)
	if start < 0 {
		return nil, fmt.Errorf("%s: no us-east-1 block", path)
	}
	end := strings.Index(s[start:], "\n\t},")
	if end < 0 {
		return nil, fmt.Errorf("%s: us-east-1 block not closed", path)
	}
	out := map[string]float64{}
	for _, m := range regexp.MustCompile(`"([a-z0-9-]+\.[a-z0-9-]+)": ([0-9.]+)`).FindAllStringSubmatch(s[start:start+end], -1) {
		p, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			return nil, fmt.Errorf("%s: price of %s: %w", path, m[1], err)
		}
		if p > 0 {
			out[m[1]] = p
		}
	}
	if len(out) < 500 {
		return nil, fmt.Errorf("%s: only %d us-east-1 prices found", path, len(out))
	}
	return out, nil
}

func awsFamilySpotRatios(od map[string]float64) map[string]float64 {
	sum, n := map[string]float64{}, map[string]int{}
	for name, spot := range awsNoteSpot {
		family, _, _ := strings.Cut(name, ".")
		sum[family] += spot / od[name]
		n[family]++
	}
	out := map[string]float64{}
	for family := range sum {
		out[family] = sum[family] / float64(n[family])
	}
	return out
}

func awsArch(archs []string) string {
	switch {
	case slices.Contains(archs, "x86_64"):
		return "amd64"
	case slices.Contains(archs, "arm64"):
		return "arm64"
	}
	return "" // mac types run macOS only
}

func awsGPU(m motoType) *format.GPU {
	if m.GpuInfo != nil && len(m.GpuInfo.Gpus) > 0 {
		g := m.GpuInfo.Gpus[0]
		count := 0
		for _, x := range m.GpuInfo.Gpus {
			// Fractional GPUs (g6f) report Count 0 but show the node one device.
			count += max(x.Count, x.LogicalGpuCount)
		}
		return &format.GPU{
			Manufacturer: strings.ToLower(g.Manufacturer),
			Name:         strings.ReplaceAll(strings.ToLower(g.Name), " ", "-"),
			Count:        count,
			MemoryMiB:    g.MemoryInfo.SizeInMiB,
		}
	}
	if m.NeuronInfo != nil && len(m.NeuronInfo.NeuronDevices) > 0 {
		d := m.NeuronInfo.NeuronDevices[0]
		count := 0
		for _, x := range m.NeuronInfo.NeuronDevices {
			count += x.Count
		}
		name := strings.ToLower(d.Name)
		mem := d.MemoryInfo.SizeInMiB
		if fixed, ok := awsNeuronMemoryMiB[name]; ok {
			mem = fixed
		}
		return &format.GPU{Manufacturer: "aws", Name: name, Count: count, MemoryMiB: mem}
	}
	return nil
}

// awsEFA is the number of EFA interfaces a type takes, 0 without EFA.
func awsEFA(m motoType) int {
	if !m.NetworkInfo.EfaSupported || m.NetworkInfo.EfaInfo == nil {
		return 0
	}
	return m.NetworkInfo.EfaInfo.MaximumEfaInterfaces
}

// awsVolumes is the EBS data volumes a type attaches besides its root
// volume, as the live provider computes it; 0 when the data has no limit.
func awsVolumes(m motoType) int {
	if m.EbsInfo == nil || m.EbsInfo.MaximumEbsAttachments <= 1 {
		return 0
	}
	return m.EbsInfo.MaximumEbsAttachments - 1
}

// awsMaxPods is the VPC CNI secondary-IP limit EKS AMIs use: ENIs on the
// default network card x (IPv4 addresses per ENI - 1) + 2 host-network pods,
// capped at EKS' recommended kubelet maximum (110 under 30 vCPUs, else 250).
func awsMaxPods(m motoType) int {
	n := m.NetworkInfo
	enis := n.MaximumNetworkInterfaces
	for _, c := range n.NetworkCards {
		if c.NetworkCardIndex == n.DefaultNetworkCardIndex {
			enis = c.MaximumNetworkInterfaces
		}
	}
	limit := 250
	if m.VCpuInfo.DefaultVCpus < 30 {
		limit = 110
	}
	if enis == 0 || n.Ipv4AddressesPerInterface == 0 {
		return limit
	}
	return min(enis*(n.Ipv4AddressesPerInterface-1)+2, limit)
}
