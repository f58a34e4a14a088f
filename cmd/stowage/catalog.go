package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// catalogSource returns one cloud region's catalog. endpoint is empty unless
// the user passed --endpoint to ask for a live listing.
type catalogSource func(ctx context.Context, region, endpoint string) (*pricing.Catalog, error)

// catalogSources maps a cloud name to where its catalogs come from. By default
// every cloud serves the built-in catalogs; a provider that can list live
// replaces its entry from its own file's init function and falls back to
// builtinCatalog when endpoint is empty:
//
//	func init() { catalogSources["aws"] = awsCatalog }
var catalogSources = map[string]catalogSource{
	"aws":   builtinSource("aws"),
	"gcp":   builtinSource("gcp"),
	"azure": builtinSource("azure"),
}

const defaultCatalog = "aws/us-east-1"

func builtinSource(cloud string) catalogSource {
	return func(_ context.Context, region, endpoint string) (*pricing.Catalog, error) {
		if endpoint != "" {
			return nil, usageError("--endpoint", "live listing is not available for %s; omit it to use the built-in catalog", cloud)
		}
		return builtinCatalog(cloud, region)
	}
}

// builtinCatalog loads the embedded catalog for cloud and region.
func builtinCatalog(cloud, region string) (*pricing.Catalog, error) {
	return pricing.Load(cloud + "/" + region)
}

// catalogOptions are the flags that choose a catalog, shared by simulate and catalog.
type catalogOptions struct {
	catalog  string
	cloud    string
	region   string
	endpoint string
}

func (o *catalogOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.catalog, "catalog", "", fmt.Sprintf("catalog as cloud/region, one of %s (default %s)", strings.Join(pricing.Names(), ", "), defaultCatalog))
	fs.StringVar(&o.cloud, "cloud", "", "cloud of the catalog (aws, gcp, azure); with --region, an alternative to --catalog")
	fs.StringVar(&o.region, "region", "", "region of the catalog; with --cloud")
	fs.StringVar(&o.endpoint, "endpoint", "", "list instance types and prices live from this endpoint, for clouds that support it")
}

// load resolves the flags to a catalog.
func (o *catalogOptions) load(ctx context.Context) (*pricing.Catalog, error) {
	cloud, region := o.cloud, o.region
	switch {
	case o.catalog != "" && (cloud != "" || region != ""):
		return nil, usageError("--catalog", "use either --catalog or --cloud and --region, not both")
	case o.catalog != "":
		var ok bool
		cloud, region, ok = strings.Cut(o.catalog, "/")
		if !ok || cloud == "" || region == "" {
			return nil, usageError("--catalog", "want cloud/region such as %s, got %q", defaultCatalog, o.catalog)
		}
	case cloud == "" && region == "":
		cloud, region, _ = strings.Cut(defaultCatalog, "/")
	case cloud == "":
		return nil, usageError("--cloud", "required with --region")
	case region == "":
		return nil, usageError("--region", "required with --cloud")
	}
	source, ok := catalogSources[cloud]
	if !ok {
		return nil, usageError("--cloud", "unknown cloud %q: want one of %s", cloud, strings.Join(slices.Sorted(maps.Keys(catalogSources)), ", "))
	}
	c, err := source(ctx, region, o.endpoint)
	if err != nil {
		return nil, fmt.Errorf("loading catalog %s/%s: %w", cloud, region, err)
	}
	return c, nil
}

func init() { subcommands = append(subcommands, newCatalogCommand) }

