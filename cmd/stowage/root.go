package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// subcommands holds the constructor of every subcommand. A file that adds a
// subcommand registers it from its own init function, so no file needs to
// edit another's:
//
//	func init() { subcommands = append(subcommands, newControllerCommand) }
//
// The constructor is called once per root command (tests build many), so it
// must not keep flag values in package-level variables.
var subcommands []func() *cobra.Command

// newRootCommand builds the stowage command tree. Errors are returned to main,
// which prints them to stderr and exits non-zero; cobra's own printing is off
// so each error is printed exactly once.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "stowage",
		Short:         "Stowage buys the cheapest nodes that fit your pending pods, GPUs included",
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%s: %w (see '%s --help')", cmd.CommandPath(), err, cmd.CommandPath())
	})
	for _, newCommand := range subcommands {
		root.AddCommand(newCommand())
	}
	return root
}

// cliLogger installs a human-readable logger on stderr for the offline
// commands; verbosity 0 shows info, 1 and up show debug (V(1)) messages.
func cliLogger(verbosity int) {
	log.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.ConsoleEncoder(), zap.Level(zapcore.Level(-verbosity))))
}

// usageError names the flag a user got wrong.
func usageError(flag string, format string, args ...any) error {
	return fmt.Errorf("%s: %s", flag, fmt.Sprintf(format, args...))
}
