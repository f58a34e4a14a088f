package operator

import (
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	crzap "sigs.k8s.io/controller-runtime/pkg/log/zap"
)

// NewLogger returns a zap-backed logr.Logger for the options: JSON in a
// cluster (or with --log-format=json), human-readable console output locally.
func NewLogger(o Options, w io.Writer) (logr.Logger, error) {
	level, err := parseLevel(o.LogLevel)
	if err != nil {
		return logr.Discard(), fmt.Errorf("--log-level: %w", err)
	}
	format := o.LogFormat
	if format == "" {
		format = "console"
		if inCluster() {
			format = "json"
		}
	}
	opts := []crzap.Opts{crzap.Level(level), crzap.WriteTo(w)}
	if format == "json" {
		opts = append(opts, crzap.JSONEncoder())
	} else {
		opts = append(opts, crzap.ConsoleEncoder())
	}
	return crzap.New(opts...), nil
}

// parseLevel accepts debug, info, error, or a logr verbosity (2 is V(2)).
func parseLevel(s string) (zapcore.Level, error) {
	switch s {
	case "", "info":
		return zapcore.InfoLevel, nil
	case "debug":
		return zapcore.DebugLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("want debug, info, error or a verbosity >= 0, got %q", s)
	}
	// logr's V(n) logs at zap level -n.
	return zapcore.Level(-v), nil
}

// inCluster reports whether the process runs in a Kubernetes pod.
func inCluster() bool {
	return os.Getenv("KUBERNETES_SERVICE_HOST") != ""
}