func newCatalogCommand() *cobra.Command {
	var (
		catalog catalogOptions
		gpuOnly bool
		output  string
	)
	cmd := &cobra.Command{
		Use:   "catalog",
		Short: "List a cloud region's instance types with their GPUs and prices",
		Example: `  stowage catalog --gpu
  stowage catalog --cloud gcp --region us-central1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			c, err := catalog.load(cmd.Context())
			if err != nil {
				return err
			}
			rows := catalogRows(c, gpuOnly)
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			return writeCatalogTable(cmd.OutOrStdout(), c, rows)
		},
	}
	catalog.addFlags(cmd.Flags())
	cmd.Flags().BoolVar(&gpuOnly, "gpu", false, "list only types with accelerators")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func checkOutput(output string) error {
	if output != "table" && output != "json" {
		return usageError("-o/--output", "want table or json, got %q", output)
	}
	return nil
}

// catalogRow is one instance type as `stowage catalog` shows it.
type catalogRow struct {
	Name      string   `json:"name"`
	VCPU      int64    `json:"vcpu"`
	MemoryMiB int64    `json:"memoryMiB"`
	GPU       *gpuInfo `json:"gpu,omitempty"`
	// Prices are the cheapest available offering's, nil when the type is
	// not sold that way (or nowhere available).
	OnDemandPerHour *float64 `json:"onDemandPerHour"`
	SpotPerHour     *float64 `json:"spotPerHour"`
	Zones           []string `json:"zones"`
	// Capacity, Overhead and Allocatable (capacity less overhead) are what
	// the solver packs against, so a comparison harness needs no Go.
	Capacity    corev1.ResourceList `json:"capacity"`
	Overhead    catalogOverhead     `json:"overhead"`
	Allocatable corev1.ResourceList `json:"allocatable"`
	Labels      map[string]string   `json:"labels"`
	// Offerings are every zone and capacity type the type is sold as.
	Offerings []catalogOffering `json:"offerings"`
}

type catalogOverhead struct {
	KubeReserved      corev1.ResourceList `json:"kubeReserved,omitempty"`
	SystemReserved    corev1.ResourceList `json:"systemReserved,omitempty"`
	EvictionThreshold corev1.ResourceList `json:"evictionThreshold,omitempty"`
}

type catalogOffering struct {
	Zone         string  `json:"zone"`
	CapacityType string  `json:"capacityType"`
	PricePerHour float64 `json:"pricePerHour"`
	Available    bool    `json:"available"`
}

type gpuInfo struct {
	Manufacturer string   `json:"manufacturer"`
	Name         string   `json:"name"`
	Count        int      `json:"count"`
	MemoryMiB    int64    `json:"memoryMiB"`
	MIGProfiles  []string `json:"migProfiles,omitempty"`
}

func catalogRows(c *pricing.Catalog, gpuOnly bool) []catalogRow {
	rows := []catalogRow{}
	for _, it := range c.InstanceTypes {
		if gpuOnly && it.GPU == nil {
			continue
		}
		cpu, mem := it.Capacity[v1.ResourceCPU], it.Capacity[v1.ResourceMemory]
		row := catalogRow{Name: it.Name, VCPU: cpu.Value(), MemoryMiB: mem.Value() >> 20, Zones: []string{},
			Capacity: it.Capacity, Allocatable: it.Allocatable(), Labels: it.Labels, Offerings: []catalogOffering{},
			Overhead: catalogOverhead{KubeReserved: it.Overhead.KubeReserved, SystemReserved: it.Overhead.SystemReserved, EvictionThreshold: it.Overhead.EvictionThreshold}}
		if g := it.GPU; g != nil {
			row.GPU = &gpuInfo{Manufacturer: g.Manufacturer, Name: g.Name, Count: g.Count, MemoryMiB: g.MemoryMiB}
			row.GPU.MIGProfiles = slices.Sorted(maps.Keys(g.MIGProfiles))
		}
		row.OnDemandPerHour = cheapest(it, v1.CapacityTypeOnDemand)
		row.SpotPerHour = cheapest(it, v1.CapacityTypeSpot)
		for _, o := range it.Offerings {
			if !slices.Contains(row.Zones, o.Zone) {
				row.Zones = append(row.Zones, o.Zone)
			}
			row.Offerings = append(row.Offerings, catalogOffering{Zone: o.Zone, CapacityType: o.CapacityType, PricePerHour: o.PricePerHour, Available: o.Available})
		}
		slices.Sort(row.Zones)
		slices.SortFunc(row.Offerings, func(a, b catalogOffering) int {
			return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.CapacityType, b.CapacityType))
		})
		rows = append(rows, row)
	}
	return rows
}

// cheapest is the lowest price among the type's available offerings of capacityType:
// the solver never buys an unavailable one, so its price would mislead.
func cheapest(it *cloudprovider.InstanceType, capacityType string) *float64 {
	best := math.Inf(1)
	for _, o := range it.Offerings {
		if o.Available && o.CapacityType == capacityType && o.PricePerHour < best {
			best = o.PricePerHour
		}
	}
	if math.IsInf(best, 1) {
		return nil
	}
	return &best
}

func writeCatalogTable(w io.Writer, c *pricing.Catalog, rows []catalogRow) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVCPU\tMEMORY\tGPUS\tGPU MEMORY\tON-DEMAND $/H\tSPOT $/H\tZONES")
	for _, r := range rows {
		gpus, gpuMem := "-", "-"
		if r.GPU != nil {
			gpus = fmt.Sprintf("%d×%s", r.GPU.Count, r.GPU.Name)
			gpuMem = fmt.Sprintf("%s each", mib(r.GPU.MemoryMiB))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\n", r.Name, r.VCPU, mib(r.MemoryMiB), gpus, gpuMem, price(r.OnDemandPerHour), price(r.SpotPerHour), len(r.Zones))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d instance types in %s/%s (prices: cheapest zone where available)\n", len(rows), c.Cloud, c.Region)
	for _, s := range c.Sources {
		if err == nil {
			_, err = fmt.Fprintf(w, "%s: %s (%s)\n", s.What, s.From, s.Date)
		}
	}
	return err
}

func mib(n int64) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d GiB", n/1024)
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/1024)
}

func price(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.4f", *p)
}
