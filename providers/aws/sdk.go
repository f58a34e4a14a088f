package aws

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/pricing"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
)

// EC2API is exactly the EC2 calls the provider makes, so tests can fake the
// SDK rather than the world. *ec2.Client implements it.
type EC2API interface {
	DescribeInstanceTypes(context.Context, *ec2.DescribeInstanceTypesInput, ...func(*ec2.Options)) (*ec2.DescribeInstanceTypesOutput, error)
	DescribeInstanceTypeOfferings(context.Context, *ec2.DescribeInstanceTypeOfferingsInput, ...func(*ec2.Options)) (*ec2.DescribeInstanceTypeOfferingsOutput, error)
	DescribeSpotPriceHistory(context.Context, *ec2.DescribeSpotPriceHistoryInput, ...func(*ec2.Options)) (*ec2.DescribeSpotPriceHistoryOutput, error)
	DescribeCapacityReservations(context.Context, *ec2.DescribeCapacityReservationsInput, ...func(*ec2.Options)) (*ec2.DescribeCapacityReservationsOutput, error)
	DescribeLaunchTemplates(context.Context, *ec2.DescribeLaunchTemplatesInput, ...func(*ec2.Options)) (*ec2.DescribeLaunchTemplatesOutput, error)
	CreateLaunchTemplate(context.Context, *ec2.CreateLaunchTemplateInput, ...func(*ec2.Options)) (*ec2.CreateLaunchTemplateOutput, error)
	CreateFleet(context.Context, *ec2.CreateFleetInput, ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error)
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
	TerminateInstances(context.Context, *ec2.TerminateInstancesInput, ...func(*ec2.Options)) (*ec2.TerminateInstancesOutput, error)
	DeleteLaunchTemplate(context.Context, *ec2.DeleteLaunchTemplateInput, ...func(*ec2.Options)) (*ec2.DeleteLaunchTemplateOutput, error)
	CreatePlacementGroup(context.Context, *ec2.CreatePlacementGroupInput, ...func(*ec2.Options)) (*ec2.CreatePlacementGroupOutput, error)
	DescribePlacementGroups(context.Context, *ec2.DescribePlacementGroupsInput, ...func(*ec2.Options)) (*ec2.DescribePlacementGroupsOutput, error)
	DeletePlacementGroup(context.Context, *ec2.DeletePlacementGroupInput, ...func(*ec2.Options)) (*ec2.DeletePlacementGroupOutput, error)
	DescribeInstanceTopology(context.Context, *ec2.DescribeInstanceTopologyInput, ...func(*ec2.Options)) (*ec2.DescribeInstanceTopologyOutput, error)
}

// PricingAPI is the one Price List call the provider makes. *pricing.Client implements it.
type PricingAPI interface {
	GetProducts(context.Context, *pricing.GetProductsInput, ...func(*pricing.Options)) (*pricing.GetProductsOutput, error)
}

// SQSAPI is what the interruption source needs from SQS. *sqs.Client implements it.
type SQSAPI interface {
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

var (
	_ EC2API     = (*ec2.Client)(nil)
	_ PricingAPI = (*pricing.Client)(nil)
	_ SQSAPI     = (*sqs.Client)(nil)
)

// EC2 error codes the provider acts on.
const (
	codeInstanceNotFound             = "InvalidInstanceID.NotFound"
	codeLaunchTemplateNotFound       = "InvalidLaunchTemplateName.NotFoundException"
	codeLaunchTemplateAlreadyExists  = "InvalidLaunchTemplateName.AlreadyExistsException"
	codeInsufficientInstanceCapacity = "InsufficientInstanceCapacity"
	codePlacementGroupDuplicate      = "InvalidPlacementGroup.Duplicate"
	codePlacementGroupUnknown        = "InvalidPlacementGroup.Unknown"
	codePlacementGroupInUse          = "InvalidPlacementGroup.InUse"
	codeLaunchTemplateIDNotFound     = "InvalidLaunchTemplateId.NotFound"
)

// capacityErrorCodes are the CreateFleet per-pool errors that mean "no
// capacity in this pool right now, try the next one". A subnet out of
// addresses and a type EC2 does not sell in the zone after all fail the
// pool as surely as a stockout: retried as a plain error, the claim would
// wait on the same pool until it timed out, and be planned there again.
var capacityErrorCodes = map[string]bool{
	codeInsufficientInstanceCapacity:    true,
	"MaxSpotInstanceCountExceeded":      true,
	"VcpuLimitExceeded":                 true,
	"UnfulfillableCapacity":             true,
	"ReservationCapacityExceeded":       true,
	"InsufficientFreeAddressesInSubnet": true,
	"Unsupported":                       true,
}

// errorCode is the AWS error code of err, or "".
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}
