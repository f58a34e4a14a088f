//go:build unix

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/controllers/disruption"
)

// dsfDriftLabel is the template label the drift cases change.
const dsfDriftLabel = "e2e.stowage.dev/revision"

// dsfDriftPool is a pool of c5.xlarge nodes, one 3-CPU pod each, that never
// consolidates, so only drift or expiry can replace its nodes.
func dsfDriftPool(name, budget string, expireAfter v1.NillableDuration) *v1.NodePool {
	pool := disrPool(name, disrReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "c5.xlarge"),
		disrReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand))
	pool.Spec.Template.ObjectMeta.Labels = map[string]string{dsfDriftLabel: "1"}
	pool.Spec.Template.Spec.ExpireAfter = expireAfter
	pool.Spec.Disruption.ConsolidateAfter = v1.Never
	pool.Spec.Disruption.MinNodeLifetime = &metav1.Duration{}
	pool.Spec.Disruption.Budgets = []v1.Budget{{Nodes: budget}}
	return pool
}

// dsfDriftRunning starts replicas one-node pods in the pool and returns their
// claims once every pod runs.
func dsfDriftRunning(t *testing.T, c client.Client, ns string, pool *v1.NodePool, replicas int) []v1.NodeClaim {
	t.Helper()
	disrCreate(t, c, pool, disrDeployment(ns, pool.Name, pool.Name, int32(replicas), "cpu", "3", "memory", "1Gi"))
	var claims []v1.NodeClaim
	disrEventually(t, fmt.Sprintf("%d pods of %s Running on %d nodes", replicas, pool.Name, replicas), func(ctx context.Context) (bool, error) {
		var err error
		claims, err = disrClaims(ctx, c, pool.Name)
		if err != nil || len(claims) != replicas {
			return false, err
		}
		for i := range claims {
			if !disrReady(&claims[i]) {
				return false, nil
			}
		}
		_, running, err := disrPods(ctx, c, ns, pool.Name)
		return running == replicas, err
	})
	return claims
}

// dsfDriftReplaced waits until the pool has want Ready claims, none of them
// in old and all carrying the template label value, every old claim is gone,
// and the app's want pods run on the new nodes; each new claim must name an
// old one as its lineage.
func dsfDriftReplaced(t *testing.T, c client.Client, ns, pool, label string, old []v1.NodeClaim, want int) {
	t.Helper()
	oldNames := map[string]bool{}
	for _, cl := range old {
		oldNames[cl.Name] = true
	}
	var claims []v1.NodeClaim
	disrEventually(t, fmt.Sprintf("every node of %s replaced", pool), func(ctx context.Context) (bool, error) {
		var err error
		claims, err = disrClaims(ctx, c, pool)
		if err != nil || len(claims) != want {
			return false, err
		}
		newNodes := map[string]bool{}
		for i := range claims {
			cl := &claims[i]
			if oldNames[cl.Name] || !disrReady(cl) || cl.Labels[dsfDriftLabel] != label {
				return false, nil
			}
			newNodes[cl.Status.NodeName] = true
		}
		for name := range oldNames {
			if gone, err := dsfGone(ctx, c, name); !gone || err != nil {
				return false, err
			}
		}
		pods, running, err := disrPods(ctx, c, ns, pool)
		if err != nil || running != want {
			return false, err
		}
		for _, p := range pods {
			if p.DeletionTimestamp == nil && !newNodes[p.Spec.NodeName] {
				return false, nil
			}
		}
		return true, nil
	})
	for _, cl := range claims {
		if lineage := cl.Annotations[disruption.AnnotationLineage]; !oldNames[lineage] {
			t.Errorf("replacement nodeclaim %s has lineage %q, want one of the replaced claims", cl.Name, lineage)
		}
	}
}

func dsfDriftRelabel(t *testing.T, c client.Client, name, value string) {
	t.Helper()
	pool := &v1.NodePool{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: name}, pool); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(pool.DeepCopy())
	pool.Spec.Template.ObjectMeta.Labels[dsfDriftLabel] = value
	if err := c.Patch(context.Background(), pool, patch); err != nil {
		t.Fatalf("relabelling nodepool %s: %v", name, err)
	}
}

