package azure

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
)

// Public Azure endpoints: Resource Manager and the Retail Prices API (no
// authentication).
const (
	PublicARMEndpoint    = "https://management.azure.com"
	PublicPricesEndpoint = "https://prices.azure.com"
)

// ClientConfig says where the Azure clients talk to and as whom.
type ClientConfig struct {
	SubscriptionID string
	// Endpoint replaces the Azure Resource Manager endpoint. Any endpoint but
	// the public one is a local fake that serves the Retail Prices API too;
	// without AZURE_CLIENT_ID in the environment a fake credential is used
	// for it.
	Endpoint string
	// PricesEndpoint overrides where Retail Prices are read.
	PricesEndpoint string
	// Credential defaults to azidentity's DefaultAzureCredential, which picks
	// up AKS Workload Identity from the environment the webhook injects.
	Credential azcore.TokenCredential
	// Transport sends every request in-process instead (tests).
	Transport policy.Transporter
}

// Clients are the SDK clients the provider, its controllers and the CLI use.
type Clients struct {
	VMs               *armcompute.VirtualMachinesClient
	NICs              *armnetwork.InterfacesClient
	Disks             *armcompute.DisksClient
	SKUs              *armcompute.ResourceSKUsClient
	PPGs              *armcompute.ProximityPlacementGroupsClient
	Reservations      *armcompute.CapacityReservationsClient
	ReservationGroups *armcompute.CapacityReservationGroupsClient
	GalleryImages     *armcompute.CommunityGalleryImageVersionsClient
	Subnets           *armnetwork.SubnetsClient
	Prices            *RetailPrices
}

// NewClients builds the clients.
func NewClients(cc ClientConfig) (*Clients, error) {
	if cc.SubscriptionID == "" {
		return nil, fmt.Errorf("%w: subscription ID is required", ErrInvalidOptions)
	}
	opts := &arm.ClientOptions{}
	prices := PublicPricesEndpoint
	httpClient := &http.Client{Timeout: time.Minute}
	cred := cc.Credential
	endpoint := strings.TrimRight(cc.Endpoint, "/")
	local := (endpoint != "" && !strings.EqualFold(endpoint, PublicARMEndpoint)) || cc.Transport != nil
	if local && endpoint != "" {
		opts.Cloud = cloud.Configuration{
			ActiveDirectoryAuthorityHost: cloud.AzurePublic.ActiveDirectoryAuthorityHost,
			Services:                     map[cloud.ServiceName]cloud.ServiceConfiguration{cloud.ResourceManager: {Endpoint: endpoint, Audience: endpoint}},
		}
		opts.InsecureAllowCredentialWithHTTP = strings.HasPrefix(endpoint, "http://")
		prices = endpoint
	}
	if cc.Transport != nil {
		opts.Transport = cc.Transport
		httpClient.Transport = transporterRoundTripper{cc.Transport}
		if endpoint == "" {
			prices = "https://prices.local"
		}
	}
	if local {
		// Local fakes register no resource providers and want no retries of
		// the errors they inject.
		opts.DisableRPRegistration = true
		opts.Retry.MaxRetries = -1
	}
	if cc.PricesEndpoint != "" {
		prices = cc.PricesEndpoint
	}
	if cred == nil {
		if local && os.Getenv("AZURE_CLIENT_ID") == "" {
			cred = &azfake.TokenCredential{}
		} else {
			c, err := azidentity.NewDefaultAzureCredential(nil)
			if err != nil {
				return nil, fmt.Errorf("loading Azure credentials (Workload Identity): %w", err)
			}
			cred = c
		}
	}
	cf, err := armcompute.NewClientFactory(cc.SubscriptionID, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("building Azure compute clients: %w", err)
	}
	nf, err := armnetwork.NewClientFactory(cc.SubscriptionID, cred, opts)
	if err != nil {
		return nil, fmt.Errorf("building Azure network clients: %w", err)
	}
	return &Clients{
		VMs: cf.NewVirtualMachinesClient(), NICs: nf.NewInterfacesClient(), Disks: cf.NewDisksClient(),
		SKUs: cf.NewResourceSKUsClient(), PPGs: cf.NewProximityPlacementGroupsClient(),
		Reservations: cf.NewCapacityReservationsClient(), ReservationGroups: cf.NewCapacityReservationGroupsClient(),
		GalleryImages: cf.NewCommunityGalleryImageVersionsClient(), Subnets: nf.NewSubnetsClient(),
		Prices: &RetailPrices{BaseURL: prices, Client: httpClient},
	}, nil
}

// transporterRoundTripper sends plain HTTP requests through an azcore
// transport, so the Retail Prices client reaches in-process fakes too.
type transporterRoundTripper struct{ t policy.Transporter }

func (r transporterRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	return r.t.Do(req)
}
