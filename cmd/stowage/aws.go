package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pricing"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/topology"
	"github.com/stowage-k8s/stowage/providers/aws/iampolicy"
)

// The AWS catalog lists live from --endpoint (moto, or a real regional
// endpoint) and serves the built-in catalog otherwise.
func init() { catalogSources[awsprovider.Name] = awsCatalog }

func awsCatalog(ctx context.Context, region, endpoint string) (*pricing.Catalog, error) {
	if endpoint == "" {
		return builtinCatalog(awsprovider.Name, region)
	}
	clients, err := awsprovider.NewClients(ctx, awsprovider.ClientConfig{Region: region, Endpoint: endpoint})
	if err != nil {
		return nil, err
	}
	p, err := awsprovider.New(awsprovider.Options{ClusterName: "catalog", Region: region, EC2: clients.EC2, Pricing: clients.Pricing})
	if err != nil {
		return nil, err
	}
	return p.Catalog(ctx)
}

// awsFlags are the controller's AWS settings, bound by addAWSFlags.
type awsFlags struct {
	region            string
	endpoint          string
	interruptionQueue string
	clusterEndpoint   string
	clusterCABundle   string
	clusterCIDR       string
}

// addAWSFlags adds the AWS settings to the controller's flags.
func addAWSFlags(fs *pflag.FlagSet, f *awsFlags) {
	fs.StringVar(&f.region, "aws-region", "", "with --cloud-provider=aws: the cluster's region (required)")
	fs.StringVar(&f.endpoint, "aws-endpoint", "", "with --cloud-provider=aws: send every AWS call here instead (local emulators such as moto)")
	fs.StringVar(&f.interruptionQueue, "aws-interruption-queue", "", "with --cloud-provider=aws: URL of the SQS queue EventBridge sends interruption events to")
	fs.StringVar(&f.clusterEndpoint, "aws-cluster-endpoint", "", "with --cloud-provider=aws: API server URL nodes join (required)")
	fs.StringVar(&f.clusterCABundle, "aws-cluster-ca-bundle", "", "with --cloud-provider=aws: base64 cluster CA certificate for nodes (required)")
	fs.StringVar(&f.clusterCIDR, "aws-cluster-cidr", "", "with --cloud-provider=aws: the cluster's service CIDR, for AL2023 nodes (required)")
}

// awsOperatorOptions registers the AWS provider and the EC2NodeClass
// controller with the operator. Call it only when --cloud-provider=aws: the
// controller watches EC2NodeClasses, whose CRD other clouds do not install.
// It refuses to start without the settings every node needs to join: without
// them each machine bought would fail to register and be bought again.
func awsOperatorOptions(ctx context.Context, clusterName string, f awsFlags) ([]operator.Option, error) {
	if f.region == "" {
		return nil, usageError("--aws-region", "required with --cloud-provider=aws")
	}
	join := nodeclass.JoinSettings{Endpoint: f.clusterEndpoint, CABundle: f.clusterCABundle, CIDR: f.clusterCIDR}
	if err := join.Validate(); err != nil {
		return nil, fmt.Errorf("nodes could not join the cluster; set the flags from `aws eks describe-cluster --name %s`:\n%w", clusterName, err)
	}
	clients, err := awsprovider.NewClients(ctx, awsprovider.ClientConfig{Region: f.region, Endpoint: f.endpoint})
	if err != nil {
		return nil, err
	}
	// The node class and topology controllers reach the provider, which the
	// operator builds later from the factory.
	lazy := &lazyProvider{}
	factory := func(ctx context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
		// The operator's scheme is shared by its manager and direct client;
		// the provider and the controller read EC2NodeClasses through them.
		if err := awsv1.AddToScheme(d.Client.Scheme()); err != nil {
			return nil, fmt.Errorf("adding %s to the scheme: %w", awsv1.Group, err)
		}
		var source *awsprovider.InterruptionSource
		if f.interruptionQueue != "" {
			source, err = awsprovider.NewInterruptionSource(awsprovider.InterruptionOptions{
				QueueURL: f.interruptionQueue, SQS: clients.SQS, EC2: clients.EC2, ClusterName: d.ClusterName, Clock: d.Clock,
			})
			if err != nil {
				return nil, err
			}
		}
		p, err := awsprovider.New(awsprovider.Options{
			ClusterName: d.ClusterName, Region: f.region, EC2: clients.EC2, Pricing: clients.Pricing, Kube: d.Client, Clock: d.Clock,
			ClusterEndpoint: f.clusterEndpoint, ClusterCABundle: f.clusterCABundle, ClusterCIDR: f.clusterCIDR,
			Interruption: source, Registerer: ctrlmetrics.Registry,
		})
		lazy.set(p)
		return p, err
	}
	return []operator.Option{
		operator.WithProvider(awsprovider.Name, factory),
		operator.WithController(nodeclass.NewController(nodeclass.Deps{EC2: clients.EC2, IAM: clients.IAM, SSM: clients.SSM,
			ClusterName: clusterName, Join: join, Cleaner: lazy})),
		operator.WithController(topology.NewController(topology.Deps{Source: lazy})),
	}, nil
}

