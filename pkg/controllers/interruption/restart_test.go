package interruption

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// The leader dies right after it marked the claim Interrupted (and so
// acknowledged the event) but before it tainted the node and told the pods.
// The queue will not deliver the event again. The new leader adopts the
// claim from its mark, but must still cordon the node and warn the pods so a
// training job checkpoints before the reclaim.
func TestInterruptionAdoptedAfterACrashCordonsAndWarns(t *testing.T) {
	deadline := start.Add(10 * time.Minute)
	e := newEnv(t, 1)
	// Old leader: every Node patch and Pod patch fails from here on (it died
	// after markInterrupted).
	dead := interceptor.Funcs{Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
		switch obj.(type) {
		case *corev1.Node, *corev1.Pod:
			return errors.New("leader killed")
		}
		return c.Patch(ctx, obj, p, opts...)
	}}
	oldClient := interceptor.NewClient(e.client.(client.WithWatch), dead)
	old := e.controllerOn(oldClient)
	if err := old.Handle(context.Background(), e.event(cloudprovider.InterruptionSpotReclaim, deadline)); err == nil {
		t.Fatal("old leader's Handle succeeded; the crash was not simulated")
	}
	if e.acks.Load() != 1 {
		t.Fatalf("acks = %d; the event should already be acknowledged once the claim was marked", e.acks.Load())
	}
	claim := &v1.NodeClaim{}
	if err := e.client.Get(context.Background(), client.ObjectKey{Name: "c1"}, claim); err != nil {
		t.Fatal(err)
	}
	if claim.Annotations[v1.AnnotationInterruption] == "" {
		t.Fatal("claim not marked")
	}

	// New leader, same API state; the cloud does not send the event again.
	e.newLeader()
	e.progress(t)
	e.clock.Step(time.Minute)
	e.progress(t)

	e.cordonedAndWarned(t)
}

// The claim is a candidate of a drift command whose replacement is in
// flight when the cloud interrupts it. The first leader adopts the
// command's replacement (TestInterruptionAdoptsADisruptionCommandsReplacement);
// after a leader change the new leader adopts the Interrupted claim from its
// mark, but looks only for "interruption/<claim>" replacements, finds none,
// and buys a second machine for the same pods.
func TestNewLeaderAdoptsADisruptionCommandsReplacement(t *testing.T) {
	e := driftInFlight(t)
	ctx := context.Background()
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionScheduledMaintenance, start.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	if got := e.replacements(t); len(got) != 1 {
		t.Fatalf("before the restart: claims replacing c1 = %v, want only the drift replacement", got)
	}

	// The leader changes.
	e.newLeader()
	e.progress(t)
	e.clock.Step(time.Minute)
	e.progress(t)
	if got := e.replacements(t); len(got) != 1 || got[0] != "drift-replacement" {
		t.Errorf("after a leader change: claims replacing c1 = %v, want only the drift replacement (a second machine was bought for the same pods)", got)
	}
}

// Same gap without a crash: the first attempt marks the claim and tracks
// it, then the cordon fails (an API server timeout). The event is handled
// again after the backoff, but the retry finds the claim tracked and only
// checks progress: the node is never cordoned and the pods never told.
func TestRetriedEventCordonsAndWarns(t *testing.T) {
	deadline := start.Add(10 * time.Minute)
	e := newEnv(t, 1)
	var failed bool
	flaky := interceptor.NewClient(e.client.(client.WithWatch), interceptor.Funcs{
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			if _, ok := obj.(*corev1.Node); ok && !failed {
				failed = true
				return errors.New("injected: API server timeout")
			}
			return c.Patch(ctx, obj, p, opts...)
		}})
	e.ctrl = e.controllerOn(flaky)
	ev := e.event(cloudprovider.InterruptionSpotReclaim, deadline)
	if err := e.ctrl.Handle(context.Background(), ev); err == nil {
		t.Fatal("the injected failure was not hit")
	}
	// retryLater hands the same event back.
	if err := e.ctrl.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	e.progress(t)
	e.cordonedAndWarned(t)
}

// cordonedAndWarned checks that the interrupted node n1 is tainted, so no new
// pod lands on it, and that its pod was told, so it can checkpoint.
func (e *env) cordonedAndWarned(t *testing.T) {
	t.Helper()
	node := &corev1.Node{}
	e.get(t, node, client.ObjectKey{Name: "n1"})
	if !slices.ContainsFunc(node.Spec.Taints, func(tn corev1.Taint) bool { return tn.Key == v1.DisruptedTaintKey }) {
		t.Error("node n1 of the interrupted claim is not cordoned: new pods keep landing on a machine being reclaimed")
	}
	pod := &corev1.Pod{}
	e.get(t, pod, client.ObjectKey{Namespace: "ml", Name: "train-a"})
	if pod.Annotations[v1.AnnotationInterruption] == "" {
		t.Errorf("pod ml/train-a was never told of the reclaim (no %s annotation): it cannot checkpoint", v1.AnnotationInterruption)
	}
}

// A rebalance hint has no deadline: the node is drained once its
// replacement is Ready, or HintTimeout after the hint at the latest. A new
// leader counts that timeout from when it adopted the claim, not from when
// the hint came (the claim's Interrupted condition says when), so every
// leader change restarts the 10 minutes.
func TestHintTimeoutSurvivesALeaderChange(t *testing.T) {
	e := newEnv(t, 1)
	if err := e.ctrl.Handle(context.Background(), e.event(cloudprovider.InterruptionRebalanceHint, time.Time{})); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(DefaultHintTimeout - time.Minute)
	e.progress(t)
	if e.claimGone(t) {
		t.Fatal("drained before HintTimeout (setup)")
	}
	// The leader changes one minute before the timeout.
	e.newLeader()
	e.progress(t)
	e.clock.Step(time.Minute)
	e.progress(t)
	if !e.claimGone(t) {
		t.Errorf("hint received %s ago, replacement not Ready: not drained after HintTimeout %s because the new leader restarted the wait",
			e.clock.Since(start), DefaultHintTimeout)
	}
}
