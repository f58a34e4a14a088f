package disruption

import (
	"context"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Consolidation never moves a gang's pods, but a node running a gang
// member must not hold back the other nodes: here a, b and c are
// underused large machines and a runs one member of a gang whose other
// member is on a blocked node. The best group includes a, is dropped for
// the gang, and still took b and c, so nothing was ever consolidated.
func TestAGangNodeDoesNotHoldBackConsolidationOfOthers(t *testing.T) {
	e := newEnv(t, objects(pool("p"), mach("a", 1, v1.CapacityTypeOnDemand), mach("b", 1, v1.CapacityTypeOnDemand),
		mach("c", 1, v1.CapacityTypeOnDemand), mach("d", 1, v1.CapacityTypeOnDemand))...)
	ctx := context.Background()
	mustT(t, e.client.Create(ctx, pod("worker-0", "a", "1", inGang("train", "2"))))
	mustT(t, e.client.Create(ctx, pod("worker-1", "d", "14", inGang("train", "2"), annotated(v1.AnnotationDoNotDisrupt, "true"))))
	mustT(t, e.client.Create(ctx, pod("web-b", "b", "1")))
	mustT(t, e.client.Create(ctx, pod("web-c", "c", "1")))
	for i := 0; i < 4; i++ {
		e.validate(t)
	}
	if !e.tainted(t, "b") && !e.tainted(t, "c") {
		t.Errorf("neither b nor c was consolidated; claims %v; events: %s", e.claims(t), drain(e.recorder))
	}
	if e.tainted(t, "a") {
		t.Error("a gang member's node was consolidated")
	}
}
