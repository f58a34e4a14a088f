//go:build unix

package e2e

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// TestDisruption runs the operator and the disruption controller against the
// fake cloud: empty nodes go, half-empty GPU nodes merge into a cheaper one
// without any pod leaving before the replacement is Ready, and a spot price
// drop brings a cheaper replacement.
func TestDisruption(t *testing.T) {
	dc := disrStart(t, "disr-e2e")
	disrStartControllers(t, dc)
	ctx := context.Background()
	const ns = "disr"
	disrCreate(t, dc.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})

	t.Run("empty nodes go after consolidateAfter", func(t *testing.T) {
		disrCreate(t, dc.c,
			disrPool("scale", disrReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "c5.xlarge"),
				disrReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)),
			// 3 CPU each: one pod per c5.xlarge.
			disrDeployment(ns, "web", "scale", 3, "cpu", "3", "memory", "1Gi"))
		disrEventually(t, "3 web pods Running on 3 nodes", func(ctx context.Context) (bool, error) {
			_, running, err := disrPods(ctx, dc.c, ns, "web")
			if err != nil {
				return false, err
			}
			claims, err := disrClaims(ctx, dc.c, "scale")
			return running == 3 && len(claims) == 3, err
		})
		dep := &appsv1.Deployment{}
		if err := dc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "web"}, dep); err != nil {
			t.Fatal(err)
		}
		dep.Spec.Replicas = ptr.To[int32](1)
		if err := dc.c.Update(ctx, dep); err != nil {
			t.Fatal(err)
		}
		disrEventually(t, "the 2 empty nodes gone", func(ctx context.Context) (bool, error) {
			claims, err := disrClaims(ctx, dc.c, "scale")
			if err != nil {
				return false, err
			}
			_, running, err := disrPods(ctx, dc.c, ns, "web")
			return len(claims) == 1 && running == 1, err
		})
	})

	t.Run("two half-empty GPU nodes merge into one cheaper node", func(t *testing.T) {
		disrCreate(t, dc.c, disrPool("merge",
			disrReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "g5.12xlarge", "g5.24xlarge"),
			disrReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)))
		// Two 4-GPU g5.24xlarge ($8.144/h each), held by do-not-disrupt until
		// two pods run on each: the second node joins after the first two pods
		// run, so the scheduler (least allocated) puts the next two on it.
		old := []string{"merge-a", "merge-b"}
		oldNodes := map[string]bool{}
		for i, name := range old {
			disrCreate(t, dc.c, &v1.NodeClaim{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodePool: "merge"},
					Annotations: map[string]string{v1.AnnotationDoNotDisrupt: "true"}},
				Spec: v1.NodeClaimSpec{ExpireAfter: v1.Never, Offerings: []v1.OfferingChoice{
					{InstanceType: "g5.24xlarge", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "8.144"}}},
			})
			// The Deployment grows next, and its new pods must be able to
			// go to this node.
			lifeWaitReady(t, dc.c, name)
			replicas := int32(2 * (i + 1))
			if i == 0 {
				disrCreate(t, dc.c, disrDeployment(ns, "infer", "merge", replicas, "cpu", "8", "memory", "32Gi", "nvidia.com/gpu", "1"))
			} else {
				dep := &appsv1.Deployment{}
				if err := dc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "infer"}, dep); err != nil {
					t.Fatal(err)
				}
				dep.Spec.Replicas = ptr.To(replicas)
				if err := dc.c.Update(ctx, dep); err != nil {
					t.Fatal(err)
				}
			}
			disrEventually(t, fmt.Sprintf("%d infer pods Running", replicas), func(ctx context.Context) (bool, error) {
				pods, running, err := disrPods(ctx, dc.c, ns, "infer")
				if err != nil || running != int(replicas) {
					return false, err
				}
				clear(oldNodes)
				for _, p := range pods {
					oldNodes[p.Spec.NodeName] = true
				}
				return true, nil
			})
		}
		if len(oldNodes) != 2 {
			t.Fatalf("the scheduler put the 4 pods on %d node(s), want both: the scenario needs two half-empty nodes", len(oldNodes))
		}

		// From here until a replacement is Ready, every pod must stay Running
		// on the old nodes.
		var (
			mu        sync.Mutex
			violation string
		)
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		watched := make(chan struct{})
		go func() {
			defer close(watched)
			_ = wait.PollUntilContextCancel(watchCtx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				claims, err := disrClaims(ctx, dc.c, "merge")
				if err != nil {
					return false, nil
				}
				list := &v1.NodeClaimList{}
				if err := dc.c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: "merge"}); err != nil {
					return false, nil
				}
				for i := range list.Items {
					if n := list.Items[i].Name; n != "merge-a" && n != "merge-b" && disrReady(&list.Items[i]) {
						return true, nil // a replacement is Ready: draining may begin
					}
				}
				pods, running, err := disrPods(ctx, dc.c, ns, "infer")
				if err != nil {
					return false, nil
				}
				if running != 4 {
					mu.Lock()
					violation = fmt.Sprintf("%d of 4 pods running (%d claims) before any replacement was Ready", running, len(claims))
					mu.Unlock()
					return true, nil
				}
				for _, p := range pods {
					if !oldNodes[p.Spec.NodeName] {
						mu.Lock()
						violation = "pod " + p.Name + " moved to " + p.Spec.NodeName + " before any replacement was Ready"
						mu.Unlock()
						return true, nil
					}
				}
				return false, nil
			})
		}()
		for _, name := range old {
			claim := &v1.NodeClaim{}
			if err := dc.c.Get(ctx, client.ObjectKey{Name: name}, claim); err != nil {
				t.Fatal(err)
			}
			patch := client.MergeFrom(claim.DeepCopy())
			delete(claim.Annotations, v1.AnnotationDoNotDisrupt)
			if err := dc.c.Patch(ctx, claim, patch); err != nil {
				t.Fatal(err)
			}
		}
		var merged v1.NodeClaim
		disrEventually(t, "one cheaper node running all 4 pods", func(ctx context.Context) (bool, error) {
			claims, err := disrClaims(ctx, dc.c, "merge")
			if err != nil || len(claims) != 1 || !disrReady(&claims[0]) {
				return false, err
			}
			merged = claims[0]
			pods, running, err := disrPods(ctx, dc.c, ns, "infer")
			if err != nil || running != 4 {
				return false, err
			}
			for _, p := range pods {
				if p.Spec.NodeName != merged.Status.NodeName {
					return false, nil
				}
			}
			return true, nil
		})
		stopWatch()
		<-watched
		mu.Lock()
		defer mu.Unlock()
		if violation != "" {
			t.Error(violation)
		}
		if merged.Name == "merge-a" || merged.Name == "merge-b" {
			t.Errorf("the pods ended on old node %s, want a replacement", merged.Name)
		}
		price, err := strconv.ParseFloat(merged.Status.PricePerHour, 64)
		if err != nil || price >= 2*8.144 {
			t.Errorf("replacement %s costs %q/h, want less than the two old nodes' $16.288/h", merged.Status.InstanceType, merged.Status.PricePerHour)
		}
	})

	t.Run("a spot price drop leads to a cheaper replacement", func(t *testing.T) {
		// Spot dearer than on-demand: the first node is on-demand.
		disrSetPrice(t, dc.cloud, "g5.xlarge", "us-east-1a", v1.CapacityTypeSpot, 5.0)
		disrCreate(t, dc.c,
			disrPool("price", disrReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "g5.xlarge"),
				disrReq(v1.LabelZone, corev1.NodeSelectorOpIn, "us-east-1a")),
			disrDeployment(ns, "batch", "price", 1, "cpu", "1", "memory", "4Gi", "nvidia.com/gpu", "1"))
		var first string
		disrEventually(t, "the batch pod Running on an on-demand node", func(ctx context.Context) (bool, error) {
			claims, err := disrClaims(ctx, dc.c, "price")
			if err != nil || len(claims) != 1 || !disrReady(&claims[0]) {
				return false, err
			}
			first = claims[0].Name
			_, running, err := disrPods(ctx, dc.c, ns, "batch")
			return running == 1 && claims[0].Status.CapacityType == v1.CapacityTypeOnDemand, err
		})
		disrSetPrice(t, dc.cloud, "g5.xlarge", "us-east-1a", v1.CapacityTypeSpot, 0.30)
		disrEventually(t, "the batch pod Running on a spot replacement", func(ctx context.Context) (bool, error) {
			claims, err := disrClaims(ctx, dc.c, "price")
			if err != nil || len(claims) != 1 || claims[0].Name == first || !disrReady(&claims[0]) {
				return false, err
			}
			pods, running, err := disrPods(ctx, dc.c, ns, "batch")
			return running == 1 && len(pods) == 1 && pods[0].Spec.NodeName == claims[0].Status.NodeName &&
				claims[0].Status.CapacityType == v1.CapacityTypeSpot, err
		})
	})
}
