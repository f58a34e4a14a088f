package state

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
)

func phantom(i int) *corev1.Pod {
	p := gpuPod(fmt.Sprintf("pr-0-%d", i), "")
	p.UID = types.UID(fmt.Sprintf("phantom-%d", i))
	return p
}

func consumer(name, node string) *corev1.Pod {
	p := gpuPod(name, node)
	p.Annotations = map[string]string{provreqv1.ConsumeAnnotation: "pr"}
	return p
}

// A booking shows its pods on their targets until the consuming pods are
// bound, wherever they land, and holds the consuming pods back meanwhile.
func TestBookings(t *testing.T) {
	c := NewCluster(clocktesting.NewFakeClock(now))
	c.UpdateNodeClaim(oneGPUClaim("claim-a"))
	c.UpdateNodeClaim(oneGPUClaim("claim-b"))
	owner := "default/pr"
	c.Book(owner, "claim-a", phantom(0))
	c.Book(owner, "claim-b", phantom(1))
	if got := podsOn(c); len(got["claim-a"]) != 1 || len(got["claim-b"]) != 1 {
		t.Fatalf("booked pods %v, want one on each claim", got)
	}
	if got := c.Booking(owner); got["claim-a"] != 1 || got["claim-b"] != 1 || c.Booking("default/other") != nil {
		t.Errorf("Booking = %v", got)
	}
	pending := consumer("worker-0", "")
	c.UpdatePod(pending)
	if !c.IsBookedFor(pending) || c.IsBookedFor(gpuPod("stranger", "")) {
		t.Error("IsBookedFor must hold back exactly the consuming pods")
	}
	// The consumer binds where the scheduler put it: outside the booking's
	// targets it still takes a place.
	c.UpdatePod(consumer("worker-0", "somewhere-else"))
	got := podsOn(c)
	if n := len(got["claim-a"]) + len(got["claim-b"]); n != 1 {
		t.Errorf("%d booked pods left after one consumer bound, want 1: %v", n, got)
	}
	c.UpdatePod(consumer("worker-1", "somewhere-else"))
	got = podsOn(c)
	if n := len(got["claim-a"]) + len(got["claim-b"]); n != 0 {
		t.Errorf("%d booked pods left after both consumers bound, want 0: %v", n, got)
	}
	c.Unbook(owner)
	if c.Booking(owner) != nil || c.IsBookedFor(pending) {
		t.Error("Unbook left the booking")
	}
}
