package interruption

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// AWS may send a rebalance recommendation after the spot interruption
// notice. When it comes once the node is already draining for the reclaim,
// the pods must keep the reclaim's deadline: a training job reading the
// annotation would otherwise believe it has no deadline at all.
func TestHintAfterAReclaimKeepsThePodsDeadline(t *testing.T) {
	e := newEnv(t, 1, func(c *v1.NodeClaim) { c.Finalizers = []string{v1.TerminationFinalizer} })
	ctx := context.Background()
	deadline := start.Add(2 * time.Minute)
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionSpotReclaim, deadline)); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(time.Minute) // DrainLead before the deadline: draining
	e.progress(t)
	claim := &v1.NodeClaim{}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	if claim.DeletionTimestamp == nil {
		t.Fatal("setup: the interrupted claim is not draining")
	}
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionRebalanceHint, time.Time{})); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{}
	e.get(t, pod, client.ObjectKey{Namespace: "ml", Name: "train-a"})
	if want := annotationValue(cloudprovider.InterruptionSpotReclaim, deadline); pod.Annotations[v1.AnnotationInterruption] != want {
		t.Errorf("pod says %q after a later hint, want the reclaim's %q", pod.Annotations[v1.AnnotationInterruption], want)
	}
}

// A hint comes again to a new leader (SQS redelivers, a polled source
// repeats itself) after the reclaim was recorded on the claim. The new
// leader must not replace the recorded deadline with "no deadline": the
// node would then wait for its replacement or the 10-minute hint timeout,
// and be killed by the cloud undrained.
func TestHintRedeliveredToANewLeaderKeepsTheRecordedDeadline(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	deadline := start.Add(2 * time.Minute)
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionSpotReclaim, deadline)); err != nil {
		t.Fatal(err)
	}
	e.newLeader()
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionRebalanceHint, time.Time{})); err != nil {
		t.Fatal(err)
	}
	claim := &v1.NodeClaim{}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	if want := annotationValue(cloudprovider.InterruptionSpotReclaim, deadline); claim.Annotations[v1.AnnotationInterruption] != want {
		t.Errorf("claim says %q after the hint came again, want %q", claim.Annotations[v1.AnnotationInterruption], want)
	}
	e.clock.Step(80 * time.Second) // 40 s before the reclaim
	e.progress(t)
	if !e.claimGone(t) {
		t.Error("not drained DrainLead before the recorded reclaim deadline")
	}
}

// A hint, then the instance stops: a stopped instance is drained at once,
// not when the hint's replacement is Ready or HintTimeout has passed.
func TestInstanceStoppedAfterAHintDrainsAtOnce(t *testing.T) {
	e := newEnv(t, 1)
	ctx := context.Background()
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionRebalanceHint, time.Time{})); err != nil {
		t.Fatal(err)
	}
	e.clock.Step(10 * time.Second)
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionInstanceStopped, time.Time{})); err != nil {
		t.Fatal(err)
	}
	if !e.claimGone(t) {
		t.Error("stopped instance not drained at once after an earlier hint")
	}
	if got := e.replacements(t); len(got) != 1 {
		t.Errorf("replacements = %v, want the hint's one", got)
	}
}

// A reclaim of a machine whose claim is already draining (a consolidation
// held by a PodDisruptionBudget) must still be recorded on the claim: the
// termination controller reads the deadline there to delete the pods in
// time for their grace periods instead of leaving them to die with the
// machine.
func TestReclaimOfADrainingClaimRecordsTheDeadline(t *testing.T) {
	e := newEnv(t, 1, func(c *v1.NodeClaim) { c.Finalizers = []string{v1.TerminationFinalizer} })
	ctx := context.Background()
	claim := &v1.NodeClaim{}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	if err := e.client.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	deadline := start.Add(2 * time.Minute)
	if err := e.ctrl.Handle(ctx, e.event(cloudprovider.InterruptionSpotReclaim, deadline)); err != nil {
		t.Fatal(err)
	}
	e.get(t, claim, client.ObjectKey{Name: "c1"})
	if want := annotationValue(cloudprovider.InterruptionSpotReclaim, deadline); claim.Annotations[v1.AnnotationInterruption] != want {
		t.Errorf("draining claim says %q, want %q", claim.Annotations[v1.AnnotationInterruption], want)
	}
	if e.acks.Load() != 1 {
		t.Errorf("acks = %d, want the event acknowledged", e.acks.Load())
	}
}
