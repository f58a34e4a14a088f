package operator

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/stowage-k8s/stowage/pkg/controllers/provisioning"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// EnvPrefix prefixes the environment variable of every flag:
// --batch-idle-duration is also read from STOWAGE_BATCH_IDLE_DURATION.
const EnvPrefix = "STOWAGE_"

// Options configure the operator. Zero values take the defaults of
// DefaultOptions.
type Options struct {
	// CloudProvider names the provider to run, a key of the provider registry.
	// It has no default: a controller that forgot it must not run the fake
	// cloud and create Nodes with no machine behind them.
	CloudProvider string
	// ClusterName tags every machine Stowage launches, so clusters sharing a
	// cloud account never touch each other's machines.
	ClusterName string
	// BatchIdleDuration and BatchMaxDuration bound the provisioning batch window.
	BatchIdleDuration time.Duration
	BatchMaxDuration  time.Duration
	// MetricsAddr serves Prometheus metrics; "0" disables it.
	MetricsAddr string
	// MetricsSecure serves metrics over HTTPS behind controller-runtime's
	// authentication and authorization filter: a scraper needs a token
	// allowed to GET /metrics (the chart turns it on).
	MetricsSecure bool
	// HealthProbeAddr serves /healthz and /readyz; "0" disables it.
	HealthProbeAddr string
	// PprofAddr serves Go's net/http/pprof profiles (heap, CPU,
	// goroutines); "0", the default, disables it.
	PprofAddr string
	// LeaderElection makes replicas elect one leader that decides and launches.
	LeaderElection bool
	// LeaderElectionNamespace holds the lease. Default: the pod's namespace
	// in a cluster, else "default".
	LeaderElectionNamespace string
	// LeaseDuration, RenewDeadline and RetryPeriod time leader election:
	// a new leader takes over at most LeaseDuration after the old one died.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// LogLevel is debug, info or error, or a logr verbosity such as 2.
	LogLevel string
	// LogFormat is json or console; empty picks json in a cluster and console elsewhere.
	LogFormat string
	// GracefulShutdownTimeout bounds how long running work may take to stop.
	GracefulShutdownTimeout time.Duration
	// Disruption runs expiry, drift, emptiness and consolidation. Turning it
	// off freezes voluntary disruption cluster-wide (e.g. during an incident)
	// without touching NodePools.
	Disruption bool
	// Interruption handles the cloud's interruption notices when the provider
	// delivers them.
	Interruption bool
	// CostInterval is how often the stowage_cost_* gauges are recomputed.
	CostInterval time.Duration
	// KubeClientQPS and KubeClientBurst bound the controller's requests to
	// the API server per resource type (controller-runtime gives each kind
	// its own client and limiter). client-go's own default (5/s, burst 10)
	// throttles a scale-out of hundreds of NodeClaims for minutes.
	KubeClientQPS   float32
	KubeClientBurst int
	// GangSources opts workload kinds into gang planning (comma-separated:
	// jobset, leaderworkerset, indexed-job). Stowage's own key and Kueue's
	// pod groups are always gangs.
	GangSources string
}

// DefaultOptions are the options of a production install.
func DefaultOptions() Options {
	return Options{
		ClusterName:             "stowage",
		BatchIdleDuration:       provisioning.DefaultBatchIdleDuration,
		BatchMaxDuration:        provisioning.DefaultBatchMaxDuration,
		MetricsAddr:             ":8080",
		HealthProbeAddr:         ":8081",
		PprofAddr:               "0",
		LeaderElection:          true,
		LeaseDuration:           15 * time.Second,
		RenewDeadline:           10 * time.Second,
		RetryPeriod:             2 * time.Second,
		LogLevel:                "info",
		GracefulShutdownTimeout: 30 * time.Second,
		Disruption:              true,
		Interruption:            true,
		CostInterval:            time.Minute,
		KubeClientQPS:           200,
		KubeClientBurst:         300,
	}
}

