package fake

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	fakeclient "sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// failingNodeCreates makes the env's client fail the next n Node creates,
// as an overloaded API server would.
func failingNodeCreates(t *testing.T, e *env, n int32) {
	t.Helper()
	var left atomic.Int32
	left.Store(n)
	e.client = fakeclient.NewClientBuilder().WithScheme(newScheme(t)).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if _, ok := obj.(*corev1.Node); ok && left.Add(-1) >= 0 {
				return errors.New("injected: etcdserver: request timed out")
			}
			return c.Create(ctx, obj, opts...)
		},
	}).Build()
}

// The first Create's registration fails and it reports the error; the
// lifecycle's retry finds the instance by its client token and must see its
// Node registered, not a launched machine whose Node never comes.
func TestRetriedCreateRegistersTheNode(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	failingNodeCreates(t, e, 1)
	e.cloud = e.newCloud(t, nil)
	claim := newClaim("a", choice("m.large", zoneA, v1.CapacityTypeSpot))
	if _, err := e.cloud.Create(ctx, claim); err == nil {
		t.Fatal("first Create hid the failed registration")
	}
	launched, err := e.cloud.Create(ctx, claim)
	if err != nil {
		t.Fatalf("retried Create: %v", err)
	}
	if nodes := e.nodes(t); len(nodes) != 1 {
		t.Errorf("claim launched as %s but %d Nodes registered; want its Node", launched.Status.ProviderID, len(nodes))
	}
}

// A delayed registration keeps trying while the API server fails, with a
// growing backoff, and registers once it recovers.
func TestDelayedRegistrationKeepsTrying(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, nil)
	failingNodeCreates(t, e, 8)
	e.cloud = e.newCloud(t, func(o *Options) { o.LaunchLatency = 2 * time.Second })
	if _, err := e.cloud.Create(ctx, newClaim("a", choice("m.large", zoneA, v1.CapacityTypeSpot))); err != nil {
		t.Fatal(err)
	}
	// Step past each wait; the goroutine either waits again or registers.
	deadline := time.Now().Add(30 * time.Second)
	for len(e.nodes(t)) == 0 && time.Now().Before(deadline) {
		if e.clock.HasWaiters() {
			e.clock.Step(registerMaxBackoff)
		}
		time.Sleep(time.Millisecond)
	}
	e.cloud.Stop()
	if nodes := e.nodes(t); len(nodes) != 1 {
		t.Errorf("%d Nodes for a launched instance once the API server recovered; want 1", len(nodes))
	}
}
