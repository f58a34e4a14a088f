package nodeclass

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// SSMAPI is the one SSM call the controller makes. *ssm.Client implements it.
type SSMAPI interface {
	GetParameter(context.Context, *ssm.GetParameterInput, ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
}

var _ SSMAPI = (*ssm.Client)(nil)

// DefaultParameterRoot is where Amazon publishes its EKS image IDs.
const DefaultParameterRoot = "/aws/service"

// codeParameterNotFound is what SSM says for a variant a region does not
// publish (there is no arm64 Neuron image, for example).
const codeParameterNotFound = "ParameterNotFound"

// imageParameter is one public parameter an alias expands to, with the
// architecture and variants the image it names serves.
type imageParameter struct {
	path     string
	arch     string // Kubernetes architecture
	variants []string
}

// aliasParameters lists the SSM parameters of an alias for a Kubernetes minor
// version (1.33). Paths follow Amazon's published layout:
//
//	<root>/eks/optimized-ami/<k8s>/amazon-linux-2023/<arch>/<variant>/recommended/image_id
//	<root>/eks/optimized-ami/<k8s>/amazon-linux-2023/<arch>/<variant>/amazon-eks-node-al2023-<arch>-<variant>-<k8s>-<release>/image_id
//	<root>/bottlerocket/aws-k8s-<k8s>[-nvidia]/<arch>/<latest|release without v>/image_id
//
// Bottlerocket's standard x86_64 image carries the Neuron driver, so it also
// serves Trainium and Inferentia types.
func aliasParameters(root, alias, k8s string) ([]imageParameter, error) {
	family, version, _ := strings.Cut(alias, "@")
	latest := version == "" || version == "latest"
	archs := []struct{ aws, kube string }{{"x86_64", "amd64"}, {"arm64", "arm64"}}
	var out []imageParameter
	switch family {
	case "al2023", "al2023-nvidia":
		for _, a := range archs {
			variants := []string{awsv1.VariantStandard, awsv1.VariantNVIDIA, awsv1.VariantNeuron}
			if family == "al2023-nvidia" {
				variants = []string{awsv1.VariantNVIDIA}
			}
			for _, v := range variants {
				if v == awsv1.VariantNeuron && a.kube != "amd64" {
					continue // Neuron devices exist on x86_64 types only
				}
				name := "recommended"
				if !latest {
					name = fmt.Sprintf("amazon-eks-node-al2023-%s-%s-%s-%s", a.aws, v, k8s, version)
				}
				out = append(out, imageParameter{
					path: fmt.Sprintf("%s/eks/optimized-ami/%s/amazon-linux-2023/%s/%s/%s/image_id", root, k8s, a.aws, v, name),
					arch: a.kube, variants: []string{v},
				})
			}
		}
	case "bottlerocket", "bottlerocket-nvidia":
		release := "latest"
		if !latest {
			release = strings.TrimPrefix(version, "v")
		}
		for _, a := range archs {
			if family == "bottlerocket" {
				variants := []string{awsv1.VariantStandard}
				if a.kube == "amd64" {
					variants = append(variants, awsv1.VariantNeuron)
				}
				out = append(out, imageParameter{
					path: fmt.Sprintf("%s/bottlerocket/aws-k8s-%s/%s/%s/image_id", root, k8s, a.aws, release),
					arch: a.kube, variants: variants,
				})
			}
			out = append(out, imageParameter{
				path: fmt.Sprintf("%s/bottlerocket/aws-k8s-%s-nvidia/%s/%s/image_id", root, k8s, a.aws, release),
				arch: a.kube, variants: []string{awsv1.VariantNVIDIA},
			})
		}
	default:
		return nil, fmt.Errorf("unknown alias family %q", family)
	}
	return out, nil
}

// defaultNameOwners are the owners a name term without an owner searches.
var defaultNameOwners = []string{"self", "amazon"}

// imageResolver turns AMI selector terms into images.
type imageResolver struct {
	ec2  EC2API
	ssm  SSMAPI
	root string
}

// errNoKubernetesVersion is wrapped when an alias cannot be resolved because
// the API server's version is unknown.
var errNoKubernetesVersion = errors.New("the cluster's Kubernetes version is unknown")

// resolve returns, for each architecture and variant, the newest image any
// term selects; alias terms resolve the images published for k8s.
func (r imageResolver) resolve(ctx context.Context, terms []awsv1.AMISelectorTerm, k8s string) ([]awsv1.AMI, error) {
	type key struct{ arch, variant string }
	newest := map[key]ec2types.Image{}
	consider := func(img ec2types.Image, arch, variant string) {
		k := key{arch, variant}
		cur, ok := newest[k]
		if !ok || aws.ToString(img.CreationDate) > aws.ToString(cur.CreationDate) ||
			aws.ToString(img.CreationDate) == aws.ToString(cur.CreationDate) && aws.ToString(img.ImageId) > aws.ToString(cur.ImageId) {
			newest[k] = img
		}
	}
	for i, t := range terms {
		what := describeAMITerm(t)
		if t.Alias != "" {
			if k8s == "" {
				return nil, fmt.Errorf("spec.amiSelectorTerms[%d] (%s): %w", i, what, errNoKubernetesVersion)
			}
			imgs, err := r.alias(ctx, t.Alias, k8s)
			if err != nil {
				return nil, fmt.Errorf("spec.amiSelectorTerms[%d] (%s): %w", i, what, err)
			}
			for _, ri := range imgs {
				for _, v := range ri.variants {
					consider(ri.image, ri.arch, v)
				}
			}
			continue
		}
		in := &ec2.DescribeImagesInput{Filters: []ec2types.Filter{{Name: aws.String("state"), Values: []string{"available"}}}}
		switch {
		case t.ID != "":
			in = &ec2.DescribeImagesInput{ImageIds: []string{t.ID}}
		default:
			in.Filters = append(in.Filters, tagFilters(t.Tags)...)
			if t.Name != "" {
				in.Filters = append(in.Filters, ec2types.Filter{Name: aws.String("name"), Values: []string{t.Name}})
			}
			switch {
			case t.Owner != "":
				in.Owners = []string{t.Owner}
			case t.Name != "":
				// Anyone may publish a public image under any name: without
				// an owner, a name matches this account's images and
				// Amazon's, never a stranger's newer look-alike.
				in.Owners = defaultNameOwners
			}
		}
		imgs, err := describeImages(ctx, r.ec2, in)
		if err != nil {
			return nil, fmt.Errorf("spec.amiSelectorTerms[%d] (%s): describing images: %w", i, what, err)
		}
		for _, img := range imgs {
			if arch := kubeArch(img.Architecture); arch != "" {
				consider(img, arch, variantFromName(aws.ToString(img.Name)))
			}
		}
	}
	out := make([]awsv1.AMI, 0, len(newest))
	for k, img := range newest {
		out = append(out, awsv1.AMI{ID: aws.ToString(img.ImageId), Name: aws.ToString(img.Name), Arch: k.arch, Variant: k.variant})
	}
	order := map[string]int{awsv1.VariantStandard: 0, awsv1.VariantNVIDIA: 1, awsv1.VariantNeuron: 2}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Arch != out[j].Arch {
			return out[i].Arch < out[j].Arch
		}
		return order[out[i].Variant] < order[out[j].Variant]
	})
	return out, nil
}

