package disruption

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// A gang runs on a dead node (repair) and on a drifted one (drift). Both
// decisions fall due in the same pass: repair takes the dead node alone,
// and drift, widened to the whole gang, must not take it a second time (a
// second replacement bought for its pods, its command record overwritten).
func TestGangWideningNeverTakesANodeAnotherCommandTook(t *testing.T) {
	p := pool("p", func(p *v1.NodePool) { p.Spec.Disruption.ConsolidateAfter = v1.Never })
	down, g2 := mach("down", 1, v1.CapacityTypeOnDemand), mach("g2", 1, v1.CapacityTypeOnDemand)
	notReady(down[1].(*corev1.Node), start.Add(time.Hour-16*time.Minute))
	withCondition(g2[0].(*v1.NodeClaim), v1.ConditionDrifted, "RequirementsDrifted", start)
	// Room in the pool's 100% budget for both commands.
	e := newEnv(t, objects(p, down, g2, mach("x", 1, v1.CapacityTypeOnDemand), mach("y", 1, v1.CapacityTypeOnDemand),
		mach("z", 1, v1.CapacityTypeOnDemand))...)
	for _, n := range []string{"x", "y", "z"} {
		mustT(t, e.client.Create(context.Background(), pod("keep-"+n, n, "15", annotated(v1.AnnotationDoNotDisrupt, "true"))))
	}
	for _, n := range []string{"down", "g2"} {
		mustT(t, e.client.Create(context.Background(), pod("worker-"+n, n, "10", inGang("train", "2"))))
	}
	e.pass(t)
	e.validate(t)
	if n := len(e.ctrl.inflight); n == 0 {
		t.Fatalf("nothing in flight; claims %v; events: %s", e.claims(t), drain(e.recorder))
	}
	in := map[string][]string{}
	for id, p := range e.ctrl.inflight {
		for _, c := range p.cmd.Candidates {
			in[c.Name()] = append(in[c.Name()], id)
		}
	}
	for name, ids := range in {
		if len(ids) > 1 {
			t.Errorf("nodeclaim %s is a candidate of %d commands in flight %v; claims %v", name, len(ids), ids, e.claims(t))
		}
	}
}
