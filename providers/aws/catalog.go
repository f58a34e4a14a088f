package aws

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

// shape is one instance type as EC2 describes it: what the machine is and in
// which zones it is sold, without prices.
type shape struct {
	Name              string
	Family            string
	VCPU              int
	MemoryMiB         int64
	Arch              string // amd64 or arm64
	GPU               *shapeGPU
	MaxPods           int
	CurrentGeneration bool
	Spot              bool // sold as spot
	Zones             []string
	// EFA is how many EFA interfaces the type takes (one per network card).
	EFA int
	// Volumes is how many EBS data volumes the type attaches besides the
	// root volume, 0 when EC2 does not say.
	Volumes int
	// Placement: the type can launch into a cluster placement group.
	Placement bool
}

// shapeGPU is a shape's accelerators (GPUs, or Neuron devices with manufacturer "aws").
type shapeGPU struct {
	Manufacturer string `json:"manufacturer"`
	Name         string `json:"name"`
	Count        int    `json:"count"`
	MemoryMiB    int64  `json:"memoryMiB"`
}

// describeShapes lists every instance type of the region with the zones it is
// offered in. Types sold in no zone, or only for macOS, are dropped.
func describeShapes(ctx context.Context, api EC2API) ([]shape, error) {
	zones := map[string][]string{}
	offerings := ec2.NewDescribeInstanceTypeOfferingsPaginator(api, &ec2.DescribeInstanceTypeOfferingsInput{
		LocationType: ec2types.LocationTypeAvailabilityZone,
		MaxResults:   aws.Int32(1000),
	})
	for offerings.HasMorePages() {
		page, err := offerings.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing instance type offerings: %w", err)
		}
		for _, o := range page.InstanceTypeOfferings {
			name := string(o.InstanceType)
			zones[name] = append(zones[name], aws.ToString(o.Location))
		}
	}

	var shapes []shape
	types := ec2.NewDescribeInstanceTypesPaginator(api, &ec2.DescribeInstanceTypesInput{MaxResults: aws.Int32(100)})
	for types.HasMorePages() {
		page, err := types.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("describing instance types: %w", err)
		}
		for i := range page.InstanceTypes {
			s, ok := shapeOf(&page.InstanceTypes[i])
			if !ok {
				continue
			}
			s.Zones = slices.Compact(slices.Sorted(slices.Values(zones[s.Name])))
			if len(s.Zones) == 0 {
				continue
			}
			shapes = append(shapes, s)
		}
	}
	sort.Slice(shapes, func(i, j int) bool { return shapes[i].Name < shapes[j].Name })
	return shapes, nil
}

func shapeOf(info *ec2types.InstanceTypeInfo) (shape, bool) {
	name := string(info.InstanceType)
	var archs []string
	if info.ProcessorInfo != nil {
		archs = strs(info.ProcessorInfo.SupportedArchitectures)
	}
	arch := ""
	switch {
	case slices.Contains(archs, "x86_64"):
		arch = "amd64"
	case slices.Contains(archs, "arm64"):
		arch = "arm64"
	}
	if arch == "" || info.VCpuInfo == nil || info.MemoryInfo == nil {
		return shape{}, false // mac types run macOS only
	}
	family, _, _ := strings.Cut(name, ".")
	s := shape{
		Name:              name,
		Family:            family,
		VCPU:              int(aws.ToInt32(info.VCpuInfo.DefaultVCpus)),
		MemoryMiB:         aws.ToInt64(info.MemoryInfo.SizeInMiB),
		Arch:              arch,
		GPU:               gpuOf(info),
		MaxPods:           maxPods(info),
		CurrentGeneration: aws.ToBool(info.CurrentGeneration),
		Spot:              slices.Contains(info.SupportedUsageClasses, ec2types.UsageClassTypeSpot),
	}
	if n := info.NetworkInfo; n != nil && aws.ToBool(n.EfaSupported) && n.EfaInfo != nil {
		s.EFA = int(aws.ToInt32(n.EfaInfo.MaximumEfaInterfaces))
	}
	if ebs := info.EbsInfo; ebs != nil && aws.ToInt32(ebs.MaximumEbsAttachments) > 1 {
		// EC2's figure already leaves out the instance store disks and
		// the primary network interface; the root volume is one of them.
		// More network interfaces lower it on shared-limit types: the
		// driver's CSINode count, read once the node runs, is exact.
		s.Volumes = int(aws.ToInt32(ebs.MaximumEbsAttachments)) - 1
	}
	if pg := info.PlacementGroupInfo; pg != nil {
		s.Placement = slices.Contains(pg.SupportedStrategies, ec2types.PlacementGroupStrategyCluster)
	}
	return s, s.VCPU > 0 && s.MemoryMiB > 0
}