type resolvedImage struct {
	image    ec2types.Image
	arch     string
	variants []string
}

// alias reads the alias's SSM parameters and describes the images they name.
// A parameter a region does not publish is skipped; none at all is an error
// naming the paths tried.
func (r imageResolver) alias(ctx context.Context, alias, k8s string) ([]resolvedImage, error) {
	params, err := aliasParameters(r.root, alias, k8s)
	if err != nil {
		return nil, err
	}
	byID := map[string][]imageParameter{}
	var missing []string
	for _, p := range params {
		out, err := r.ssm.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(p.path)})
		switch {
		case isCode(err, codeParameterNotFound):
			missing = append(missing, p.path)
			continue
		case err != nil:
			return nil, fmt.Errorf("reading SSM parameter %s: %w", p.path, err)
		}
		id := aws.ToString(out.Parameter.Value)
		byID[id] = append(byID[id], p)
	}
	if len(byID) == 0 {
		return nil, fmt.Errorf("%w: no image for Kubernetes %s is published (SSM parameters not found: %s)", errNoImage, k8s, strings.Join(missing, ", "))
	}
	ids := make([]string, 0, len(byID))
	for id := range byID {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	imgs, err := describeImages(ctx, r.ec2, &ec2.DescribeImagesInput{ImageIds: ids})
	if err != nil {
		return nil, fmt.Errorf("describing images %v: %w", ids, err)
	}
	var out []resolvedImage
	for _, img := range imgs {
		if img.State != "" && img.State != ec2types.ImageStateAvailable {
			continue
		}
		for _, p := range byID[aws.ToString(img.ImageId)] {
			out = append(out, resolvedImage{image: img, arch: p.arch, variants: p.variants})
		}
	}
	return out, nil
}

// errNoImage is wrapped when an alias names no published image.
var errNoImage = errors.New("no image")

func describeImages(ctx context.Context, api EC2API, in *ec2.DescribeImagesInput) ([]ec2types.Image, error) {
	var out []ec2types.Image
	pages := ec2.NewDescribeImagesPaginator(api, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, page.Images...)
	}
	return out, nil
}

// variantFromName guesses the accelerator support of a user's image from its
// name, as Amazon names its own: nvidia or neuron in the name.
func variantFromName(name string) string {
	n := strings.ToLower(name)
	switch {
	case strings.Contains(n, "nvidia"):
		return awsv1.VariantNVIDIA
	case strings.Contains(n, "neuron"):
		return awsv1.VariantNeuron
	}
	return awsv1.VariantStandard
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

func describeAMITerm(t awsv1.AMISelectorTerm) string {
	switch {
	case t.Alias != "":
		return "alias " + t.Alias
	case t.ID != "":
		return "id " + t.ID
	}
	var parts []string
	if len(t.Tags) > 0 {
		parts = append(parts, describeTerm("", t.Tags))
	}
	if t.Name != "" {
		parts = append(parts, "name "+t.Name)
	}
	if t.Owner != "" {
		parts = append(parts, "owner "+t.Owner)
	}
	return strings.Join(parts, " ")
}

// hasAlias reports whether the terms resolve through an alias.
func hasAlias(terms []awsv1.AMISelectorTerm) bool {
	return slices.ContainsFunc(terms, func(t awsv1.AMISelectorTerm) bool { return t.Alias != "" })
}
