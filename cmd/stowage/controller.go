package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/cost"
	"github.com/stowage-k8s/stowage/pkg/operator"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
	azureprovider "github.com/stowage-k8s/stowage/providers/azure"
	"github.com/stowage-k8s/stowage/providers/fake"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
)

func init() { subcommands = append(subcommands, newControllerCommand) }

// controllerFlags are the controller's own flags beyond the operator's.
type controllerFlags struct {
	kubeconfig        string
	fakeLaunchLatency time.Duration
	fakeFaults        fake.Faults
	aws               awsFlags
	azure             azureFlags
	gcp               gcpFlags
}

func newControllerCommand() *cobra.Command {
	opts := operator.DefaultOptions()
	var f controllerFlags
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run the Stowage controller: watch pending pods and buy the nodes they need",
		Long: "Run the Stowage controller against the cluster of --kubeconfig (or the in-cluster config).\n" +
			"Every flag can also be set from the environment: " + operator.EnvName("cluster-name") + " for --cluster-name.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := operator.BindEnv(cmd.Flags(), os.LookupEnv); err != nil {
				return err
			}
			return runController(cmd.Context(), opts, f)
		},
	}
	opts.AddFlags(cmd.Flags())
	cmd.Flags().StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else the in-cluster config, else ~/.kube/config)")
	cmd.Flags().DurationVar(&f.fakeLaunchLatency, "fake-launch-latency", fake.DefaultLaunchLatency,
		"with --cloud-provider=fake: time from launch to the Node registering")
	cmd.Flags().Float64Var(&f.fakeFaults.CapacityErrorRate, "fake-capacity-error-rate", 0,
		"with --cloud-provider=fake: chance that trying one offering fails with insufficient capacity (for chaos tests)")
	cmd.Flags().Float64Var(&f.fakeFaults.LostLaunchRate, "fake-lost-launch-rate", 0,
		"with --cloud-provider=fake: chance that a launch succeeds but its response is lost (for chaos tests)")
	addAWSFlags(cmd.Flags(), &f.aws)
	addAzureFlags(cmd.Flags(), &f.azure)
	addGCPFlags(cmd.Flags(), &f.gcp)
	return cmd
}

func runController(ctx context.Context, opts operator.Options, f controllerFlags) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	// Named before any provider is built: the registry holds only the one
	// asked for (and fake), and its list would point a typo at the fake cloud.
	if !slices.Contains([]string{awsprovider.Name, gcpprovider.Name, azureprovider.Name, fake.Name}, opts.CloudProvider) {
		return fmt.Errorf("--cloud-provider %q is not a provider; want %s, %s or %s (%s: kwok nodes without machines, for tests and demos)",
			opts.CloudProvider, awsprovider.Name, gcpprovider.Name, azureprovider.Name, fake.Name)
	}
	logger, err := operator.NewLogger(opts, os.Stderr)
	if err != nil {
		return err
	}
	log.SetLogger(logger)
	cfg, err := restConfig(f.kubeconfig, opts)
	if err != nil {
		return err
	}
	pricer, err := cost.NewCatalogPricer()
	if err != nil {
		return fmt.Errorf("loading built-in prices for cost metrics: %w", err)
	}
	operatorOpts := []operator.Option{
		operator.WithOnDemandPricer(pricer),
		operator.WithProvider(fake.Name, func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
			return fake.New(fake.Options{Client: d.Client, ClusterName: d.ClusterName, Clock: d.Clock, LaunchLatency: f.fakeLaunchLatency, Faults: f.fakeFaults})
		}),
	}
	if opts.CloudProvider == awsprovider.Name {
		awsOpts, err := awsOperatorOptions(ctx, opts.ClusterName, f.aws)
		if err != nil {
			return err
		}
		operatorOpts = append(operatorOpts, awsOpts...)
	}
	if opts.CloudProvider == azureprovider.Name {
		azureOpts, err := azureOperatorOptions(ctx, f.azure, opts.Interruption)
		if err != nil {
			return err
		}
		operatorOpts = append(operatorOpts, azureOpts...)
	}
	if opts.CloudProvider == gcpprovider.Name {
		gcpOpts, err := gcpOperatorOptions(ctx, opts.ClusterName, f.gcp)
		if err != nil {
			return err
		}
		operatorOpts = append(operatorOpts, gcpOpts...)
	}
	op, err := operator.New(ctx, cfg, opts, operatorOpts...)
	if err != nil {
		return err
	}
	logger.Info("starting stowage controller", "version", version, "cloudProvider", opts.CloudProvider, "clusterName", opts.ClusterName)
	return op.Start(ctx)
}

// restConfig loads the client configuration from kubeconfig, or the usual
// places when it is empty, and applies the client rate limits of opts on
// both paths: the two loaders default to different limits, and a controller
// should not get slower because it was given --kubeconfig.
func restConfig(kubeconfig string, opts operator.Options) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig == "" {
		if cfg, err = config.GetConfig(); err != nil {
			return nil, fmt.Errorf("finding the cluster (set --kubeconfig): %w", err)
		}
	} else if cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
		return nil, fmt.Errorf("--kubeconfig %s: %w", kubeconfig, err)
	}
	cfg.QPS = opts.KubeClientQPS
	cfg.Burst = opts.KubeClientBurst
	// A limiter set by the loader would override QPS and Burst.
	cfg.RateLimiter = nil
	return cfg, nil
}
