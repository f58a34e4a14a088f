package nodeclass

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// EC2API is exactly the EC2 calls the controller makes. *ec2.Client implements it.
type EC2API interface {
	DescribeSubnets(context.Context, *ec2.DescribeSubnetsInput, ...func(*ec2.Options)) (*ec2.DescribeSubnetsOutput, error)
	DescribeSecurityGroups(context.Context, *ec2.DescribeSecurityGroupsInput, ...func(*ec2.Options)) (*ec2.DescribeSecurityGroupsOutput, error)
	DescribeImages(context.Context, *ec2.DescribeImagesInput, ...func(*ec2.Options)) (*ec2.DescribeImagesOutput, error)
}

var _ EC2API = (*ec2.Client)(nil)

// tagFilters turns a tag selector into EC2 filters; "*" matches any value.
func tagFilters(tags map[string]string) []ec2types.Filter {
	out := make([]ec2types.Filter, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		if v := tags[k]; v == "*" {
			out = append(out, ec2types.Filter{Name: aws.String("tag-key"), Values: []string{k}})
		} else {
			out = append(out, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{v}})
		}
	}
	return out
}

// describeTerm renders a selector term for condition messages.
func describeTerm(id string, tags map[string]string) string {
	if id != "" {
		return "id " + id
	}
	parts := make([]string, 0, len(tags))
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return "tags {" + strings.Join(parts, ", ") + "}"
}

