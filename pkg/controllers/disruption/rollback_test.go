package disruption

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// A candidate whose claim is being deleted (by hand, or by another
// controller) while its command waits is draining: when the command is
// abandoned, its node keeps the cordon, as releaseOrphans would leave it,
// or the scheduler places pods on a node being drained.
func TestAbandonKeepsTheCordonOfADeletingCandidate(t *testing.T) {
	e, repl := replacingA(t)
	e.pass(t)
	claim := &v1.NodeClaim{}
	mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: "a"}, claim))
	claim.Finalizers = []string{v1.TerminationFinalizer}
	mustT(t, e.client.Update(context.Background(), claim))
	mustT(t, e.client.Delete(context.Background(), claim))
	mustT(t, e.client.Delete(context.Background(), &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: repl}}))
	e.pass(t)
	if got := drain(e.recorder); !strings.Contains(got, ReasonDisruptionAbandoned) {
		t.Fatalf("events = %q, want the command abandoned", got)
	}
	if !e.tainted(t, "a") {
		t.Error("the cordon of a node whose claim is being deleted (draining) was lifted")
	}
}
