package catalog

import (
	"maps"
	"slices"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// InstanceTypes builds the live types a provider read from its cloud, as
// pricing builds a built-in catalog's (source names them in errors), with
// f.Zones set to the types' zones, and returns them without offerings: the
// provider's price book adds those. A file without types gives none.
func InstanceTypes(source string, f pricing.File) ([]*cloudprovider.InstanceType, error) {
	if len(f.Types) == 0 {
		return nil, nil
	}
	zones := map[string]bool{}
	for _, t := range f.Types {
		for _, z := range t.Zones {
			zones[z] = true
		}
	}
	f.Zones = slices.Sorted(maps.Keys(zones))
	c, err := pricing.FromFile(source, &f)
	if err != nil {
		return nil, err
	}
	for _, it := range c.InstanceTypes {
		it.Offerings = nil
	}
	return c.InstanceTypes, nil
}