// AddFlags registers a flag for every option, defaulting to o's values.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.CloudProvider, "cloud-provider", o.CloudProvider,
		"required: the cloud to buy machines from, e.g. aws; fake runs simulated machines for tests and demos")
	fs.StringVar(&o.ClusterName, "cluster-name", o.ClusterName, "name tagging every machine this cluster's Stowage launches")
	fs.DurationVar(&o.BatchIdleDuration, "batch-idle-duration", o.BatchIdleDuration,
		"close a provisioning batch once no new pending pod arrived for this long")
	fs.DurationVar(&o.BatchMaxDuration, "batch-max-duration", o.BatchMaxDuration,
		"close a provisioning batch this long after it opened")
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", o.MetricsAddr, `address of the Prometheus metrics endpoint; "0" disables it`)
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", o.MetricsSecure,
		"serve metrics over HTTPS to callers whose token may GET /metrics (authenticated and authorized by the API server)")
	fs.StringVar(&o.HealthProbeAddr, "health-probe-bind-address", o.HealthProbeAddr, `address of /healthz and /readyz; "0" disables it`)
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", o.PprofAddr,
		`address of Go's /debug/pprof profiles (heap, CPU, goroutines), unauthenticated: bind it to localhost or leave it "0" (off)`)
	fs.BoolVar(&o.LeaderElection, "leader-elect", o.LeaderElection, "elect a leader among replicas; only the leader decides and launches")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", o.LeaderElectionNamespace,
		"namespace of the leader election lease (default: the pod's namespace)")
	fs.DurationVar(&o.LeaseDuration, "leader-election-lease-duration", o.LeaseDuration,
		"how long a leader's lease lasts; a standby takes over at most this long after the leader dies")
	fs.DurationVar(&o.RenewDeadline, "leader-election-renew-deadline", o.RenewDeadline,
		"how long the leader keeps trying to renew its lease before it stops leading")
	fs.DurationVar(&o.RetryPeriod, "leader-election-retry-period", o.RetryPeriod, "how often candidates try to take or renew the lease")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, error, or a verbosity such as 2")
	fs.StringVar(&o.LogFormat, "log-format", o.LogFormat, "json or console (default: json in a cluster, console elsewhere)")
	fs.DurationVar(&o.GracefulShutdownTimeout, "graceful-shutdown-timeout", o.GracefulShutdownTimeout,
		"how long running work may take to stop on shutdown")
	fs.BoolVar(&o.Disruption, "disruption", o.Disruption,
		"run repair, expiry, drift, emptiness and consolidation; false freezes voluntary disruption")
	fs.BoolVar(&o.Interruption, "interruption", o.Interruption,
		"react to the cloud's interruption notices (spot reclaims, rebalance hints, maintenance)")
	fs.DurationVar(&o.CostInterval, "cost-interval", o.CostInterval, "how often the stowage_cost_* gauges are recomputed")
	fs.Float32Var(&o.KubeClientQPS, "kube-client-qps", o.KubeClientQPS, "requests per second the controller may send to the API server, per resource type")
	fs.IntVar(&o.KubeClientBurst, "kube-client-burst", o.KubeClientBurst, "requests the controller may send to the API server in a burst above --kube-client-qps")
	fs.StringVar(&o.GangSources, "gang-sources", o.GangSources,
		"workload kinds whose pods are planned all-or-nothing as gangs, comma-separated: jobset, leaderworkerset, indexed-job")
}

// BindEnv sets every flag of fs that was not given on the command line from
// its environment variable (EnvPrefix plus the flag name in upper snake case),
// if set. Call it before or after Parse: command-line flags always win.
func BindEnv(fs *pflag.FlagSet, lookup func(string) (string, bool)) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := EnvName(f.Name)
		if v, ok := lookup(name); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment variable %s: %w", name, e)
			}
		}
	})
	return err
}

// EnvName is the environment variable of a flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Validate reports the first invalid option, naming its flag.
func (o Options) Validate() error {
	switch {
	case o.CloudProvider == "":
		return fmt.Errorf("--cloud-provider is required (%s): the cloud to buy machines from, e.g. aws; "+
			"fake runs simulated machines and belongs in tests and demos only", EnvName("cloud-provider"))
	case o.ClusterName == "":
		return fmt.Errorf("--cluster-name must be set")
	case o.BatchIdleDuration <= 0:
		return fmt.Errorf("--batch-idle-duration must be positive, got %s", o.BatchIdleDuration)
	case o.BatchMaxDuration < o.BatchIdleDuration:
		return fmt.Errorf("--batch-max-duration (%s) must be at least --batch-idle-duration (%s)", o.BatchMaxDuration, o.BatchIdleDuration)
	case o.CostInterval <= 0:
		return fmt.Errorf("--cost-interval must be positive, got %s", o.CostInterval)
	case o.KubeClientQPS <= 0:
		return fmt.Errorf("--kube-client-qps must be positive, got %g", o.KubeClientQPS)
	case o.KubeClientBurst < 1:
		return fmt.Errorf("--kube-client-burst must be at least 1, got %d", o.KubeClientBurst)
	case o.LeaderElection && (o.RetryPeriod <= 0 || float64(o.RenewDeadline) <= leaderelection.JitterFactor*float64(o.RetryPeriod) || o.LeaseDuration <= o.RenewDeadline):
		// client-go's own rule: the renew deadline must outlast a jittered retry.
		return fmt.Errorf("leader election needs 0 < %g x --leader-election-retry-period (%s) < --leader-election-renew-deadline (%s) < --leader-election-lease-duration (%s)",
			leaderelection.JitterFactor, o.RetryPeriod, o.RenewDeadline, o.LeaseDuration)
	case o.LogFormat != "" && o.LogFormat != "json" && o.LogFormat != "console":
		return fmt.Errorf("--log-format must be json or console, got %q", o.LogFormat)
	}
	if _, err := scheduling.ParseGangSources(o.GangSources); err != nil {
		return fmt.Errorf("--gang-sources: %w", err)
	}
	if _, err := parseLevel(o.LogLevel); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	return nil
}
