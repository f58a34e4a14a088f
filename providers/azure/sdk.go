package azure

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// The narrowed SDK interfaces: exactly the calls the provider makes. The
// armcompute and armnetwork clients implement them; tests run the real
// clients against the SDK's own fake servers (providers/azure/azuretest).

// VirtualMachinesAPI is what the provider needs from armcompute's VirtualMachinesClient.
type VirtualMachinesAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armcompute.VirtualMachinesClientGetOptions) (armcompute.VirtualMachinesClientGetResponse, error)
	BeginCreateOrUpdate(ctx context.Context, resourceGroup, name string, parameters armcompute.VirtualMachine, options *armcompute.VirtualMachinesClientBeginCreateOrUpdateOptions) (*runtime.Poller[armcompute.VirtualMachinesClientCreateOrUpdateResponse], error)
	BeginDelete(ctx context.Context, resourceGroup, name string, options *armcompute.VirtualMachinesClientBeginDeleteOptions) (*runtime.Poller[armcompute.VirtualMachinesClientDeleteResponse], error)
	NewListPager(resourceGroup string, options *armcompute.VirtualMachinesClientListOptions) *runtime.Pager[armcompute.VirtualMachinesClientListResponse]
}

// InterfacesAPI is what the provider needs from armnetwork's InterfacesClient.
type InterfacesAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armnetwork.InterfacesClientGetOptions) (armnetwork.InterfacesClientGetResponse, error)
	BeginCreateOrUpdate(ctx context.Context, resourceGroup, name string, parameters armnetwork.Interface, options *armnetwork.InterfacesClientBeginCreateOrUpdateOptions) (*runtime.Poller[armnetwork.InterfacesClientCreateOrUpdateResponse], error)
	BeginDelete(ctx context.Context, resourceGroup, name string, options *armnetwork.InterfacesClientBeginDeleteOptions) (*runtime.Poller[armnetwork.InterfacesClientDeleteResponse], error)
	NewListPager(resourceGroup string, options *armnetwork.InterfacesClientListOptions) *runtime.Pager[armnetwork.InterfacesClientListResponse]
}

// DisksAPI deletes OS disks a VM left behind.
type DisksAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armcompute.DisksClientGetOptions) (armcompute.DisksClientGetResponse, error)
	BeginDelete(ctx context.Context, resourceGroup, name string, options *armcompute.DisksClientBeginDeleteOptions) (*runtime.Poller[armcompute.DisksClientDeleteResponse], error)
}

// ResourceSKUsAPI lists the VM sizes of a location.
type ResourceSKUsAPI interface {
	NewListPager(options *armcompute.ResourceSKUsClientListOptions) *runtime.Pager[armcompute.ResourceSKUsClientListResponse]
}

// ProximityPlacementGroupsAPI manages the groups gangs are placed in.
type ProximityPlacementGroupsAPI interface {
	Get(ctx context.Context, resourceGroup, name string, options *armcompute.ProximityPlacementGroupsClientGetOptions) (armcompute.ProximityPlacementGroupsClientGetResponse, error)
	CreateOrUpdate(ctx context.Context, resourceGroup, name string, parameters armcompute.ProximityPlacementGroup, options *armcompute.ProximityPlacementGroupsClientCreateOrUpdateOptions) (armcompute.ProximityPlacementGroupsClientCreateOrUpdateResponse, error)
	Delete(ctx context.Context, resourceGroup, name string, options *armcompute.ProximityPlacementGroupsClientDeleteOptions) (armcompute.ProximityPlacementGroupsClientDeleteResponse, error)
	NewListByResourceGroupPager(resourceGroup string, options *armcompute.ProximityPlacementGroupsClientListByResourceGroupOptions) *runtime.Pager[armcompute.ProximityPlacementGroupsClientListByResourceGroupResponse]
}

// CapacityReservationsAPI lists the reservations of a capacity reservation group.
type CapacityReservationsAPI interface {
	NewListByCapacityReservationGroupPager(resourceGroup, group string, options *armcompute.CapacityReservationsClientListByCapacityReservationGroupOptions) *runtime.Pager[armcompute.CapacityReservationsClientListByCapacityReservationGroupResponse]
}

