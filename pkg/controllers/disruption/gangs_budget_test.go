package disruption

import (
	"context"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Both nodes of a two-node gang drifted and the pool's budget is two: the
// gang fits the budget exactly and must be replaced whole. Each member's
// own command counted the other's node twice (once reserved, once as the
// widening), so the gang was refused at every pass.
func TestAGangThatFitsTheBudgetExactlyIsReplaced(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) {
		p.Spec.Disruption.ConsolidateAfter = v1.Never
		p.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "2"}}
	})
	g1, g2, x := mach("g1", 1, v1.CapacityTypeOnDemand), mach("g2", 1, v1.CapacityTypeOnDemand), mach("x", 1, v1.CapacityTypeOnDemand)
	withCondition(g1[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	withCondition(g2[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	e := newEnv(t, objects(p, g1, g2, x)...)
	ctx := context.Background()
	mustT(t, e.client.Create(ctx, pod("worker-0", "g1", "10", inGang("train", "2"))))
	mustT(t, e.client.Create(ctx, pod("worker-1", "g2", "10", inGang("train", "2"))))
	mustT(t, e.client.Create(ctx, pod("keep", "x", "15", annotated(v1.AnnotationDoNotDisrupt, "true"))))
	for i := 0; i < 4; i++ {
		e.validate(t)
	}
	if !e.tainted(t, "g1") || !e.tainted(t, "g2") {
		t.Errorf("the gang was not replaced whole within its budget; claims %v", e.claims(t))
	}
}
