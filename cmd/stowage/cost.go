package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/cost"
	"github.com/stowage-k8s/stowage/pkg/operator"
)

func init() { subcommands = append(subcommands, newCostCommand) }

// newCostCommand builds `stowage cost`: what the cluster's Stowage machines
// cost per hour, and who uses them.
func newCostCommand() *cobra.Command {
	var (
		kubeconfig  string
		kubeContext string
		output      string
	)
	cmd := &cobra.Command{
		Use:   "cost",
		Short: "Show what the machines Stowage launched cost per hour, by NodePool, capacity type and namespace",
		Long: `Reads NodeClaims, Nodes, Pods and Commitments (and, when pods use them,
ResourceClaims and ResourceSlices) from the cluster and prints the running
cost in US dollars per hour: by NodePool, by capacity type, attributed to
namespaces by their pods' requests and DRA GPU claims, and the price of
capacity nobody requests. GPU machines are split into a GPU part and a CPU/memory part by
the price model described in docs/metrics.md.`,
		Example: `  stowage cost
  stowage cost --kubeconfig ~/.kube/prod -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			kube, err := newKubeClient(kubeconfig, kubeContext)
			if err != nil {
				return err
			}
			pricer, err := cost.NewCatalogPricer()
			if err != nil {
				return err
			}
			return runCost(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), kube, pricer, output)
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	cmd.Flags().StringVar(&kubeContext, "context", "", "kubeconfig context to use (default: the current context)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

// newKubeClient builds a client the way kubectl finds its configuration.
func newKubeClient(kubeconfig, kubeContext string) (client.Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	scheme, err := operator.NewScheme()
	if err != nil {
		return nil, err
	}
	kube, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	return kube, nil
}

func runCost(ctx context.Context, out, errOut io.Writer, kube client.Reader, pricer cost.OnDemandPricer, output string) error {
	state, err := cost.Read(ctx, kube)
	if err != nil {
		return err
	}
	report := cost.Attribute(state, cost.DefaultPriceModel, pricer)
	for _, w := range report.Warnings {
		fmt.Fprintln(errOut, "warning:", w)
	}
	if output == "json" {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(report)
	}
	return printCostTable(out, report)
}

func printCostTable(out io.Writer, r cost.Report) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "NODEPOOL\tMACHINES\t$/H\tON-DEMAND $/H\tSAVED\tIDLE GPU $/H")
	for _, p := range r.NodePools {
		fmt.Fprintf(w, "%s\t%d\t%.4f\t%.4f\t%s\t%.4f\n", p.NodePool, p.Machines, p.PerHour, p.OnDemandEquivalent,
			savedPercent(p.PerHour, p.OnDemandEquivalent), p.IdleGPU)
	}
	fmt.Fprintf(w, "TOTAL\t%d\t%.4f\t%.4f\t%s\t%.4f\n", r.Machines, r.Total, r.OnDemandEquivalent,
		savedPercent(r.Total, r.OnDemandEquivalent), r.Idle.GPU)
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CAPACITY TYPE\tMACHINES\t$/H\tSHARE")
	for _, c := range r.CapacityTypes {
		fmt.Fprintf(w, "%s\t%d\t%.4f\t%s\n", c.CapacityType, c.Machines, c.PerHour, percent(c.PerHour, r.Total))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "NAMESPACE\t$/H\tGPU $/H\tSHARE")
	for _, ns := range r.Namespaces {
		fmt.Fprintf(w, "%s\t%.4f\t%.4f\t%s\n", ns.Namespace, ns.PerHour, ns.GPU, percent(ns.PerHour, r.Total))
	}
	fmt.Fprintf(w, "(idle GPUs)\t%.4f\t%.4f\t%s\n", r.Idle.GPU, r.Idle.GPU, percent(r.Idle.GPU, r.Total))
	fmt.Fprintf(w, "(idle CPU/memory)\t%.4f\t%.4f\t%s\n", r.Idle.CPUMemory, 0.0, percent(r.Idle.CPUMemory, r.Total))
	if len(r.Commitments) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "COMMITMENT\tTYPE\tUSED\tCOMMITTED\tUTILIZATION\tMACHINES\tSAVES $/H")
		for _, c := range r.Commitments {
			used, committed := "-", "-"
			if c.Committed > 0 {
				used, committed = fmt.Sprintf("%.4g %s", c.Used, c.Unit), fmt.Sprintf("%.4g %s", c.Committed, c.Unit)
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%.1f%%\t%d\t%.4f\n", c.Name, c.Type, used, committed, 100*c.Utilization(), c.Machines, c.Savings)
		}
	}
	return w.Flush()
}

func percent(part, whole float64) string {
	if whole <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*part/whole)
}

func savedPercent(paid, onDemand float64) string {
	if onDemand <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*(onDemand-paid)/onDemand)
}