// TestDisruptionDriftAndExpiry checks that a changed template and an
// expireAfter replace nodes make-before-break, and that a budget of one node
// holds while a pool's every node has drifted. The cases share one cluster
// and run one after another: the controller runs one command at a time and
// ranks expiry first, so a 20 s expireAfter churning beside the drift cases
// would starve them. Expiry goes last for the same reason.
func TestDisruptionDriftAndExpiry(t *testing.T) {
	dc := disrStart(t, "disr-drift")
	disrStartControllers(t, dc)
	const ns = "drift"
	disrCreate(t, dc.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})

	t.Run("cases", func(t *testing.T) {
		t.Run("a changed template label replaces the node before draining it", func(t *testing.T) {
			old := dsfDriftRunning(t, dc.c, ns, dsfDriftPool("drift-one", "100%", v1.Never), 1)
			watch := dsfWatchReplaceBeforeDrain(dc.c, "drift-one", ns, "drift-one", &old[0], 1)
			dsfDriftRelabel(t, dc.c, "drift-one", "2")
			dsfDriftReplaced(t, dc.c, ns, "drift-one", "2", old, 1)
			if violation, _ := watch.Stop(); violation != "" {
				t.Error(violation)
			}
		})

		t.Run("a budget of one node holds while every node has drifted", func(t *testing.T) {
			const pool = "drift-budget"
			old := dsfDriftRunning(t, dc.c, ns, dsfDriftPool(pool, "1", v1.Never), 3)
			var maxDisrupting int
			var seen []string
			watch := dsfWatch(func(ctx context.Context) (string, bool, error) {
				nodes, err := dsfPoolNodes(ctx, dc.c, pool)
				if err != nil {
					return "", false, err
				}
				var disrupting []string
				for i := range nodes {
					if why := dsfDisrupted(&nodes[i]); why != "" {
						disrupting = append(disrupting, nodes[i].Name+" "+why)
					}
				}
				if len(disrupting) > maxDisrupting {
					maxDisrupting, seen = len(disrupting), disrupting
				}
				return "", false, nil
			})
			dsfDriftRelabel(t, dc.c, pool, "2")
			dsfDriftReplaced(t, dc.c, ns, pool, "2", old, 3)
			watch.Stop()
			switch {
			case maxDisrupting == 0:
				t.Error("the watch never saw a node of the pool being disrupted")
			case maxDisrupting > 1:
				t.Errorf("%d nodes of nodepool %s were disrupted at once, over its budget of 1: %v", maxDisrupting, pool, seen)
			}
		})
		t.Run("an expired node is replaced before it is drained", func(t *testing.T) {
			const expireAfter = 20 * time.Second
			old := dsfDriftRunning(t, dc.c, ns, dsfDriftPool("expire", "100%", v1.DurationOf(expireAfter)), 1)
			watch := dsfWatchReplaceBeforeDrain(dc.c, "expire", ns, "expire", &old[0], 1)
			var deleted time.Time
			deletedWatch := dsfWatch(func(ctx context.Context) (string, bool, error) {
				claim := &v1.NodeClaim{}
				if err := dc.c.Get(ctx, client.ObjectKeyFromObject(&old[0]), claim); err != nil {
					return "", false, err
				}
				if claim.DeletionTimestamp != nil {
					deleted = claim.DeletionTimestamp.Time
					return "", true, nil
				}
				return "", false, nil
			})
			dsfDriftReplaced(t, dc.c, ns, "expire", "1", old, 1)
			if violation, _ := watch.Stop(); violation != "" {
				t.Error(violation)
			}
			deletedWatch.Stop()
			// API timestamps have whole seconds.
			if deleted.IsZero() {
				t.Errorf("the watch never saw nodeclaim %s being deleted", old[0].Name)
			} else if lived := deleted.Sub(old[0].CreationTimestamp.Time); lived < expireAfter-time.Second {
				t.Errorf("nodeclaim %s was deleted %s after its creation, before its expireAfter %s", old[0].Name, lived, expireAfter)
			}
		})
	})
}
