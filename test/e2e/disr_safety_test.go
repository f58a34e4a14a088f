//go:build unix

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// dsfHold is how long blocked nodes must survive after the control nodes were
// chosen: five passes of the test's 1 s disruption interval.
const dsfHold = 5 * time.Second

// dsfBlocker is one pool with one underused node next to an idle sink of the
// same pool that could take its pod: consolidation deletes the node unless
// something blocks it.
type dsfBlocker struct {
	pool string
	// blocked says the node must stay; each blocked case has a control that
	// differs only in the blocker and must be consolidated.
	blocked bool
	// budget is the pool's only budget.
	budget           string
	evictRunningJobs bool
	// workload creates the pool's one pod, all labelled app=pool.
	workload func(ns, pool string) []client.Object
}

func (bc dsfBlocker) target() string { return bc.pool + "-target" }
func (bc dsfBlocker) sink() string   { return bc.pool + "-sink" }

func dsfBlockerDeployment(annotations map[string]string) func(ns, pool string) []client.Object {
	return func(ns, pool string) []client.Object {
		d := disrDeployment(ns, pool, pool, 1, "cpu", "500m", "memory", "256Mi")
		d.Spec.Template.Annotations = annotations
		return []client.Object{d}
	}
}

func dsfBlockerWithPDB(maxUnavailable int) func(ns, pool string) []client.Object {
	return func(ns, pool string) []client.Object {
		return append(dsfBlockerDeployment(nil)(ns, pool), dsfPDB(ns, pool, maxUnavailable))
	}
}

func dsfBlockerJob(ns, pool string) []client.Object {
	return []client.Object{dsfJob(ns, pool, pool, "500m")}
}

