//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/providers/fake"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// e2eOptions say how far a suite departs from production defaults. The zero
// value is production: the fake cloud's default launch latency, the default
// batch windows, disruption and interruption on with their defaults.
type e2eOptions struct {
	clusterName string
	// instantLaunch registers a machine's Node before Create returns.
	instantLaunch bool
	// noDisruption and noInterruption leave those controllers out, for
	// suites that start their own once the cluster is set up.
	noDisruption, noInterruption bool
	// noLeaderElection runs without a lease (faster start).
	noLeaderElection bool
	// batchIdle and batchMax override the provisioning batch window.
	batchIdle, batchMax time.Duration
}

// e2eCluster is a local control plane with the whole operator running
// in-process against the fake cloud.
type e2eCluster struct {
	cp    *controlplane.ControlPlane
	c     client.Client
	cloud *fake.Cloud
}

var e2eLogOnce sync.Once

// e2eStart starts a control plane and the operator; both stop when the test ends.
func e2eStart(t *testing.T, o e2eOptions) *e2eCluster {
	t.Helper()
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	return e2eStartOperator(t, cp, o)
}

// e2eSetLogger gives controller-runtime's logger (the operator's and
// envtest's) a sink once per test binary: debug to stderr with -v, else
// discarded. Without it envtest warns that no logger was set.
func e2eSetLogger(t *testing.T) {
	t.Helper()
	e2eLogOnce.Do(func() {
		out := io.Discard
		if testing.Verbose() {
			out = os.Stderr
		}
		lo := operator.DefaultOptions()
		lo.LogLevel = "debug"
		logger, err := operator.NewLogger(lo, out)
		if err != nil {
			t.Fatal(err)
		}
		log.SetLogger(logger)
	})
}

// e2eStartOperator runs the operator against a running control plane, for
// tests that set the cluster up before the operator starts.
func e2eStartOperator(t *testing.T, cp *controlplane.ControlPlane, o e2eOptions) *e2eCluster {
	t.Helper()
	e2eSetLogger(t)
	ec := &e2eCluster{cp: cp, c: cp.Client}

	opts := operator.DefaultOptions()
	opts.CloudProvider = fake.Name
	opts.ClusterName = o.clusterName
	// Elect a leader as in production: the provisioning loop and the fake
	// cloud only run once this replica holds the lease.
	opts.LeaderElection = !o.noLeaderElection
	opts.LeaderElectionNamespace = metav1.NamespaceDefault
	opts.MetricsAddr = "0"
	opts.HealthProbeAddr = "0"
	if o.batchIdle > 0 {
		opts.BatchIdleDuration = o.batchIdle
	}
	if o.batchMax > 0 {
		opts.BatchMaxDuration = o.batchMax
	}
	opts.Disruption = !o.noDisruption
	opts.Interruption = !o.noInterruption
	latency := fake.DefaultLaunchLatency
	if o.instantLaunch {
		latency = 0
	}
	ctx, cancel := context.WithCancel(context.Background())
	op, err := operator.New(ctx, cp.Config, opts,
		operator.WithSkipNameValidation(),
		operator.WithProvider(fake.Name, func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
			cloud, err := fake.New(fake.Options{Client: d.Client, ClusterName: d.ClusterName, Clock: d.Clock, LaunchLatency: latency})
			ec.cloud = cloud
			return cloud, err
		}))
	if err != nil {
		cancel()
		t.Fatalf("building the operator: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- op.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator: %v", err)
		}
	})
	return ec
}

// e2eMachines counts the fake cloud's machines of a pool: its instance records.
func e2eMachines(ctx context.Context, c client.Client, pool string) (int, error) {
	list := &corev1.ConfigMapList{}
	if err := c.List(ctx, list, client.InNamespace(fake.Namespace), client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		return 0, fmt.Errorf("listing fake machines of nodepool %s: %w", pool, err)
	}
	return len(list.Items), nil
}
