package nodeclass

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"

	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
)

// CommunityGalleryImageVersionsAPI resolves AKS node image versions.
type CommunityGalleryImageVersionsAPI interface {
	Get(ctx context.Context, location, gallery, image, version string, options *armcompute.CommunityGalleryImageVersionsClientGetOptions) (armcompute.CommunityGalleryImageVersionsClientGetResponse, error)
	NewListPager(location, gallery, image string, options *armcompute.CommunityGalleryImageVersionsClientListOptions) *runtime.Pager[armcompute.CommunityGalleryImageVersionsClientListResponse]
}

// SubnetsAPI checks the node class's subnet.
type SubnetsAPI interface {
	Get(ctx context.Context, resourceGroup, vnet, subnet string, options *armnetwork.SubnetsClientGetOptions) (armnetwork.SubnetsClientGetResponse, error)
}

// CapacityReservationGroupsAPI checks the node class's capacity reservation group.
type CapacityReservationGroupsAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armcompute.CapacityReservationGroupsClientGetOptions) (armcompute.CapacityReservationGroupsClientGetResponse, error)
}

// ProximityPlacementGroupsAPI checks the node class's proximity placement group.
type ProximityPlacementGroupsAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armcompute.ProximityPlacementGroupsClientGetOptions) (armcompute.ProximityPlacementGroupsClientGetResponse, error)
}

var (
	_ CommunityGalleryImageVersionsAPI = (*armcompute.CommunityGalleryImageVersionsClient)(nil)
	_ SubnetsAPI                       = (*armnetwork.SubnetsClient)(nil)
	_ CapacityReservationGroupsAPI     = (*armcompute.CapacityReservationGroupsClient)(nil)
	_ ProximityPlacementGroupsAPI      = (*armcompute.ProximityPlacementGroupsClient)(nil)
)

// Gallery is where one image family's images are published.
type Gallery struct {
	// Name is the community gallery's public name.
	Name string
	// Images maps an architecture to the gallery image definition.
	Images map[string]string
}

// The AKS community galleries (AKS publishes its node images there, weekly).
const (
	AKSUbuntuGallery     = "AKSUbuntu-38d80f77-467a-481f-a8d4-09b6d4220bd2"
	AKSAzureLinuxGallery = "AKSAzureLinux-f7c7cda5-1c9a-4bdc-a222-9614c968580b"
)

// Galleries maps each image family to its gallery and Generation 2 images.
var Galleries = map[string]Gallery{
	azv1.ImageFamilyUbuntu2204: {Name: AKSUbuntuGallery, Images: map[string]string{"amd64": "2204gen2containerd", "arm64": "2204gen2arm64containerd"}},
	azv1.ImageFamilyUbuntu2404: {Name: AKSUbuntuGallery, Images: map[string]string{"amd64": "2404gen2containerd", "arm64": "2404gen2arm64containerd"}},
	azv1.ImageFamilyAzureLinux: {Name: AKSAzureLinuxGallery, Images: map[string]string{"amd64": "V3gen2", "arm64": "V3gen2arm64"}},
}

// ImageID is a community gallery image version's resource ID.
func ImageID(gallery, image, version string) string {
	return fmt.Sprintf("/CommunityGalleries/%s/Images/%s/Versions/%s", gallery, image, version)
}

// errNotFound marks a lookup that found nothing: a spec error, not an outage.
var errNotFound = errors.New("not found")

func isNotFound(err error) bool {
	var re *azcore.ResponseError
	return errors.As(err, &re) && (re.StatusCode == 404 || re.ErrorCode == "NotFound" || re.ErrorCode == "ResourceNotFound")
}

// resolveImages finds the family's pinned or newest version for each
// architecture. amd64 must exist; arm64 is optional (Arm sizes are then not
// offered).
func resolveImages(ctx context.Context, api CommunityGalleryImageVersionsAPI, location string, sel azv1.ImageSelector, now time.Time) ([]azv1.NodeImage, error) {
	family := sel.Family
	if family == "" {
		family = azv1.ImageFamilyUbuntu2204
	}
	g, ok := Galleries[family]
	if !ok {
		return nil, fmt.Errorf("%w: unknown image family %q", errNotFound, family)
	}
	var out []azv1.NodeImage
	for _, arch := range []string{"amd64", "arm64"} {
		image := g.Images[arch]
		version, id, err := resolveVersion(ctx, api, location, g.Name, image, sel.Version, now)
		switch {
		case errors.Is(err, errNotFound) && arch != "amd64":
			continue
		case errors.Is(err, errNotFound):
			what := "no version"
			if sel.Version != "" {
				what = "version " + sel.Version
			}
			return nil, fmt.Errorf("%w: %s of %s image %s in gallery %s, location %s", errNotFound, what, family, image, g.Name, location)
		case err != nil:
			return nil, fmt.Errorf("resolving %s image %s: %w", family, image, err)
		}
		out = append(out, azv1.NodeImage{ID: id, Arch: arch, Version: version})
	}
	return out, nil
}

