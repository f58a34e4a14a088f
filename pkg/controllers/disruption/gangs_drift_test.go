package disruption

import (
	"context"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// A drifted node running a gang member whose peer is blocked cannot go
// (the gang goes whole or not at all). It must not take the pool's budget
// of one node at every pass, so that the other drifted node, which nothing
// blocks, is never replaced.
func TestAHeldGangDoesNotStarveDriftOfOtherNodes(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) {
		p.Spec.Disruption.ConsolidateAfter = v1.Never
		p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1"}}
	})
	g, peer, x := mach("g", 1, v1.CapacityTypeOnDemand), mach("peer", 1, v1.CapacityTypeOnDemand), mach("x", 1, v1.CapacityTypeOnDemand)
	withCondition(g[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	withCondition(x[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	e := newEnv(t, objects(p, g, peer, x)...)
	ctx := context.Background()
	mustT(t, e.client.Create(ctx, pod("worker-0", "g", "1", inGang("train", "2"))))
	mustT(t, e.client.Create(ctx, pod("worker-1", "peer", "1", inGang("train", "2"), annotated(v1.AnnotationDoNotDisrupt, "true"))))
	mustT(t, e.client.Create(ctx, pod("web-0", "x", "1")))
	mustT(t, e.client.Create(ctx, pod("web-1", "x", "1")))
	for i := 0; i < 4; i++ {
		e.validate(t)
	}
	if !e.tainted(t, "x") {
		t.Errorf("drifted node x was never replaced; claims %v", e.claims(t))
	}
	if e.tainted(t, "g") {
		t.Error("the gang's node went without its blocked peer")
	}
}