// TestDisruptionBlockers checks, in one cluster, that a do-not-disrupt pod, a
// PDB with maxUnavailable 0, a budget of 0 and a running Job each keep an
// underused node from being consolidated, while a twin pool without the
// blocker loses its node in the same passes.
func TestDisruptionBlockers(t *testing.T) {
	dc := disrStart(t, "disr-blockers")
	ctx := context.Background()
	const ns = "blockers"
	disrCreate(t, dc.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	dsfHoldJobPodsRunning(t, dc.c, ns)

	cases := []dsfBlocker{
		{pool: "dnd", blocked: true, budget: "100%", workload: dsfBlockerDeployment(map[string]string{v1.AnnotationDoNotDisrupt: "true"})},
		{pool: "dnd-control", budget: "100%", workload: dsfBlockerDeployment(nil)},
		{pool: "pdb", blocked: true, budget: "100%", workload: dsfBlockerWithPDB(0)},
		{pool: "pdb-control", budget: "100%", workload: dsfBlockerWithPDB(1)},
		{pool: "budget", blocked: true, budget: "0", workload: dsfBlockerDeployment(nil)},
		{pool: "budget-control", budget: "1", workload: dsfBlockerDeployment(nil)},
		{pool: "job", blocked: true, budget: "100%", workload: dsfBlockerJob},
		{pool: "job-control", budget: "100%", evictRunningJobs: true, workload: dsfBlockerJob},
	}

	// Each pool's node first, then its pod, so the pod lands there; then the
	// sink, which the pod could move to.
	var targets, sinks []string
	for _, bc := range cases {
		pool := disrPool(bc.pool, disrReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "c5.large"),
			disrReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand))
		pool.Spec.Disruption.ConsolidateAfter = v1.DurationOf(0)
		pool.Spec.Disruption.MinNodeLifetime = &metav1.Duration{}
		pool.Spec.Disruption.Budgets = []v1.Budget{{Nodes: bc.budget}}
		pool.Spec.Disruption.EvictRunningJobs = bc.evictRunningJobs
		disrCreate(t, dc.c, pool, dsfClaim(bc.target(), bc.pool, nil))
		targets = append(targets, bc.target())
		sinks = append(sinks, bc.sink())
	}
	nodes := dsfClaimReady(t, dc.c, targets...)
	for _, bc := range cases {
		disrCreate(t, dc.c, bc.workload(ns, bc.pool)...)
	}
	disrEventually(t, "every pool's pod Running on its node", func(ctx context.Context) (bool, error) {
		for _, bc := range cases {
			if ok, err := dsfPodsOn(ctx, dc.c, ns, bc.pool, nodes[bc.target()], 1); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	})
	for _, bc := range cases {
		// The sink's own do-not-disrupt keeps it out of every decision: it
		// is only a place the pod could go.
		disrCreate(t, dc.c, dsfClaim(bc.sink(), bc.pool, map[string]string{v1.AnnotationDoNotDisrupt: "true"}))
	}
	for k, v := range dsfClaimReady(t, dc.c, sinks...) {
		nodes[k] = v
	}
	// A PDB blocks only once kube-controller-manager has counted its pods;
	// until then the control's would block too.
	disrEventually(t, "PDB statuses computed", func(ctx context.Context) (bool, error) {
		for name, want := range map[string]int32{"pdb": 0, "pdb-control": 1} {
			pdb := &policyv1.PodDisruptionBudget{}
			if err := dc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pdb); err != nil {
				return false, err
			}
			if pdb.Status.ObservedGeneration != pdb.Generation || pdb.Status.DisruptionsAllowed != want {
				return false, nil
			}
		}
		return true, nil
	})

	// From now on a blocked pool's node must never be tainted or deleted.
	watch := dsfWatch(func(ctx context.Context) (string, bool, error) {
		for _, bc := range cases {
			if !bc.blocked {
				continue
			}
			claim := &v1.NodeClaim{}
			err := dc.c.Get(ctx, client.ObjectKey{Name: bc.target()}, claim)
			if apierrors.IsNotFound(err) {
				return fmt.Sprintf("pool %s: nodeclaim %s was deleted", bc.pool, bc.target()), true, nil
			}
			if err != nil {
				return "", false, err
			}
			if claim.DeletionTimestamp != nil {
				return fmt.Sprintf("pool %s: nodeclaim %s is being deleted", bc.pool, bc.target()), true, nil
			}
			node := &corev1.Node{}
			if err := dc.c.Get(ctx, client.ObjectKey{Name: nodes[bc.target()]}, node); err != nil {
				return "", false, err
			}
			if why := dsfDisrupted(node); why != "" {
				return fmt.Sprintf("pool %s: node %s is %s", bc.pool, node.Name, why), true, nil
			}
		}
		return "", false, nil
	})
	disrStartControllers(t, dc)

	// The controls prove the controller ran and judged these very nodes.
	disrEventually(t, "every control pool's node chosen for consolidation", func(ctx context.Context) (bool, error) {
		for _, bc := range cases {
			if bc.blocked {
				continue
			}
			claim := &v1.NodeClaim{}
			err := dc.c.Get(ctx, client.ObjectKey{Name: bc.target()}, claim)
			if apierrors.IsNotFound(err) {
				continue
			}
			if err != nil || claim.DeletionTimestamp == nil {
				return false, err
			}
		}
		return true, nil
	})
	chosen := time.Now()
	disrEventually(t, "every control pool's node gone and its pod moved to the sink", func(ctx context.Context) (bool, error) {
		for _, bc := range cases {
			if bc.blocked {
				continue
			}
			if gone, err := dsfGone(ctx, dc.c, bc.target()); !gone || err != nil {
				return false, err
			}
			// The Job control's evicted pod comes back only after the
			// Job's backoff; its node going is what that case is about.
			if bc.evictRunningJobs {
				continue
			}
			if ok, err := dsfPodsOn(ctx, dc.c, ns, bc.pool, nodes[bc.sink()], 1); !ok || err != nil {
				return false, err
			}
		}
		return true, nil
	})
	// Absence can only be shown over a bounded window: keep watching for a few
	// more passes than the controls needed.
	time.Sleep(time.Until(chosen.Add(dsfHold)))
	violation, samples := watch.Stop()
	if violation != "" {
		t.Error(violation)
	}
	if samples == 0 {
		t.Error("the watch of the blocked nodes took no sample")
	}
	for _, bc := range cases {
		if !bc.blocked {
			continue
		}
		ok, err := dsfPodsOn(ctx, dc.c, ns, bc.pool, nodes[bc.target()], 1)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("pool %s: its pod is no longer Running on node %s", bc.pool, nodes[bc.target()])
		}
	}
}
