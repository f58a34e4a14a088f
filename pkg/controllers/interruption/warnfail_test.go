package interruption

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// One pod whose annotation cannot be written (an admission webhook that
// refuses pod updates, or is down with failurePolicy Fail) must not stop
// the interrupted node from being replaced and drained: the other pods
// were told, and the cloud takes the machine at its deadline regardless.
func TestPodThatCannotBeToldDoesNotHoldTheDrain(t *testing.T) {
	e := newEnv(t, 2)
	refusing := interceptor.NewClient(e.client.(client.WithWatch), interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if pod, ok := obj.(*corev1.Pod); ok && pod.Name == "train-b" {
				return errors.New(`admission webhook "policy.example.com" denied the request`)
			}
			return c.Patch(ctx, obj, p, opts...)
		}})
	e.ctrl = e.controllerOn(refusing)
	deadline := start.Add(2 * time.Minute)
	ev := e.event(cloudprovider.InterruptionSpotReclaim, deadline)
	for range handleAttempts {
		_ = e.ctrl.Handle(context.Background(), ev) // Start retries a failed event
	}
	if got := e.replacements(t); len(got) != 1 {
		t.Errorf("replacements = %v, want one pre-spun for the pods", got)
	}
	e.clock.Step(time.Minute) // DrainLead before the deadline
	_ = e.ctrl.Progress(context.Background())
	if !e.claimGone(t) {
		t.Error("interrupted node not drained DrainLead before its deadline: one pod's refused annotation held it")
	}
}
