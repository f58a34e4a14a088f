package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pricing"
	azureprovider "github.com/stowage-k8s/stowage/providers/azure"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure/controllers/nodeclass"
)

// The Azure catalog lists live from --endpoint (https://management.azure.com
// for Azure itself, or a local fake) and serves the built-in catalog otherwise.
func init() { catalogSources[azureprovider.Name] = azureCatalog }

// envSubscription names the subscription `stowage catalog` lists live from.
const envSubscription = "AZURE_SUBSCRIPTION_ID"

func azureCatalog(ctx context.Context, region, endpoint string) (*pricing.Catalog, error) {
	if endpoint == "" {
		return builtinCatalog(azureprovider.Name, region)
	}
	sub := os.Getenv(envSubscription)
	if sub == "" {
		return nil, usageError("--endpoint", "listing Azure VM sizes live needs %s in the environment (the subscription whose sizes and restrictions to read)", envSubscription)
	}
	clients, err := azureprovider.NewClients(azureprovider.ClientConfig{SubscriptionID: sub, Endpoint: endpoint})
	if err != nil {
		return nil, err
	}
	p, err := azureprovider.New(azureprovider.Options{ClusterName: "catalog", SubscriptionID: sub, ResourceGroup: "catalog", Location: region,
		VMs: clients.VMs, NICs: clients.NICs, SKUs: clients.SKUs, Prices: clients.Prices})
	if err != nil {
		return nil, err
	}
	return p.Catalog(ctx)
}

// azureFlags are the controller's Azure settings, bound by addAzureFlags.
type azureFlags struct {
	region          string
	subscriptionID  string
	resourceGroup   string
	endpoint        string
	clusterEndpoint string
	clusterCABundle string
	bootstrapToken  string
	clusterDNS      string
	kubeletIdentity string
	vmPollInterval  time.Duration
}

// addAzureFlags adds the Azure settings to the controller's flags.
func addAzureFlags(fs *pflag.FlagSet, f *azureFlags) {
	fs.StringVar(&f.region, "azure-region", "", "with --cloud-provider=azure: the cluster's location, e.g. eastus (required)")
	fs.StringVar(&f.subscriptionID, "azure-subscription-id", "", "with --cloud-provider=azure: the subscription VMs are bought in (required)")
	fs.StringVar(&f.resourceGroup, "azure-resource-group", "", "with --cloud-provider=azure: the AKS node resource group (MC_...) VMs are launched into (required)")
	fs.StringVar(&f.endpoint, "azure-endpoint", "", "with --cloud-provider=azure: send every Azure call here instead (local fakes)")
	fs.StringVar(&f.clusterEndpoint, "azure-cluster-endpoint", "", "with --cloud-provider=azure: API server URL nodes join (required)")
	fs.StringVar(&f.clusterCABundle, "azure-cluster-ca-bundle", "", "with --cloud-provider=azure: base64 cluster CA certificate for nodes (required)")
	fs.StringVar(&f.bootstrapToken, "azure-bootstrap-token", "", "with --cloud-provider=azure: bootstrap token nodes join with; set it from a Secret as STOWAGE_AZURE_BOOTSTRAP_TOKEN (required)")
	fs.StringVar(&f.clusterDNS, "azure-cluster-dns", azureprovider.DefaultClusterDNS, "with --cloud-provider=azure: the cluster DNS service IP nodes use")
	fs.StringVar(&f.kubeletIdentity, "azure-kubelet-identity", "", "with --cloud-provider=azure: resource ID of the AKS kubelet identity VMs get (for ACR pulls)")
	fs.DurationVar(&f.vmPollInterval, "azure-vm-poll-interval", azureprovider.DefaultVMPollInterval, "with --cloud-provider=azure: how often VMs are listed to catch evictions whose notice never came")
}

// azureOperatorOptions registers the Azure provider, the AKSNodeClass
// controller and the Node-condition interruption source with the operator.
// Call it only when --cloud-provider=azure: the controllers watch
// AKSNodeClasses, whose CRD other clouds do not need.
func azureOperatorOptions(_ context.Context, f azureFlags, interruption bool) ([]operator.Option, error) {
	for flag, v := range map[string]string{"--azure-region": f.region, "--azure-subscription-id": f.subscriptionID,
		"--azure-resource-group": f.resourceGroup} {
		if v == "" {
			return nil, usageError(flag, "required with --cloud-provider=azure")
		}
	}
	for flag, v := range map[string]string{"--azure-cluster-endpoint": f.clusterEndpoint, "--azure-cluster-ca-bundle": f.clusterCABundle,
		"--azure-bootstrap-token": f.bootstrapToken} {
		if v == "" {
			return nil, usageError(flag, "required with --cloud-provider=azure: nodes need it to join the cluster (see docs/install-azure.md)")
		}
	}
	clients, err := azureprovider.NewClients(azureprovider.ClientConfig{SubscriptionID: f.subscriptionID, Endpoint: f.endpoint})
	if err != nil {
		return nil, err
	}
	// With --interruption=false nothing would read the source's events, and
	// its controller would requeue every interrupted node each second.
	var source *azureprovider.InterruptionSource
	if interruption {
		source = azureprovider.NewInterruptionSource(azureprovider.InterruptionOptions{
			ResourceGroup: f.resourceGroup, VMs: clients.VMs, PollInterval: f.vmPollInterval,
		})
	}
	factory := func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
		// The operator's scheme is shared by its manager and direct client;
		// the provider and the controllers read AKSNodeClasses through them.
		if err := azv1.AddToScheme(d.Client.Scheme()); err != nil {
			return nil, fmt.Errorf("adding %s to the scheme: %w", azv1.Group, err)
		}
		if source != nil {
			source.SetClusterName(d.ClusterName)
		}
		return azureprovider.New(azureprovider.Options{
			ClusterName: d.ClusterName, SubscriptionID: f.subscriptionID, ResourceGroup: f.resourceGroup, Location: f.region,
			VMs: clients.VMs, NICs: clients.NICs, Disks: clients.Disks, SKUs: clients.SKUs, PPGs: clients.PPGs,
			Reservations: clients.Reservations, Prices: clients.Prices, Kube: d.Client, Clock: d.Clock, Registerer: crmetrics.Registry,
			APIServer: f.clusterEndpoint, CABundle: f.clusterCABundle, BootstrapToken: f.bootstrapToken, ClusterDNS: f.clusterDNS,
			KubeletIdentity: f.kubeletIdentity, Interruption: source,
		})
	}
	out := []operator.Option{
		operator.WithProvider(azureprovider.Name, factory),
		operator.WithController(nodeclass.NewController(nodeclass.Deps{Images: clients.GalleryImages, Subnets: clients.Subnets,
			ReservationGroups: clients.ReservationGroups, PPGs: clients.PPGs, Location: f.region})),
	}
	if source != nil {
		out = append(out, operator.WithController(source))
	}
	return out, nil
}
