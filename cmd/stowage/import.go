package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/stowage-k8s/stowage/pkg/importer"
)

func init() { subcommands = append(subcommands, newImportCommand) }

// newImportCommand builds `stowage import`, which converts another
// autoscaler's objects into Stowage's.
func newImportCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Convert another autoscaler's configuration into Stowage objects",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newImportKarpenterCommand())
	return cmd
}

func newImportKarpenterCommand() *cobra.Command {
	var (
		files       []string
		output      string
		skipInvalid bool
	)
	cmd := &cobra.Command{
		Use:   "karpenter -f FILE [-f FILE...]",
		Short: "Convert karpenter.sh/v1 NodePools and karpenter.k8s.aws/v1 EC2NodeClasses",
		Long: `Converts Karpenter NodePools and EC2NodeClasses into Stowage NodePools and
EC2NodeClasses and prints them to stdout, ready for kubectl apply. Label
keys, the node class reference and the API groups are renamed; every field
that has no Stowage equivalent is listed on stderr by file, object and
field path, and left out of the output.

An object Stowage would refuse (a budget of 150%, a bad cron schedule, a
negative duration, operator Bogus, ...) is rejected with every reason on
stderr, and the command fails without printing anything, unless
--skip-invalid is given: then the rest is converted and printed.`,
		Example: `  kubectl get nodepools.karpenter.sh,ec2nodeclasses -o yaml > karpenter.yaml
  stowage import karpenter -f karpenter.yaml > stowage.yaml
  stowage import karpenter -f pools.yaml -f classes.yaml -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(files) == 0 {
				return usageError("-f/--filename", "at least one file is required (- reads stdin)")
			}
			if output != "yaml" && output != "json" {
				return usageError("-o/--output", "want yaml or json, got %q", output)
			}
			return runImportKarpenter(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr(), files, output, skipInvalid)
		},
	}
	cmd.Flags().StringArrayVarP(&files, "filename", "f", nil, "Karpenter YAML or JSON file to convert; repeat for several, - for stdin")
	cmd.Flags().StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	cmd.Flags().BoolVar(&skipInvalid, "skip-invalid", false, "convert the valid objects and leave out the ones Stowage would refuse, instead of failing")
	return cmd
}

func runImportKarpenter(stdin io.Reader, out, errOut io.Writer, files []string, output string, skipInvalid bool) error {
	var all importer.Result
	for _, name := range files {
		res, err := convertFile(stdin, name)
		if err != nil {
			return err
		}
		all.Objects = append(all.Objects, res.Objects...)
		all.Warnings = append(all.Warnings, res.Warnings...)
		all.Rejected = append(all.Rejected, res.Rejected...)
	}
	for _, w := range all.Warnings {
		fmt.Fprintln(errOut, "warning:", w)
	}
	label := "error:"
	if skipInvalid {
		label = "skipped:"
	}
	for _, r := range all.Rejected {
		fmt.Fprintln(errOut, label, r)
	}
	if len(all.Rejected) > 0 && !skipInvalid {
		return fmt.Errorf("%d of %d objects rejected (see above); fix them, or pass --skip-invalid to convert the rest",
			len(all.Rejected), len(all.Rejected)+len(all.Objects))
	}
	if output == "json" {
		items := make([]any, 0, len(all.Objects))
		for _, o := range all.Objects {
			items = append(items, o.Object)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": items})
	}
	b, err := importer.MarshalYAML(all.Objects)
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

func convertFile(stdin io.Reader, name string) (importer.Result, error) {
	if name == "-" {
		return importer.ConvertYAML("stdin", stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return importer.Result{}, fmt.Errorf("-f %s: %w", name, err)
	}
	defer f.Close()
	return importer.ConvertYAML(name, f)
}
