package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/simulate"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// solve is the solver simulate runs; a variable so the CLI tests can check
// the command's wiring without depending on the solver's answers.
var solve simulate.SolveFunc = func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) {
	return solver.Solve(ctx, s)
}

func init() { subcommands = append(subcommands, newSimulateCommand) }

func newSimulateCommand() *cobra.Command {
	var (
		files       []string
		catalog     catalogOptions
		output      string
		verbosity   int
		decode      manifest.Options
		gangSources string
	)
	cmd := &cobra.Command{
		Use:   "simulate -f <file|dir>",
		Short: "Show which nodes Stowage would buy for a set of manifests, and what they cost",
		Long: `Reads Kubernetes manifests (Pods, Deployments, ReplicaSets, StatefulSets, Jobs,
DaemonSets, stowage.dev/v1 NodePools, the stowage-reservations ConfigMap,
ProvisioningRequests with their PodTemplates, Commitments, PersistentVolumeClaims,
PersistentVolumes and StorageClasses, and DeviceClasses, ResourceClaimTemplates
and ResourceClaims for pods that claim devices),
plans them with the solver against a built-in price catalog, and prints the
nodes it would buy, their hourly cost, the naive one-node-per-pod cost, the
provable lower bound and the pods nothing can hold. Without a NodePool, any
amd64 type without fractional GPUs may be bought as spot or on-demand (and
reserved where reservations are given).`,
		Example: `  stowage simulate -f test/scenarios/seeds-example
  stowage simulate -f training.yaml --catalog gcp/us-central1 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageError("-f/--filename", "required: a manifest file or directory")
			}
			if err := checkOutput(output); err != nil {
				return err
			}
			sources, err := scheduling.ParseGangSources(gangSources)
			if err != nil {
				return usageError("--gang-sources", "%v", err)
			}
			cliLogger(verbosity)
			if decode.MaxPods < 1 {
				return usageError("--max-pods", "must be at least 1, got %d", decode.MaxPods)
			}
			loader := manifest.NewLoader(decode)
			for _, f := range files {
				if err := loader.Load(f); err != nil {
					return err
				}
			}
			set := loader.Set()
			c, err := catalog.load(cmd.Context())
			if err != nil {
				return err
			}
			report, err := simulate.Run(cmd.Context(), simulate.Input{Manifests: set, Catalog: c, GangSources: sources}, simulate.Options{Solve: solve})
			// The warnings say what was skipped, which is often why it failed
			// ("no pods to place" for a file of CronJobs).
			warnings := set.Warnings
			if report != nil {
				warnings = report.Warnings
			}
			for _, w := range warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			if err != nil {
				return err
			}
			if output == "json" {
				return report.WriteJSON(cmd.OutOrStdout())
			}
			return report.WriteTable(cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "manifest file or directory (read recursively); may be repeated")
	catalog.addFlags(cmd.Flags())
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().IntVarP(&verbosity, "verbosity", "v", 0, "log verbosity on stderr (1 shows debug messages)")
	cmd.Flags().BoolVar(&decode.AllowUnknownFields, "allow-unknown-fields", false,
		"warn about fields the Kubernetes types do not have (e.g. a misspelled nodeSelector) instead of failing")
	cmd.Flags().IntVar(&decode.MaxPods, "max-pods", manifest.DefaultMaxPods, "fail when the manifests expand into more pods than this")
	cmd.Flags().StringVar(&gangSources, "gang-sources", "",
		"workload kinds planned as gangs, as the controller's flag: leaderworkerset, indexed-job (JobSets are not expanded by simulate)")
	return cmd
}