func resolveSubnets(ctx context.Context, api EC2API, terms []awsv1.SelectorTerm) ([]awsv1.Subnet, error) {
	seen := map[string]awsv1.Subnet{}
	for i, t := range terms {
		in := &ec2.DescribeSubnetsInput{Filters: tagFilters(t.Tags)}
		if t.ID != "" {
			in = &ec2.DescribeSubnetsInput{SubnetIds: []string{t.ID}}
		}
		pages := ec2.NewDescribeSubnetsPaginator(api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("spec.subnetSelectorTerms[%d] (%s): describing subnets: %w", i, describeTerm(t.ID, t.Tags), err)
			}
			for _, s := range page.Subnets {
				seen[aws.ToString(s.SubnetId)] = awsv1.Subnet{ID: aws.ToString(s.SubnetId), Zone: aws.ToString(s.AvailabilityZone), ZoneID: aws.ToString(s.AvailabilityZoneId)}
			}
		}
	}
	out := slices.Collect(maps.Values(seen))
	sort.Slice(out, func(i, j int) bool {
		if out[i].Zone != out[j].Zone {
			return out[i].Zone < out[j].Zone
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func resolveSecurityGroups(ctx context.Context, api EC2API, terms []awsv1.SelectorTerm) ([]awsv1.SecurityGroup, error) {
	seen := map[string]awsv1.SecurityGroup{}
	for i, t := range terms {
		in := &ec2.DescribeSecurityGroupsInput{Filters: tagFilters(t.Tags)}
		if t.ID != "" {
			in = &ec2.DescribeSecurityGroupsInput{GroupIds: []string{t.ID}}
		}
		pages := ec2.NewDescribeSecurityGroupsPaginator(api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("spec.securityGroupSelectorTerms[%d] (%s): describing security groups: %w", i, describeTerm(t.ID, t.Tags), err)
			}
			for _, g := range page.SecurityGroups {
				seen[aws.ToString(g.GroupId)] = awsv1.SecurityGroup{ID: aws.ToString(g.GroupId), Name: aws.ToString(g.GroupName)}
			}
		}
	}
	out := slices.Collect(maps.Values(seen))
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// aliasQuery is one DescribeImages query an alias expands to.
type aliasQuery struct {
	namePattern string
	nvidia      bool
}

// aliasQueries maps an alias family to the public EKS-optimized image name
// patterns Amazon publishes. Plain families also resolve their NVIDIA
// variant, so GPU instance types of the same node class get the driver.
func aliasQueries(alias string) (family, version string, queries []aliasQuery) {
	family, version, _ = strings.Cut(alias, "@")
	if version == "" || version == "latest" {
		version = ""
	}
	v := "*"
	if version != "" {
		v = "*" + version + "*"
	}
	al2023 := func(arch, variant string) string {
		return "amazon-eks-node-al2023-" + arch + "-" + variant + "-*" + trimStar(v)
	}
	bottlerocket := func(variant string) string { return "bottlerocket-aws-k8s-*-" + variant + v }
	switch family {
	case "al2023":
		queries = []aliasQuery{{al2023("x86_64", "standard"), false}, {al2023("arm64", "standard"), false}, {al2023("x86_64", "nvidia"), true}, {al2023("arm64", "nvidia"), true}}
	case "al2023-nvidia":
		queries = []aliasQuery{{al2023("x86_64", "nvidia"), true}, {al2023("arm64", "nvidia"), true}}
	case "bottlerocket":
		queries = []aliasQuery{{bottlerocket("x86_64-"), false}, {bottlerocket("aarch64-"), false}, {bottlerocket("nvidia-x86_64-"), true}, {bottlerocket("nvidia-aarch64-"), true}}
	case "bottlerocket-nvidia":
		queries = []aliasQuery{{bottlerocket("nvidia-x86_64-"), true}, {bottlerocket("nvidia-aarch64-"), true}}
	}
	return family, version, queries
}

func trimStar(s string) string {
	if s == "*" {
		return ""
	}
	return strings.TrimPrefix(s, "*")
}

// resolveAMIs returns, for each architecture and driver flavour, the newest
// image any term selects.
func resolveAMIs(ctx context.Context, api EC2API, terms []awsv1.AMISelectorTerm) ([]awsv1.AMI, error) {
	type key struct {
		arch   string
		nvidia bool
	}
	newest := map[key]ec2types.Image{}
	consider := func(img ec2types.Image, nvidia bool) {
		arch := kubeArch(img.Architecture)
		if arch == "" {
			return
		}
		k := key{arch, nvidia}
		if cur, ok := newest[k]; !ok || aws.ToString(img.CreationDate) > aws.ToString(cur.CreationDate) ||
			aws.ToString(img.CreationDate) == aws.ToString(cur.CreationDate) && aws.ToString(img.ImageId) > aws.ToString(cur.ImageId) {
			newest[k] = img
		}
	}
	describe := func(i int, what string, in *ec2.DescribeImagesInput, nvidia func(ec2types.Image) (isNvidia, keep bool)) error {
		pages := ec2.NewDescribeImagesPaginator(api, in)
		for pages.HasMorePages() {
			page, err := pages.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("spec.amiSelectorTerms[%d] (%s): describing images: %w", i, what, err)
			}
			for _, img := range page.Images {
				if n, ok := nvidia(img); ok {
					consider(img, n)
				}
			}
		}
		return nil
	}
	nameSaysNvidia := func(img ec2types.Image) bool {
		return strings.Contains(strings.ToLower(aws.ToString(img.Name)), "nvidia")
	}
	byName := func(img ec2types.Image) (bool, bool) { return nameSaysNvidia(img), true }
	for i, t := range terms {
		switch {
		case t.Alias != "":
			_, _, queries := aliasQueries(t.Alias)
			for _, q := range queries {
				in := &ec2.DescribeImagesInput{Owners: []string{"amazon"}, Filters: []ec2types.Filter{
					{Name: aws.String("name"), Values: []string{q.namePattern}},
					{Name: aws.String("state"), Values: []string{"available"}},
				}}
				// A plain pattern's wildcard also matches NVIDIA names
				// (bottlerocket-aws-k8s-1.34-nvidia-x86_64-...): keep those out.
				wantNvidia := q.nvidia
				if err := describe(i, "alias "+t.Alias, in, func(img ec2types.Image) (bool, bool) {
					return wantNvidia, wantNvidia == nameSaysNvidia(img)
				}); err != nil {
					return nil, err
				}
			}
		case t.ID != "":
			if err := describe(i, "id "+t.ID, &ec2.DescribeImagesInput{ImageIds: []string{t.ID}}, byName); err != nil {
				return nil, err
			}
		default:
			in := &ec2.DescribeImagesInput{Filters: tagFilters(t.Tags)}
			if t.Name != "" {
				in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("name"), Values: []string{t.Name}})
			}
			if t.Owner != "" {
				in.Owners = []string{t.Owner}
			}
			if err := describe(i, describeTerm("", t.Tags), in, byName); err != nil {
				return nil, err
			}
		}
	}
	out := make([]awsv1.AMI, 0, len(newest))
	for k, img := range newest {
		out = append(out, awsv1.AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), Arch: k.arch, NVIDIA: k.nvidia})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Arch != out[j].Arch {
			return out[i].Arch < out[j].Arch
		}
		return !out[i].NVIDIA && out[j].NVIDIA
	})
	return out, nil
}

func kubeArch(a ec2types.ArchitectureValues) string {
	switch a {
	case ec2types.ArchitectureValuesX8664:
		return "amd64"
	case ec2types.ArchitectureValuesArm64:
		return "arm64"
	}
	return ""
}