// lazyProvider hands controllers the provider once the operator made it.
type lazyProvider struct {
	mu sync.Mutex
	p  *awsprovider.Provider
}

// errNotStarted: a controller ran before the operator built the provider.
var errNotStarted = errors.New("the AWS provider has not started yet")

func (l *lazyProvider) set(p *awsprovider.Provider) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.p = p
}

func (l *lazyProvider) get() (*awsprovider.Provider, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.p == nil {
		return nil, errNotStarted
	}
	return l.p, nil
}

func (l *lazyProvider) DeleteLaunchTemplates(ctx context.Context, nodeClass string) error {
	p, err := l.get()
	if err != nil {
		return err
	}
	return p.DeleteLaunchTemplates(ctx, nodeClass)
}

func (l *lazyProvider) NetworkTopology(ctx context.Context, providerIDs []string) (map[string][]string, error) {
	p, err := l.get()
	if err != nil {
		return nil, err
	}
	return p.NetworkTopology(ctx, providerIDs)
}

func init() { subcommands = append(subcommands, newAWSCommand) }

// newAWSCommand groups AWS helpers that run without a cluster.
func newAWSCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "aws", Short: "AWS helpers for installing Stowage on EKS", Args: cobra.NoArgs}
	cmd.AddCommand(newAWSIAMPolicyCommand())
	return cmd
}

func newAWSIAMPolicyCommand() *cobra.Command {
	var v iampolicy.Vars
	var raw bool
	cmd := &cobra.Command{
		Use:   "iam-policy",
		Short: "Print the least-privilege IAM policy the controller's role needs",
		Long: "Print the controller's IAM policy for one cluster: every AWS call Stowage makes and nothing else,\n" +
			"with launches, tags and deletes limited to resources tagged stowage.dev/cluster=<cluster>.\n" +
			"--template prints it with ${CLUSTER}-style placeholders for envsubst instead.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if raw {
				_, err := fmt.Fprint(cmd.OutOrStdout(), iampolicy.Template())
				return err
			}
			out, err := iampolicy.Render(v)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(out))
			return err
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&v.Cluster, "cluster-name", "", "the EKS cluster name (the controller's --cluster-name)")
	fs.StringVar(&v.Account, "account", "", "the AWS account ID")
	fs.StringVar(&v.Region, "region", "", "the cluster's region")
	fs.StringVar(&v.NodeRoleARN, "node-role-arn", "", "ARN of the IAM role nodes run with (EC2NodeClass spec.role)")
	fs.StringVar(&v.Partition, "partition", "aws", "the AWS partition: aws, aws-cn or aws-us-gov")
	fs.BoolVar(&raw, "template", false, "print the policy with placeholders instead")
	return cmd
}
