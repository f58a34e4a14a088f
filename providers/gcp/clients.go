package gcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	billing "cloud.google.com/go/billing/apiv1"
	compute "cloud.google.com/go/compute/apiv1"
	"github.com/googleapis/gax-go/v2/apierror"
	container "google.golang.org/api/container/v1"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// ClientConfig says where the Google Cloud clients talk to.
type ClientConfig struct {
	// Endpoint replaces every service's endpoint (a private endpoint, or a
	// local fake in tests). A loopback http:// endpoint is called without
	// credentials.
	Endpoint string
}

// Clients are the SDK clients the provider, its controllers and the CLI use:
// the Compute Engine REST clients, the Cloud Billing Catalog client and the
// GKE API.
type Clients struct {
	MachineTypes      *compute.MachineTypesClient
	AcceleratorTypes  *compute.AcceleratorTypesClient
	Instances         *compute.InstancesClient
	ZoneOperations    *compute.ZoneOperationsClient
	Reservations      *compute.ReservationsClient
	ResourcePolicies  *compute.ResourcePoliciesClient
	Subnetworks       *compute.SubnetworksClient
	Images            *compute.ImagesClient
	InstanceTemplates *compute.InstanceTemplatesClient
	Billing           *billing.CloudCatalogClient
	Container         *container.Service
}

// NewClients builds the clients with Application Default Credentials, which
// on GKE are the Workload Identity of the controller's service account.
func NewClients(ctx context.Context, cc ClientConfig) (*Clients, error) {
	var opts []option.ClientOption
	containerOpts := []option.ClientOption{}
	if cc.Endpoint != "" {
		opts = append(opts, option.WithEndpoint(cc.Endpoint))
		// The GKE client resolves paths relative to its base URL.
		containerOpts = append(containerOpts, option.WithEndpoint(strings.TrimSuffix(cc.Endpoint, "/")+"/"))
		if strings.HasPrefix(cc.Endpoint, "http://127.") || strings.HasPrefix(cc.Endpoint, "http://localhost") || strings.HasPrefix(cc.Endpoint, "http://[::1]") {
			opts = append(opts, option.WithoutAuthentication())
			containerOpts = append(containerOpts, option.WithoutAuthentication())
		}
	}
	c := &Clients{}
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	c.MachineTypes, err = compute.NewMachineTypesRESTClient(ctx, opts...)
	add(err)
	c.AcceleratorTypes, err = compute.NewAcceleratorTypesRESTClient(ctx, opts...)
	add(err)
	c.Instances, err = compute.NewInstancesRESTClient(ctx, opts...)
	add(err)
	c.ZoneOperations, err = compute.NewZoneOperationsRESTClient(ctx, opts...)
	add(err)
	c.Reservations, err = compute.NewReservationsRESTClient(ctx, opts...)
	add(err)
	c.ResourcePolicies, err = compute.NewResourcePoliciesRESTClient(ctx, opts...)
	add(err)
	c.Subnetworks, err = compute.NewSubnetworksRESTClient(ctx, opts...)
	add(err)
	c.Images, err = compute.NewImagesRESTClient(ctx, opts...)
	add(err)
	c.InstanceTemplates, err = compute.NewInstanceTemplatesRESTClient(ctx, opts...)
	add(err)
	c.Billing, err = billing.NewCloudCatalogRESTClient(ctx, opts...)
	add(err)
	c.Container, err = container.NewService(ctx, containerOpts...)
	add(err)
	if len(errs) > 0 {
		return nil, fmt.Errorf("creating Google Cloud clients: %w", errors.Join(errs...))
	}
	return c, nil
}

// Close releases the clients' connections.
func (c *Clients) Close() {
	for _, cl := range []interface{ Close() error }{c.MachineTypes, c.AcceleratorTypes, c.Instances, c.ZoneOperations,
		c.Reservations, c.ResourcePolicies, c.Subnetworks, c.Images, c.InstanceTemplates, c.Billing} {
		_ = cl.Close()
	}
}

// httpStatus is the HTTP status of a Google API error, or 0.
func httpStatus(err error) int {
	var ae *apierror.APIError
	if errors.As(err, &ae) && ae.HTTPCode() > 0 {
		return ae.HTTPCode()
	}
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

func isNotFound(err error) bool      { return httpStatus(err) == http.StatusNotFound }
func isAlreadyExists(err error) bool { return httpStatus(err) == http.StatusConflict }

// IsNotFound reports whether err is a Google API 404.
func IsNotFound(err error) bool { return isNotFound(err) }
