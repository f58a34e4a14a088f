package operator

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

func TestFlagsAndEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    func(*Options)
		wantErr string
	}{
		{name: "defaults", want: func(*Options) {}},
		{
			name: "environment",
			env: map[string]string{
				"STOWAGE_CLUSTER_NAME":        "prod",
				"STOWAGE_BATCH_IDLE_DURATION": "2s",
				"STOWAGE_LEADER_ELECT":        "false",
				"STOWAGE_PPROF_BIND_ADDRESS":  "127.0.0.1:6060",
			},
			want: func(o *Options) {
				o.ClusterName = "prod"
				o.BatchIdleDuration = 2 * time.Second
				o.LeaderElection = false
				o.PprofAddr = "127.0.0.1:6060"
			},
		},
		{
			name: "flags win over the environment",
			env:  map[string]string{"STOWAGE_CLUSTER_NAME": "prod", "STOWAGE_LOG_FORMAT": "json"},
			args: []string{"--cluster-name=staging", "--batch-max-duration=20s", "--kube-client-qps=50", "--kube-client-burst=80"},
			want: func(o *Options) {
				o.ClusterName = "staging"
				o.LogFormat = "json"
				o.BatchMaxDuration = 20 * time.Second
				o.KubeClientQPS = 50
				o.KubeClientBurst = 80
			},
		},
		{
			name:    "bad environment value names the variable",
			env:     map[string]string{"STOWAGE_BATCH_MAX_DURATION": "soon"},
			wantErr: "environment variable STOWAGE_BATCH_MAX_DURATION",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultOptions()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			got.AddFlags(fs)
			// Parse first, as cobra does before RunE: flags must still win.
			err := fs.Parse(tt.args)
			if err == nil {
				err = BindEnv(fs, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := DefaultOptions()
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("options mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Options)
		wantErr string
	}{
		{"a provider is all a valid configuration needs", func(*Options) {}, ""},
		{"no provider", func(o *Options) { o.CloudProvider = "" }, "--cloud-provider is required"},
		{"lease shorter than the renew deadline", func(o *Options) { o.LeaseDuration = 5 * time.Second }, "--leader-election-lease-duration"},
		{"no leader election, no lease checks", func(o *Options) { o.LeaderElection, o.RetryPeriod = false, 0 }, ""},
		// client-go refuses a renew deadline within 1.2 retry periods at start,
		// naming no flag: refused here instead.
		{"renew deadline within a jittered retry", func(o *Options) { o.RetryPeriod, o.RenewDeadline = 2*time.Second, 2100*time.Millisecond },
			"--leader-election-renew-deadline"},
		{"no cluster name", func(o *Options) { o.ClusterName = "" }, "--cluster-name"},
		{"zero idle", func(o *Options) { o.BatchIdleDuration = 0 }, "--batch-idle-duration"},
		{"max below idle", func(o *Options) { o.BatchMaxDuration = 500 * time.Millisecond }, "--batch-max-duration"},
		{"bad format", func(o *Options) { o.LogFormat = "xml" }, "--log-format"},
		{"unknown gang source", func(o *Options) { o.GangSources = "jobset,mpijob" }, "--gang-sources"},
		{"gang sources", func(o *Options) { o.GangSources = "jobset,leaderworkerset,indexed-job" }, ""},
		{"bad level", func(o *Options) { o.LogLevel = "loud" }, "--log-level"},
		{"verbosity level", func(o *Options) { o.LogLevel = "3" }, ""},
		{"zero qps", func(o *Options) { o.KubeClientQPS = 0 }, "--kube-client-qps"},
		{"zero burst", func(o *Options) { o.KubeClientBurst = 0 }, "--kube-client-burst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := DefaultOptions()
			o.CloudProvider = "fake"
			tt.mutate(&o)
			err := o.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestNewLoggerFormats(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		var buf bytes.Buffer
		o := DefaultOptions()
		o.LogFormat = format
		logger, err := NewLogger(o, &buf)
		if err != nil {
			t.Fatal(err)
		}
		logger.Info("hello", "nodepool", "gpu")
		logger.V(1).Info("hidden at info level")
		out := buf.String()
		if isJSON := strings.HasPrefix(out, "{"); isJSON != (format == "json") {
			t.Errorf("format %s wrote %q", format, out)
		}
		if !strings.Contains(out, "hello") || strings.Contains(out, "hidden") {
			t.Errorf("format %s wrote %q, want only the info line", format, out)
		}
	}
}

// Issue 10 #9: forgetting --cloud-provider must not run the fake cloud.
func TestNoDefaultCloud(t *testing.T) {
	if p := DefaultOptions().CloudProvider; p != "" {
		t.Errorf("DefaultOptions().CloudProvider = %q; there must be no default cloud", p)
	}
	if err := DefaultOptions().Validate(); err == nil || !strings.Contains(err.Error(), "--cloud-provider is required") {
		t.Errorf("Validate() of the defaults = %v, want --cloud-provider is required", err)
	}
}
