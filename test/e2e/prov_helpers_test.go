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
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
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

// provWait bounds every wait in the provisioning suite; it is a deadline for
// a condition to hold, never an assertion about how long something took.
const provWait = 2 * time.Minute

// provCluster is a local control plane with the whole operator running
// in-process against the fake cloud.
type provCluster struct {
	cp    *controlplane.ControlPlane
	c     client.Client
	cloud *fake.Cloud
}

var provLogOnce sync.Once

func provStart(t *testing.T) *provCluster {
	t.Helper()
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	return provStartOperator(t, cp)
}

// provStartOperator runs the operator against a running control plane.
func provStartOperator(t *testing.T, cp *controlplane.ControlPlane) *provCluster {
	t.Helper()
	provLogOnce.Do(func() {
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
	pc := &provCluster{cp: cp, c: cp.Client}
	opts := operator.DefaultOptions()
	opts.CloudProvider = fake.Name
	opts.ClusterName = "prov-e2e"
	// Elect a leader as in production: the provisioning loop and the fake
	// cloud only run once this replica holds the lease.
	opts.LeaderElection = true
	opts.LeaderElectionNamespace = metav1.NamespaceDefault
	opts.MetricsAddr = "0"
	opts.HealthProbeAddr = "0"
	opts.BatchIdleDuration = 200 * time.Millisecond
	opts.BatchMaxDuration = 2 * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	op, err := operator.New(ctx, cp.Config, opts,
		operator.WithSkipNameValidation(),
		operator.WithProvider(fake.Name, func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
			cloud, err := fake.New(fake.Options{Client: d.Client, ClusterName: d.ClusterName, Clock: d.Clock})
			pc.cloud = cloud
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
	return pc
}

// provEventually polls cond until it holds or provWait passes.
func provEventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), provWait)
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

func provCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// provPool is a NodePool with the given requirements and a NoSchedule taint.
func provPool(name, taintKey string, limits corev1.ResourceList, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodePool {
	return &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.NodePoolSpec{
			Limits: v1.Limits(limits),
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
				Requirements: reqs,
				Taints:       []corev1.Taint{{Key: taintKey, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
				ExpireAfter:  v1.Never,
			}},
		},
	}
}

func provReq(key string, op corev1.NodeSelectorOperator, values ...string) v1.NodeSelectorRequirementWithMinValues {
	return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: values}
}

// provPod requests resources (name, quantity pairs) and tolerates the given taint keys.
func provPod(ns, name string, selector map[string]string, tolerate []string, requests ...string) *corev1.Pod {
	req := corev1.ResourceList{}
	for i := 0; i < len(requests); i += 2 {
		req[corev1.ResourceName(requests[i])] = resource.MustParse(requests[i+1])
	}
	limits := corev1.ResourceList{}
	if gpu, ok := req[v1.ResourceNvidiaGPU]; ok {
		limits[v1.ResourceNvidiaGPU] = gpu
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			NodeSelector: selector,
			Containers: []corev1.Container{{Name: "main", Image: "example/app:1",
				Resources: corev1.ResourceRequirements{Requests: req, Limits: limits}}},
		},
	}
	for _, key := range tolerate {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists})
	}
	return p
}

// provEventNotes returns the notes of the events.k8s.io Events with reason
// about the named object.
func provEventNotes(ctx context.Context, c client.Client, ns, name, reason string) ([]string, error) {
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("listing events: %w", err)
	}
	var out []string
	for _, ev := range list.Items {
		if ev.Regarding.Name == name && ev.Reason == reason {
			out = append(out, ev.Note)
		}
	}
	return out, nil
}

// provClaims lists the NodeClaims of a pool.
func provClaims(ctx context.Context, c client.Client, pool string) ([]v1.NodeClaim, error) {
	list := &v1.NodeClaimList{}
	if err := c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		return nil, fmt.Errorf("listing nodeclaims: %w", err)
	}
	return list.Items, nil
}