func strs[T ~string](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = string(v)
	}
	return out
}

// gpuOf follows pricing's conventions: lower-case manufacturer and model with
// spaces as dashes, count summed over device groups, memory per device.
func gpuOf(info *ec2types.InstanceTypeInfo) *shapeGPU {
	if g := info.GpuInfo; g != nil && len(g.Gpus) > 0 {
		first := g.Gpus[0]
		count := 0
		for _, d := range g.Gpus {
			// Fractional GPUs report Count 0 but show the node one logical device.
			count += int(max(aws.ToInt32(d.Count), aws.ToInt32(d.LogicalGpuCount)))
		}
		var mem int64
		if first.MemoryInfo != nil {
			mem = int64(aws.ToInt32(first.MemoryInfo.SizeInMiB))
		}
		return &shapeGPU{
			Manufacturer: strings.ToLower(aws.ToString(first.Manufacturer)),
			Name:         strings.ReplaceAll(strings.ToLower(aws.ToString(first.Name)), " ", "-"),
			Count:        count,
			MemoryMiB:    mem,
		}
	}
	if n := info.NeuronInfo; n != nil && len(n.NeuronDevices) > 0 {
		first := n.NeuronDevices[0]
		count := 0
		for _, d := range n.NeuronDevices {
			count += int(aws.ToInt32(d.Count))
		}
		var mem int64
		if first.MemoryInfo != nil {
			mem = int64(aws.ToInt32(first.MemoryInfo.SizeInMiB))
		}
		return &shapeGPU{Manufacturer: "aws", Name: strings.ToLower(aws.ToString(first.Name)), Count: count, MemoryMiB: mem}
	}
	return nil
}

// maxPods is the VPC CNI secondary-IP limit EKS AMIs use: ENIs on the default
// network card x (IPv4 addresses per ENI - 1) + 2 host-network pods, capped at
// EKS' recommended kubelet maximum (110 under 30 vCPUs, else 250).
func maxPods(info *ec2types.InstanceTypeInfo) int {
	limit := 250
	if aws.ToInt32(info.VCpuInfo.DefaultVCpus) < 30 {
		limit = 110
	}
	n := info.NetworkInfo
	if n == nil {
		return limit
	}
	enis := aws.ToInt32(n.MaximumNetworkInterfaces)
	for _, c := range n.NetworkCards {
		if aws.ToInt32(c.NetworkCardIndex) == aws.ToInt32(n.DefaultNetworkCardIndex) && c.MaximumNetworkInterfaces != nil {
			enis = aws.ToInt32(c.MaximumNetworkInterfaces)
		}
	}
	ips := aws.ToInt32(n.Ipv4AddressesPerInterface)
	if enis == 0 || ips == 0 {
		return limit
	}
	return min(int(enis*(ips-1)+2), limit)
}

// buildInstanceTypes turns shapes into instance types with no offerings; the
// price book adds those. Shapes pricing.Parse would reject (e.g. a GPU with
// no memory figure) are returned in skipped rather than failing the catalog.
func buildInstanceTypes(region, date string, shapes []shape) (its []*cloudprovider.InstanceType, skipped []string, err error) {
	f := pricing.File{
		Cloud:  "aws",
		Region: region,
		// The price is a placeholder: offerings and their prices come from the price book.
		Sources: []pricing.FileSource{{ID: "ec2", What: "specs", From: "EC2 DescribeInstanceTypes", Date: date}},
	}
	for _, s := range shapes {
		if g := s.GPU; g != nil && (g.Count <= 0 || g.MemoryMiB <= 0 || g.Name == "" || g.Manufacturer == "") {
			skipped = append(skipped, s.Name)
			continue
		}
		if g := s.GPU; g != nil {
			if _, ok := pricing.GPUResourceName(g.Manufacturer); !ok {
				skipped = append(skipped, s.Name)
				continue
			}
		}
		f.Types = append(f.Types, pricing.FileType{
			Name: s.Name, Family: s.Family, VCPU: s.VCPU, MemoryMiB: s.MemoryMiB, Arch: s.Arch, GPU: (*pricing.FileGPU)(s.GPU),
			MaxPods: s.MaxPods, Volumes: s.Volumes, CurrentGeneration: s.CurrentGeneration, Zones: s.Zones,
			OnDemand: 1, OnDemandSource: "ec2",
		})
	}
	its, err = catalog.InstanceTypes("ec2:DescribeInstanceTypes "+region, f)
	if err != nil {
		return nil, nil, err
	}
	return its, skipped, nil
}
