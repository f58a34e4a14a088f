package aws

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/pricing"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// ClientConfig says where the AWS clients talk to.
type ClientConfig struct {
	Region string
	// Endpoint replaces every service's endpoint, for local emulators such as
	// moto. Without credentials in the environment, dummy ones are used then.
	Endpoint string
}

// Clients are the SDK clients the provider, its controllers and the CLI use.
type Clients struct {
	EC2     *ec2.Client
	IAM     *iam.Client
	Pricing *pricing.Client
	SQS     *sqs.Client
	SSM     *ssm.Client
}

// NewClients loads the default credential chain (environment, IRSA or EKS
// Pod Identity, instance profile) and builds the clients.
func NewClients(ctx context.Context, cc ClientConfig) (*Clients, error) {
	if cc.Region == "" {
		return nil, fmt.Errorf("%w: region is required", ErrInvalidOptions)
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(cc.Region)}
	if cc.Endpoint != "" {
		opts = append(opts, config.WithBaseEndpoint(cc.Endpoint), config.WithRetryMaxAttempts(1))
		if os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
			opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("stowage", "stowage", "")))
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	return &Clients{
		EC2: ec2.NewFromConfig(cfg),
		IAM: iam.NewFromConfig(cfg),
		// The Price List API has endpoints in three regions only.
		Pricing: pricing.NewFromConfig(cfg, func(o *pricing.Options) { o.Region = PricingRegion(cc.Region) }),
		SQS:     sqs.NewFromConfig(cfg),
		SSM:     ssm.NewFromConfig(cfg),
	}, nil
}

// PricingRegion is the Price List API region nearest to region.
func PricingRegion(region string) string {
	switch {
	case strings.HasPrefix(region, "ap-"), strings.HasPrefix(region, "me-"):
		return "ap-south-1"
	case strings.HasPrefix(region, "eu-"), strings.HasPrefix(region, "il-"), strings.HasPrefix(region, "af-"):
		return "eu-central-1"
	}
	return "us-east-1"
}
