// Package pricing holds Stowage's built-in instance catalogs and price books
// for AWS, GCP and Azure: data kept as embedded JSON with its source and date,
// and loaders that turn it into cloudprovider.InstanceTypes. Providers use it
// as the offline fallback when live price APIs cannot be reached.
package pricing

import (
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// Catalog is one cloud region's instance types with their offerings.
type Catalog struct {
	Cloud  string // "aws", "gcp", "azure"
	Region string
	Zones  []string
	// InstanceTypes each carry offerings for every zone they are sold in and
	// for spot and on-demand (reserved offerings come from reservations, not
	// from the catalog).
	InstanceTypes []*cloudprovider.InstanceType
	// Sources says where the specs and each kind of price came from, and when.
	Sources []Source
}

// Source is the provenance of one part of a catalog.
type Source struct {
	What string // "specs", "on-demand prices", "spot prices", ...
	From string // a URL or a description of the public data
	Date string // YYYY-MM-DD the data was taken
}

// Names lists the built-in catalogs, e.g. "aws/us-east-1".
func Names() []string { return []string{"aws/us-east-1", "gcp/us-central1", "azure/eastus"} }

// Load returns a fresh copy of the named built-in catalog ("aws/us-east-1"),
// safe for the caller to modify.
func Load(name string) (*Catalog, error) {
	return load(name)
}
