//go:build unix

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/disruption"
	"github.com/stowage-k8s/stowage/pkg/controllers/interruption"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
	"github.com/stowage-k8s/stowage/providers/fake"
)

// disrWait bounds every wait in the disruption suites; it is a deadline for
// a condition to hold, never an assertion about how long something took.
const disrWait = 2 * time.Minute

// disrCluster is a control plane running the operator (provisioning,
// lifecycle, termination) against the fake cloud.
type disrCluster = e2eCluster

// disrStart runs the operator without its disruption and interruption
// controllers: the test starts its own once its cluster is set up
// (disrStartControllers).
func disrStart(t *testing.T, clusterName string) *disrCluster {
	t.Helper()
	return e2eStart(t, e2eOptions{clusterName: clusterName, noDisruption: true, noInterruption: true,
		noLeaderElection: true, batchIdle: 200 * time.Millisecond, batchMax: 2 * time.Second})
}

// disrStartControllers runs the disruption and interruption controllers in
// a manager of their own, so a test can set its cluster up before they act.
func disrStartControllers(t *testing.T, dc *disrCluster) {
	t.Helper()
	mgr, err := manager.New(dc.cp.Config, manager.Options{
		Scheme:                 dc.cp.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := index.Register(ctx, mgr.GetFieldIndexer()); err != nil {
		cancel()
		t.Fatal(err)
	}
	solve := disruption.SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	rec := mgr.GetEventRecorder("stowage")
	ctrls := []interface {
		Register(context.Context, manager.Manager) error
	}{
		disruption.NewController(disruption.Deps{Client: mgr.GetClient(), CloudProvider: dc.cloud, Solver: solve, Recorder: rec,
			Options: disruption.Options{Interval: time.Second}}),
		interruption.NewController(interruption.Deps{Client: mgr.GetClient(), Source: dc.cloud, CloudProvider: dc.cloud,
			Solver: solve, Recorder: rec, Options: interruption.Options{CheckInterval: 500 * time.Millisecond}}),
	}
	for _, r := range ctrls {
		if err := r.Register(ctx, mgr); err != nil {
			cancel()
			t.Fatalf("registering %T: %v", r, err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("disruption manager: %v", err)
		}
	})
}

// disrEventually polls cond until it holds or disrWait passes.
func disrEventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), disrWait)
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

func disrCreate(t *testing.T, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
}

// disrPool is a NodePool that consolidates after 3 s, protects nodes for
// their first 10 s, and lets every node be disrupted at once.
func disrPool(name string, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodePool {
	return &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.NodePoolSpec{
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{Requirements: reqs, ExpireAfter: v1.Never}},
			Disruption: v1.Disruption{
				ConsolidationPolicy: v1.ConsolidationPolicyWhenEmptyOrUnderutilized,
				ConsolidateAfter:    v1.DurationOf(3 * time.Second),
				MinNodeLifetime:     &metav1.Duration{Duration: 10 * time.Second},
				Budgets:             []v1.Budget{{Nodes: "100%"}},
			},
		},
	}
}

func disrReq(key string, op corev1.NodeSelectorOperator, values ...string) v1.NodeSelectorRequirementWithMinValues {
	return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: values}
}

// disrDeployment runs replicas pods selecting the pool, each requesting
// resources as (name, quantity) pairs.
func disrDeployment(ns, name, pool string, replicas int32, requests ...string) *appsv1.Deployment {
	req := corev1.ResourceList{}
	for i := 0; i < len(requests); i += 2 {
		req[corev1.ResourceName(requests[i])] = resource.MustParse(requests[i+1])
	}
	limits := corev1.ResourceList{}
	if gpu, ok := req[v1.ResourceNvidiaGPU]; ok {
		limits[v1.ResourceNvidiaGPU] = gpu
	}
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{v1.LabelNodePool: pool},
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{Name: "main", Image: "example/app:1",
						Resources: corev1.ResourceRequirements{Requests: req, Limits: limits}}},
				},
			},
		},
	}
}

// disrPods returns the app's pods, and how many are Running and not deleting.
func disrPods(ctx context.Context, c client.Client, ns, app string) ([]corev1.Pod, int, error) {
	list := &corev1.PodList{}
	if err := c.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
		return nil, 0, fmt.Errorf("listing pods of %s: %w", app, err)
	}
	running := 0
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			running++
		}
	}
	return list.Items, running, nil
}

// disrClaims returns the pool's NodeClaims that are not being deleted.
func disrClaims(ctx context.Context, c client.Client, pool string) ([]v1.NodeClaim, error) {
	list := &v1.NodeClaimList{}
	if err := c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		return nil, fmt.Errorf("listing nodeclaims: %w", err)
	}
	var out []v1.NodeClaim
	for _, cl := range list.Items {
		if cl.DeletionTimestamp == nil {
			out = append(out, cl)
		}
	}
	return out, nil
}

func disrReady(cl *v1.NodeClaim) bool {
	for _, cond := range cl.Status.Conditions {
		if cond.Type == v1.ConditionReady {
			return cond.Status == metav1.ConditionTrue
		}
	}
	return false
}

// disrSetPrice sets an offering's price in the fake cloud.
func disrSetPrice(t *testing.T, cloud *fake.Cloud, instanceType, zone, capacityType string, price float64) {
	t.Helper()
	id := cloudprovider.OfferingID{InstanceType: instanceType, Zone: zone, CapacityType: capacityType}
	if err := cloud.SetPrice(id, price); err != nil {
		t.Fatal(err)
	}
}