func resolveVersion(ctx context.Context, api CommunityGalleryImageVersionsAPI, location, gallery, image, pinned string, now time.Time) (string, string, error) {
	if pinned != "" {
		got, err := api.Get(ctx, location, gallery, image, pinned, nil)
		if isNotFound(err) {
			return "", "", errNotFound
		}
		if err != nil {
			return "", "", err
		}
		return pinned, uniqueID(got.CommunityGalleryImageVersion, gallery, image, pinned), nil
	}
	var best *armcompute.CommunityGalleryImageVersion
	pager := api.NewListPager(location, gallery, image, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if isNotFound(err) {
			return "", "", errNotFound
		}
		if err != nil {
			return "", "", err
		}
		for _, v := range page.Value {
			if v == nil || v.Name == nil {
				continue
			}
			if p := v.Properties; p != nil && (p.ExcludeFromLatest != nil && *p.ExcludeFromLatest ||
				p.EndOfLifeDate != nil && !p.EndOfLifeDate.After(now)) {
				continue
			}
			if best == nil || compareVersions(*v.Name, *best.Name) > 0 {
				best = v
			}
		}
	}
	if best == nil {
		return "", "", errNotFound
	}
	return *best.Name, uniqueID(*best, gallery, image, *best.Name), nil
}

func uniqueID(v armcompute.CommunityGalleryImageVersion, gallery, image, version string) string {
	if v.Identifier != nil && v.Identifier.UniqueID != nil && *v.Identifier.UniqueID != "" {
		return *v.Identifier.UniqueID
	}
	return ImageID(gallery, image, version)
}

// compareVersions orders dotted numeric versions such as 202511.03.0.
func compareVersions(a, b string) int {
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(as), len(bs)) {
		var x, y int
		if i < len(as) {
			x, _ = strconv.Atoi(as[i])
		}
		if i < len(bs) {
			y, _ = strconv.Atoi(bs[i])
		}
		if x != y {
			return x - y
		}
	}
	return strings.Compare(a, b)
}

// checkSubnet reads the subnet the node class names.
func checkSubnet(ctx context.Context, api SubnetsAPI, id string) (string, error) {
	rid, err := arm.ParseResourceID(id)
	if err != nil || rid.Parent == nil {
		return "", fmt.Errorf("%w: spec.subnetID %q is not a subnet resource ID", errNotFound, id)
	}
	got, err := api.Get(ctx, rid.ResourceGroupName, rid.Parent.Name, rid.Name, nil)
	if isNotFound(err) {
		return "", fmt.Errorf("%w: subnet %s of virtual network %s in resource group %s", errNotFound, rid.Name, rid.Parent.Name, rid.ResourceGroupName)
	}
	if err != nil {
		return "", fmt.Errorf("reading subnet %s: %w", id, err)
	}
	prefix := ""
	if got.Properties != nil {
		prefix = deref(got.Properties.AddressPrefix)
		if prefix == "" && len(got.Properties.AddressPrefixes) > 0 {
			prefix = deref(got.Properties.AddressPrefixes[0])
		}
	}
	return prefix, nil
}

func checkGroup(ctx context.Context, id, kind string, get func(ctx context.Context, rg, name string) error) error {
	rid, err := arm.ParseResourceID(id)
	if err != nil {
		return fmt.Errorf("%w: %s %q is not a resource ID", errNotFound, kind, id)
	}
	if err := get(ctx, rid.ResourceGroupName, rid.Name); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%w: %s %s in resource group %s", errNotFound, kind, rid.Name, rid.ResourceGroupName)
		}
		return fmt.Errorf("reading %s %s: %w", kind, rid.Name, err)
	}
	return nil
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
