package main

import (
	"context"
	"fmt"
	"os"

	"cloud.google.com/go/compute/metadata"
	"github.com/spf13/pflag"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pricing"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/gcp/controllers/csr"
	"github.com/stowage-k8s/stowage/providers/gcp/controllers/nodeclass"
)

// The GCP catalog lists live from --endpoint and serves the built-in
// catalog otherwise.
func init() { catalogSources[gcpprovider.Name] = gcpCatalog }

// gcpProjectEnv name the project for a live catalog, in this order.
var gcpProjectEnv = []string{operator.EnvName("gcp-project"), "GOOGLE_CLOUD_PROJECT", "CLOUDSDK_CORE_PROJECT"}

func gcpCatalog(ctx context.Context, region, endpoint string) (*pricing.Catalog, error) {
	if endpoint == "" {
		return builtinCatalog(gcpprovider.Name, region)
	}
	project := ""
	for _, env := range gcpProjectEnv {
		if project = os.Getenv(env); project != "" {
			break
		}
	}
	if project == "" {
		return nil, usageError("--endpoint", "a live GCP catalog needs the project: set %s", gcpProjectEnv[0])
	}
	clients, err := gcpprovider.NewClients(ctx, gcpprovider.ClientConfig{Endpoint: endpoint})
	if err != nil {
		return nil, err
	}
	defer clients.Close()
	p, err := gcpprovider.New(gcpprovider.Options{ClusterName: "catalog", Project: project, Region: region, Clients: clients})
	if err != nil {
		return nil, err
	}
	return p.Catalog(ctx)
}

// metadataProject is the project the metadata server reports, or "" off
// Google Cloud. A variable so tests never reach for the metadata address.
var metadataProject = func(ctx context.Context) string {
	if !metadata.OnGCEWithContext(ctx) {
		return ""
	}
	p, err := metadata.ProjectIDWithContext(ctx)
	if err != nil {
		return ""
	}
	return p
}

// gcpFlags are the controller's GCP settings, bound by addGCPFlags.
type gcpFlags struct {
	project  string
	region   string
	cluster  string
	location string
	endpoint string
	// approveCSRs runs the kubelet CSR approver for Stowage's own VMs.
	approveCSRs bool
}

// addGCPFlags adds the GCP settings to the controller's flags.
func addGCPFlags(fs *pflag.FlagSet, f *gcpFlags) {
	fs.StringVar(&f.project, "gcp-project", "", "with --cloud-provider=gcp: the project the GKE cluster and its VMs are in (default: the metadata server's)")
	fs.StringVar(&f.region, "gcp-region", "", "with --cloud-provider=gcp: the cluster's region (required)")
	fs.StringVar(&f.cluster, "gcp-cluster", "", "with --cloud-provider=gcp: the GKE cluster's name (default: --cluster-name)")
	fs.StringVar(&f.location, "gcp-location", "", "with --cloud-provider=gcp: the GKE cluster's location, a region or a zone (default: --gcp-region)")
	fs.BoolVar(&f.approveCSRs, "gcp-approve-kubelet-csrs", false, "with --cloud-provider=gcp: approve kubelet certificate requests whose node name and addresses match a VM Stowage launched (for clusters where GKE does not approve them)")
	fs.StringVar(&f.endpoint, "gcp-endpoint", "", "with --cloud-provider=gcp: send every Google Cloud call here instead (a private endpoint, or a local fake)")
}

// gcpOperatorOptions registers the GCP provider and the GCENodeClass
// controller with the operator. Call it only when --cloud-provider=gcp.
func gcpOperatorOptions(ctx context.Context, clusterName string, f gcpFlags) ([]operator.Option, error) {
	if f.project == "" {
		f.project = metadataProject(ctx)
	}
	if f.project == "" {
		return nil, usageError("--gcp-project", "required with --cloud-provider=gcp outside Google Cloud")
	}
	if f.region == "" {
		return nil, usageError("--gcp-region", "required with --cloud-provider=gcp")
	}
	if f.cluster == "" {
		f.cluster = clusterName
	}
	clients, err := gcpprovider.NewClients(ctx, gcpprovider.ClientConfig{Endpoint: f.endpoint})
	if err != nil {
		return nil, err
	}
	machines := &providerMachines{}
	factory := func(ctx context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
		if err := gcpv1.AddToScheme(d.Client.Scheme()); err != nil {
			return nil, fmt.Errorf("adding %s to the scheme: %w", gcpv1.Group, err)
		}
		p, err := gcpprovider.New(gcpprovider.Options{
			ClusterName: d.ClusterName, Project: f.project, Region: f.region, Clients: clients, Kube: d.Client, Clock: d.Clock,
			Registerer: ctrlmetrics.Registry,
		})
		machines.p = p
		return p, err
	}
	opts := []operator.Option{
		operator.WithProvider(gcpprovider.Name, factory),
		operator.WithController(nodeclass.NewController(nodeclass.Deps{
			Clients: clients, Project: f.project, Region: f.region, Cluster: f.cluster, Location: f.location,
		})),
	}
	if f.approveCSRs {
		opts = append(opts, operator.WithController(&csr.Controller{Machines: machines}))
	}
	return opts, nil
}

// providerMachines hands the provider, built later by the operator, to the
// CSR approver.
type providerMachines struct{ p *gcpprovider.Provider }

func (m *providerMachines) OwnMachine(ctx context.Context, name string) (*gcpprovider.Machine, error) {
	if m.p == nil {
		return nil, fmt.Errorf("the gcp provider is not built yet")
	}
	return m.p.OwnMachine(ctx, name)
}
