//go:build unix

package e2e

import (
	"context"
	"fmt"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/providers/fake"
)

// eightGPUs is a training worker that needs a whole 8-GPU machine.
func eightGPUs(pool string) corev1.PodSpec {
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: ptr.To[int64](0),
		Tolerations:                   []corev1.Toleration{{Key: pool, Operator: corev1.TolerationOpExists}},
		Containers: []corev1.Container{{Name: "worker", Image: "example/trainer:1", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), v1.ResourceNvidiaGPU: resource.MustParse("8")},
			Limits:   corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("8")},
		}}},
	}
}

// TestGangs runs training gangs against the operator and the fake cloud:
// a Kueue pod group lands in one zone and one placement group, and an
// Indexed Job (opted in as a gang source) whose zone runs out of capacity
// midway is released and re-planned whole in another zone.
func TestGangs(t *testing.T) {
	tc := trnStart(t, "gang-e2e", func(o *operator.Options) { o.GangSources = "indexed-job" })
	ctx := context.Background()
	const ns = "train"
	trnCreate(t, tc.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, trnPool("a100", "p4d.24xlarge"))

	t.Run("a Kueue pod group shares one zone and one placement group", func(t *testing.T) {
		names := []string{"llm-0", "llm-1"}
		for _, n := range names {
			trnCreate(t, tc.c, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n,
					Labels:      map[string]string{scheduling.LabelKueuePodGroup: "llm"},
					Annotations: map[string]string{scheduling.AnnotationKueuePodGroupTotal: "2"}},
				Spec: eightGPUs("a100"),
			})
		}
		var nodes map[string]*corev1.Node
		trnEventually(t, "the pod group running", func(ctx context.Context) (bool, error) {
			var ok bool
			var err error
			nodes, ok, err = trnRunning(ctx, tc.c, ns, names...)
			return ok, err
		})
		claims, err := trnClaims(ctx, tc.c, "a100")
		if err != nil || len(claims) != 2 {
			t.Fatalf("%d nodeclaims (%v), want one per worker", len(claims), err)
		}
		group := claims[0].Spec.Placement
		for _, cl := range claims {
			if cl.Labels[v1.LabelGang] == "" || cl.Labels[v1.LabelGang] != claims[0].Labels[v1.LabelGang] {
				t.Errorf("claim %s gang label %q, want one shared label", cl.Name, cl.Labels[v1.LabelGang])
			}
			if cl.Spec.Placement == nil || group == nil || cl.Spec.Placement.Group != group.Group {
				t.Errorf("claim %s placement %+v, want the gang's group %+v", cl.Name, cl.Spec.Placement, group)
			}
		}
		zone := nodes[names[0]].Labels[v1.LabelZone]
		for n, node := range nodes {
			if node.Labels[v1.LabelZone] != zone || node.Labels[fake.LabelPlacementGroup] != group.Group {
				t.Errorf("%s runs on %s in %s, group %q; want zone %s, group %s", n, node.Name,
					node.Labels[v1.LabelZone], node.Labels[fake.LabelPlacementGroup], zone, group.Group)
			}
		}
		if machines, err := tc.cloud.List(ctx); err != nil || len(machines) != 2 {
			t.Errorf("the cloud runs %d machines (%v), want 2", len(machines), err)
		}
	})

	t.Run("a gang whose zone runs dry is released and re-planned whole elsewhere", func(t *testing.T) {
		dsfHoldJobPodsRunning(t, tc.c, ns)
		// The cheapest zone holds one more p4d: the first worker's machine
		// launches there, the second one's cannot.
		dry := cloudprovider.OfferingID{InstanceType: "p4d.24xlarge", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand}
		tc.cloud.LimitCapacity(dry, 1)
		tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{dsfHoldLabel: "true", "app": "pretrain"}},
			Spec: eightGPUs("a100")}
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		trnCreate(t, tc.c, &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "pretrain"},
			Spec: batchv1.JobSpec{CompletionMode: ptr.To(batchv1.IndexedCompletion), Parallelism: ptr.To[int32](2),
				Completions: ptr.To[int32](2), Template: tmpl},
		})
		trnEventually(t, "both workers running", func(ctx context.Context) (bool, error) {
			pods := &corev1.PodList{}
			if err := tc.c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "pretrain"}); err != nil {
				return false, err
			}
			running := 0
			for _, p := range pods.Items {
				if p.Status.Phase == corev1.PodRunning {
					running++
				}
			}
			return running == 2, nil
		})
		pods := &corev1.PodList{}
		if err := tc.c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "pretrain"}); err != nil {
			t.Fatal(err)
		}
		zones := map[string]bool{}
		for _, p := range pods.Items {
			if p.Spec.NodeName == "" {
				continue
			}
			node := &corev1.Node{}
			if err := tc.c.Get(ctx, client.ObjectKey{Name: p.Spec.NodeName}, node); err != nil {
				t.Fatal(err)
			}
			zones[node.Labels[v1.LabelZone]] = true
		}
		if len(zones) != 1 || zones[dry.Zone] {
			t.Errorf("the gang's pods ran in zones %v, want one zone other than %s", zones, dry.Zone)
		}
		// The machine bought in the dry zone was released: the cloud runs
		// the first gang's two machines and this gang's two, nothing more.
		trnEventually(t, "the half-built gang's machine released", func(ctx context.Context) (bool, error) {
			machines, err := tc.cloud.List(ctx)
			if err != nil {
				return false, err
			}
			perZone := map[string]int{}
			for _, m := range machines {
				perZone[m.Status.Zone]++
			}
			return len(machines) == 4 && perZone[dry.Zone] == 2, nil
		})
		claims, err := trnClaims(ctx, tc.c, "a100")
		if err != nil || len(claims) != 4 {
			t.Errorf("%d nodeclaims (%v), want 4", len(claims), err)
		}
		nodes := &corev1.NodeList{}
		if err := tc.c.List(ctx, nodes, client.MatchingLabels{v1.LabelNodePool: "a100"}); err != nil || len(nodes.Items) != 4 {
			t.Errorf("%d nodes (%v), want 4", len(nodes.Items), err)
		}
		fmt.Fprintf(testWriter{t}, "gang re-planned into %v\n", zones)
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }
