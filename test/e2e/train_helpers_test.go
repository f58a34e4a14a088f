//go:build unix

package e2e

import (
	"context"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/providers/fake"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// trnWait bounds every wait in the training suites; it is a deadline for a
// condition to hold, never an assertion about how long something took.
const trnWait = 3 * time.Minute

// trnCluster is a local control plane with the whole operator running
// in-process against the fake cloud, with production defaults: the fake's
// launch latency, the default batch window, disruption and interruption on.
type trnCluster struct {
	cp    *controlplane.ControlPlane
	c     client.Client
	cloud *fake.Cloud
}

var trnLogOnce sync.Once

func trnStart(t *testing.T, clusterName string, mutate func(*operator.Options), extra ...operator.Option) *trnCluster {
	t.Helper()
	trnLogOnce.Do(func() {
		out := io.Discard
		if testing.Verbose() {
			out = os.Stderr
		}
		o := operator.DefaultOptions()
		o.LogLevel = "debug"
		logger, err := operator.NewLogger(o, out)
		if err != nil {
			t.Fatal(err)
		}
		log.SetLogger(logger)
	})
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	tc := &trnCluster{cp: cp, c: cp.Client}
	opts := operator.DefaultOptions()
	opts.CloudProvider = fake.Name
	opts.ClusterName = clusterName
	opts.LeaderElectionNamespace = metav1.NamespaceDefault
	opts.MetricsAddr = "0"
	opts.HealthProbeAddr = "0"
	if mutate != nil {
		mutate(&opts)
	}
	ctx, cancel := context.WithCancel(context.Background())
	options := append([]operator.Option{
		operator.WithSkipNameValidation(),
		operator.WithProvider(fake.Name, func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
			cloud, err := fake.New(fake.Options{Client: d.Client, ClusterName: d.ClusterName, Clock: d.Clock,
				LaunchLatency: fake.DefaultLaunchLatency})
			tc.cloud = cloud
			return cloud, err
		}),
	}, extra...)
	op, err := operator.New(ctx, cp.Config, opts, options...)
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
	return tc
}

// trnEventually polls cond until it holds or trnWait passes.
func trnEventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), trnWait)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		last = err
		return err == nil && ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

func trnCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// trnPool is a pool of one instance type, on-demand, tainted with its name.
func trnPool(name string, types ...string) *v1.NodePool {
	return &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			Requirements: []v1.NodeSelectorRequirementWithMinValues{
				{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: types},
				{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{v1.CapacityTypeOnDemand}},
			},
			Taints:      []corev1.Taint{{Key: name, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
			ExpireAfter: v1.Never,
		}}},
	}
}

// trnClaims lists the NodeClaims of a pool, without those being deleted.
func trnClaims(ctx context.Context, c client.Client, pool string) ([]v1.NodeClaim, error) {
	list := &v1.NodeClaimList{}
	if err := c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		return nil, err
	}
	var out []v1.NodeClaim
	for _, cl := range list.Items {
		if cl.DeletionTimestamp.IsZero() {
			out = append(out, cl)
		}
	}
	return out, nil
}

// trnRunning reports whether the named pods all run, and their nodes.
func trnRunning(ctx context.Context, c client.Client, ns string, names ...string) (map[string]*corev1.Node, bool, error) {
	out := map[string]*corev1.Node{}
	for _, n := range names {
		pod := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, pod); err != nil {
			return nil, false, client.IgnoreNotFound(err)
		}
		if pod.Status.Phase != corev1.PodRunning {
			return nil, false, nil
		}
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
			return nil, false, err
		}
		out[n] = node
	}
	return out, true, nil
}
