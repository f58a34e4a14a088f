package pricing

import (
	"strings"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// azureSizePrefix is on every Azure VM size name; users often leave it off.
const azureSizePrefix = "Standard_"

// Lookup finds an instance type by name. For Azure the "Standard_" prefix may
// be left off ("ND96isr_H100_v5"). The result points into c.
func Lookup(c *Catalog, name string) (*cloudprovider.InstanceType, bool) {
	if c == nil {
		return nil, false
	}
	alt := ""
	if c.Cloud == "azure" && !strings.HasPrefix(name, azureSizePrefix) {
		alt = azureSizePrefix + name
	}
	for _, it := range c.InstanceTypes {
		if it.Name == name || alt != "" && it.Name == alt {
			return it, true
		}
	}
	return nil, false
}

// LookupOffering finds the offering for one capacity pool.
func LookupOffering(c *Catalog, id cloudprovider.OfferingID) (cloudprovider.Offering, bool) {
	it, ok := Lookup(c, id.InstanceType)
	if !ok {
		return cloudprovider.Offering{}, false
	}
	for _, o := range it.Offerings {
		if o.Zone == id.Zone && o.CapacityType == id.CapacityType {
			return o, true
		}
	}
	return cloudprovider.Offering{}, false
}