var (
	_ VirtualMachinesAPI          = (*armcompute.VirtualMachinesClient)(nil)
	_ InterfacesAPI               = (*armnetwork.InterfacesClient)(nil)
	_ DisksAPI                    = (*armcompute.DisksClient)(nil)
	_ ResourceSKUsAPI             = (*armcompute.ResourceSKUsClient)(nil)
	_ ProximityPlacementGroupsAPI = (*armcompute.ProximityPlacementGroupsClient)(nil)
	_ CapacityReservationsAPI     = (*armcompute.CapacityReservationsClient)(nil)
)

// Azure error codes the provider acts on.
const (
	codeNotFound         = "NotFound"
	codeResourceNotFound = "ResourceNotFound"

	CodeAllocationFailed                      = "AllocationFailed"
	CodeZonalAllocationFailed                 = "ZonalAllocationFailed"
	CodeSkuNotAvailable                       = "SkuNotAvailable"
	CodeOverconstrainedAllocationRequest      = "OverconstrainedAllocationRequest"
	CodeOverconstrainedZonalAllocationRequest = "OverconstrainedZonalAllocationRequest"
	CodeQuotaExceeded                         = "QuotaExceeded"
	CodeOperationNotAllowed                   = "OperationNotAllowed"
)

// errorCode is the ARM error code of err, or "".
func errorCode(err error) string {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.ErrorCode
	}
	return ""
}

// isNotFound reports a 404 from ARM.
func isNotFound(err error) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode == 404 || re.ErrorCode == codeNotFound || re.ErrorCode == codeResourceNotFound
	}
	return false
}

// capacityClass says how an error bears on an offering.
type capacityClass int

const (
	notCapacity capacityClass = iota
	// stockout: no capacity for this size in this zone (and priority) now.
	stockout
	// constrained: the request's placement (proximity group, zone) cannot be met.
	constrained
	// skuUnavailable: the size is not sold in that zone to this subscription.
	skuUnavailable
	// quota: the subscription's cores quota for the size family (or for spot)
	// is used up; every offering of that family and priority fails alike.
	quota
)

// How long an offering is skipped after each kind of failure. A stockout
// clears in minutes; a size withdrawn from a zone or an exhausted quota
// needs a person (a quota request) and is not retried for much longer.
const (
	StockoutTTL          = 5 * time.Minute
	ConstrainedTTL       = 3 * time.Minute
	SkuUnavailableTTL    = time.Hour
	SpotUnavailableTTL   = 10 * time.Minute
	QuotaUnavailableTTL  = 30 * time.Minute
	defaultLROPollPeriod = 5 * time.Second
)

// classify maps an ARM error to its capacity class.
func classify(err error) capacityClass {
	switch code := errorCode(err); code {
	case CodeZonalAllocationFailed, CodeAllocationFailed:
		return stockout
	case CodeOverconstrainedAllocationRequest, CodeOverconstrainedZonalAllocationRequest:
		return constrained
	case CodeSkuNotAvailable:
		return skuUnavailable
	case CodeQuotaExceeded:
		return quota
	case CodeOperationNotAllowed:
		// Quota exhaustion comes back as OperationNotAllowed with a message
		// naming the quota; other OperationNotAllowed errors are real failures.
		if strings.Contains(strings.ToLower(err.Error()), "quota") {
			return quota
		}
	}
	return notCapacity
}

// unavailableFor is how long to skip an offering after an error of class c.
func unavailableFor(c capacityClass, capacityType string) time.Duration {
	switch c {
	case stockout:
		return StockoutTTL
	case constrained:
		return ConstrainedTTL
	case skuUnavailable:
		if capacityType == v1.CapacityTypeSpot {
			// Spot reports SkuNotAvailable when the spot pool is empty.
			return SpotUnavailableTTL
		}
		return SkuUnavailableTTL
	case quota:
		return QuotaUnavailableTTL
	}
	return 0
}
