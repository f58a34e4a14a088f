//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/garbagecollection"
	"github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/lifecycle"
	"github.com/stowage-k8s/stowage/pkg/controllers/termination"
	"github.com/stowage-k8s/stowage/providers/fake"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// lifeWait bounds every wait in these suites; it is a deadline for a
// condition to hold, never an assertion about how long something took.
const lifeWait = 90 * time.Second

// lifeCluster is a control plane with the fake cloud.
type lifeCluster struct {
	cp    *controlplane.ControlPlane
	cloud *fake.Cloud
}

func lifeStartCluster(t *testing.T) *lifeCluster {
	t.Helper()
	lifeLogOnce.Do(func() {
		// Controller logs go to stderr with -v only: a logger bound to one
		// test's t would panic when another test's controllers log later.
		out := io.Discard
		if testing.Verbose() {
			out = os.Stderr
		}
		log.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(out)))
	})
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	return &lifeCluster{cp: cp, cloud: lifeNewCloud(t, cp)}
}

// lifeNewCloud is a fake cloud recording its machines in the cluster, as a
// restarted controller process would build it again. It reads through the
// uncached client so an idempotent retry always sees the first launch.
func lifeNewCloud(t *testing.T, cp *controlplane.ControlPlane) *fake.Cloud {
	t.Helper()
	cloud, err := fake.New(fake.Options{Client: cp.Client, ClusterName: "life-e2e"})
	if err != nil {
		t.Fatalf("fake cloud: %v", err)
	}
	t.Cleanup(cloud.Stop)
	return cloud
}

// lifeManager runs the lifecycle, termination and garbage-collection
// controllers until stop is called (a crash, as far as the cluster can tell).
type lifeManager struct {
	stop context.CancelFunc
	done chan error
}

func lifeStartManager(t *testing.T, cp *controlplane.ControlPlane, cloud cloudprovider.CloudProvider,
	unavailable *cloudprovider.UnavailableOfferings) *lifeManager {
	t.Helper()
	mgr, err := manager.New(cp.Config, manager.Options{
		Scheme:                 cp.Scheme,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatalf("manager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rec := mgr.GetEventRecorder("stowage")
	regs := []interface {
		Register(context.Context, manager.Manager) error
	}{
		lifecycle.NewController(lifecycle.Deps{Client: mgr.GetClient(), CloudProvider: cloud, Recorder: rec,
			Unavailable: unavailable}),
		termination.NewController(termination.Deps{Client: mgr.GetClient(), CloudProvider: cloud, Recorder: rec,
			Options: termination.Options{DrainRequeue: 500 * time.Millisecond}}),
		garbagecollection.NewController(garbagecollection.Deps{Client: mgr.GetClient(), CloudProvider: cloud, Recorder: rec,
			Options: garbagecollection.Options{Interval: time.Second, InstanceGrace: 3 * time.Second}}),
	}
	for _, r := range regs {
		if err := r.Register(ctx, mgr); err != nil {
			cancel()
			t.Fatalf("registering %T: %v", r, err)
		}
	}
	m := &lifeManager{stop: cancel, done: make(chan error, 1)}
	go func() { m.done <- mgr.Start(ctx) }()
	t.Cleanup(func() { m.halt(t) })
	return m
}

// halt stops the manager and waits for it; safe to call twice.
func (m *lifeManager) halt(t *testing.T) {
	t.Helper()
	m.stop()
	if err, ok := <-m.done; ok {
		close(m.done)
		if err != nil {
			t.Errorf("manager: %v", err)
		}
	}
}

func lifeClaim(name string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodePool: "e2e", "team": "ml"}},
		Spec: v1.NodeClaimSpec{
			Offerings:   offerings,
			ExpireAfter: v1.Never,
			Resources: v1.ResourceRequirements{Requests: corev1.ResourceList{
				v1.ResourceNvidiaGPU: resource.MustParse("1"),
			}},
		},
	}
}

func lifeOffering(instanceType, zone, capacityType string) v1.OfferingChoice {
	return v1.OfferingChoice{InstanceType: instanceType, Zone: zone, CapacityType: capacityType}
}

// lifeEventually polls cond until it holds or lifeWait passes.
func lifeEventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lifeWait)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

// lifeWaitReady waits until the claim is Ready and its Node released to the
// scheduler. The controller marks a claim Ready only once the unregistered
// taint is gone; the Node is read here as well so that a test that goes on
// to schedule pods does not rest on the controller's view alone.
func lifeWaitReady(t *testing.T, c client.Client, name string) *v1.NodeClaim {
	t.Helper()
	claim := &v1.NodeClaim{}
	lifeEventually(t, "nodeclaim "+name+" Ready and its node released", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, claim); err != nil {
			return false, err
		}
		if !slices.ContainsFunc(claim.Status.Conditions, func(c metav1.Condition) bool {
			return c.Type == v1.ConditionReady && c.Status == metav1.ConditionTrue
		}) {
			return false, nil
		}
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: claim.Status.NodeName}, node); err != nil {
			return false, err
		}
		return !slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == v1.UnregisteredTaintKey }), nil
	})
	return claim
}

func lifeWaitGone(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	lifeEventually(t, fmt.Sprintf("%T %s deleted", obj, obj.GetName()), func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		return client.IgnoreNotFound(err) == nil && err != nil, client.IgnoreNotFound(err)
	})
}

// lifeMachines lists the fake cloud's machines.
func lifeMachines(t *testing.T, cloud *fake.Cloud) []*v1.NodeClaim {
	t.Helper()
	list, err := cloud.List(context.Background())
	if err != nil {
		t.Fatalf("listing machines: %v", err)
	}
	return list
}

// lifeEvents returns the events.k8s.io Events about an object, by reason.
func lifeEvents(ctx context.Context, c client.Client, namespace, name string) (map[string]int, error) {
	list := &eventsv1.EventList{}
	if err := c.List(ctx, list, client.InNamespace(namespace)); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, ev := range list.Items {
		if ev.Regarding.Name == name {
			out[ev.Reason]++
		}
	}
	return out, nil
}

var lifeLogOnce sync.Once
