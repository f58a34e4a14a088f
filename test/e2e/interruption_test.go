//go:build unix

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/interruption"
)

// TestInterruption: a spot reclaim with a 2-minute deadline. The pod is told,
// a replacement is launched at once, and the pod runs again on it before the
// deadline.
func TestInterruption(t *testing.T) {
	dc := disrStart(t, "intr-e2e")
	disrStartControllers(t, dc)
	ctx := context.Background()
	const ns = "intr"
	pool := disrPool("spot", disrReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "g5.xlarge"),
		disrReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeSpot))
	pool.Spec.Disruption.ConsolidateAfter = v1.Never
	disrCreate(t, dc.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, pool,
		disrDeployment(ns, "train", "spot", 1, "cpu", "2", "memory", "8Gi", "nvidia.com/gpu", "1"))

	var claim v1.NodeClaim
	var podName string
	disrEventually(t, "the train pod Running", func(ctx context.Context) (bool, error) {
		claims, err := disrClaims(ctx, dc.c, "spot")
		if err != nil || len(claims) != 1 || !disrReady(&claims[0]) {
			return false, err
		}
		claim = claims[0]
		pods, running, err := disrPods(ctx, dc.c, ns, "train")
		if err != nil || running != 1 {
			return false, err
		}
		podName = pods[0].Name
		return true, nil
	})

	deadline := time.Now().Add(2 * time.Minute)
	if err := dc.cloud.Interrupt(claim.Status.ProviderID, cloudprovider.InterruptionSpotReclaim, deadline); err != nil {
		t.Fatal(err)
	}
	disrEventually(t, "the pod Running on a replacement", func(ctx context.Context) (bool, error) {
		claims, err := disrClaims(ctx, dc.c, "spot")
		if err != nil || len(claims) != 1 || claims[0].Name == claim.Name || !disrReady(&claims[0]) {
			return false, err
		}
		pods, running, err := disrPods(ctx, dc.c, ns, "train")
		return running == 1 && len(pods) == 1 && pods[0].Spec.NodeName == claims[0].Status.NodeName, err
	})
	if now := time.Now(); !now.Before(deadline) {
		t.Errorf("the pod ran again at %s, after the deadline %s", now.Format(time.RFC3339), deadline.Format(time.RFC3339))
	}
	// The interrupted pod was told, so it could checkpoint.
	events := &eventsv1.EventList{}
	if err := dc.c.List(ctx, events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	told := false
	for _, ev := range events.Items {
		if ev.Regarding.Name == podName && ev.Reason == interruption.ReasonInterrupted && strings.Contains(ev.Note, "SpotReclaim deadline=") {
			told = true
		}
	}
	if !told {
		t.Errorf("pod %s got no %s event naming the reclaim and its deadline", podName, interruption.ReasonInterrupted)
	}
}
