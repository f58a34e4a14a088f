//go:build unix

package e2e

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// prCreate creates a PodTemplate and a ProvisioningRequest for count pods
// of it, as Kueue's admission check does.
func prCreate(t *testing.T, c client.Client, ns, name, class string, count int32, spec corev1.PodSpec) {
	t.Helper()
	trnCreate(t, c,
		&corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}, Spec: spec}},
		&provreqv1.ProvisioningRequest{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: provreqv1.ProvisioningRequestSpec{ProvisioningClassName: class,
				PodSets: []provreqv1.PodSet{{PodTemplateRef: provreqv1.Reference{Name: name}, Count: count}}}})
}

// prCondition waits until the request's condition has the status and reason.
func prCondition(t *testing.T, c client.Client, ns, name, typ string, status metav1.ConditionStatus, reason string) *metav1.Condition {
	t.Helper()
	var got *metav1.Condition
	trnEventually(t, name+" "+typ+"="+string(status)+"/"+reason, func(ctx context.Context) (bool, error) {
		pr := &provreqv1.ProvisioningRequest{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, pr); err != nil {
			return false, err
		}
		got = meta.FindStatusCondition(pr.Status.Conditions, typ)
		return got != nil && got.Status == status && got.Reason == reason, nil
	})
	return got
}

func consumingPod(ns, name, request string, spec corev1.PodSpec) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": request},
			Annotations: map[string]string{provreqv1.ConsumeAnnotation: request,
				provreqv1.ClassAnnotation: provreqv1.ProvisioningClassBestEffortAtomicScaleUp}},
		Spec: spec,
	}
}

func smallPod(pool string) corev1.PodSpec {
	s := eightGPUs(pool)
	s.Containers[0].Resources = corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}}
	return s
}

// TestProvisioningRequests creates ProvisioningRequests and their
// PodTemplates directly, as Kueue would, and checks their conditions, that
// a best-effort-atomic request is bought all or nothing under injected
// capacity errors, and that the consuming pods run on the bought nodes.
func TestProvisioningRequests(t *testing.T) {
	tc := trnStart(t, "provreq-e2e", nil)
	ctx := context.Background()
	const ns = "kueue"
	trnCreate(t, tc.c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		trnPool("a100", "p4d.24xlarge"), trnPool("cpu", "m5.xlarge"))
	atomic, check := provreqv1.ProvisioningClassBestEffortAtomicScaleUp, provreqv1.ProvisioningClassCheckCapacity

	t.Run("best-effort-atomic: bought after a zone ran dry, and the consuming pods run there", func(t *testing.T) {
		dry := cloudprovider.OfferingID{InstanceType: "p4d.24xlarge", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand}
		tc.cloud.LimitCapacity(dry, 1)
		prCreate(t, tc.c, ns, "pretrain", atomic, 2, eightGPUs("a100"))
		prCondition(t, tc.c, ns, "pretrain", provreqv1.Accepted, metav1.ConditionTrue, "Accepted")
		prCondition(t, tc.c, ns, "pretrain", provreqv1.Provisioned, metav1.ConditionTrue, "CapacityIsProvisioned")
		claims, err := trnClaims(ctx, tc.c, "a100")
		if err != nil || len(claims) != 2 {
			t.Fatalf("%d nodeclaims (%v), want the request's 2", len(claims), err)
		}
		bought := map[string]bool{}
		for _, cl := range claims {
			bought[cl.Name] = true
			if cl.Annotations[v1.AnnotationBookedBy] != ns+"/pretrain" || cl.Spec.Offerings[0].Zone == dry.Zone {
				t.Errorf("claim %s held for %q in %s", cl.Name, cl.Annotations[v1.AnnotationBookedBy], cl.Spec.Offerings[0].Zone)
			}
		}
		trnEventually(t, "the machine bought in the dry zone released", func(ctx context.Context) (bool, error) {
			machines, err := tc.cloud.List(ctx)
			if err != nil {
				return false, err
			}
			for _, m := range machines {
				if m.Status.Zone == dry.Zone {
					return false, nil
				}
			}
			return len(machines) == 2, nil
		})
		for _, n := range []string{"worker-0", "worker-1"} {
			trnCreate(t, tc.c, consumingPod(ns, n, "pretrain", eightGPUs("a100")))
		}
		var nodes map[string]*corev1.Node
		trnEventually(t, "the consuming pods running", func(ctx context.Context) (bool, error) {
			var ok bool
			nodes, ok, err = trnRunning(ctx, tc.c, ns, "worker-0", "worker-1")
			return ok, err
		})
		for pod, node := range nodes {
			if !bought[node.Labels[v1.LabelNodeClaim]] {
				t.Errorf("%s runs on %s (claim %q), not on a machine bought for the request", pod, node.Name, node.Labels[v1.LabelNodeClaim])
			}
		}
		if claims, _ := trnClaims(ctx, tc.c, "a100"); len(claims) != 2 {
			t.Errorf("%d nodeclaims after the pods arrived, want still 2: their capacity was booked", len(claims))
		}
		tc.cloud.ClearInsufficientCapacity()
	})

	t.Run("best-effort-atomic: nothing fits, Failed with the reason, nothing bought", func(t *testing.T) {
		spec := eightGPUs("a100")
		spec.Containers[0].Resources.Requests[v1.ResourceNvidiaGPU] = resource.MustParse("16")
		spec.Containers[0].Resources.Limits[v1.ResourceNvidiaGPU] = resource.MustParse("16")
		prCreate(t, tc.c, ns, "too-big", atomic, 1, spec)
		c := prCondition(t, tc.c, ns, "too-big", provreqv1.Failed, metav1.ConditionTrue, "CapacityIsNotFound")
		if !strings.Contains(c.Message, "nvidia.com/gpu") {
			t.Errorf("Failed message %q does not say what is missing", c.Message)
		}
		if claims, _ := trnClaims(ctx, tc.c, "a100"); len(claims) != 2 {
			t.Errorf("%d nodeclaims, want only the first request's 2", len(claims))
		}
	})

	t.Run("check-capacity: existing room is booked, buyable room is reported, nothing is bought", func(t *testing.T) {
		trnCreate(t, tc.c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"}, Spec: smallPod("cpu")})
		trnEventually(t, "web running", func(ctx context.Context) (bool, error) {
			_, ok, err := trnRunning(ctx, tc.c, ns, "web")
			return ok, err
		})
		prCreate(t, tc.c, ns, "room", check, 1, smallPod("cpu"))
		c := prCondition(t, tc.c, ns, "room", provreqv1.Provisioned, metav1.ConditionTrue, "CapacityIsFound")
		if !strings.Contains(c.Message, "existing capacity") {
			t.Errorf("message %q, want existing capacity", c.Message)
		}
		claims, err := trnClaims(ctx, tc.c, "cpu")
		if err != nil || len(claims) != 1 || claims[0].Annotations[v1.AnnotationBookedBy] != ns+"/room" {
			t.Errorf("cpu claims %d (%v); want web's one, held for the request", len(claims), err)
		}
		prCreate(t, tc.c, ns, "more", check, 40, smallPod("cpu"))
		c = prCondition(t, tc.c, ns, "more", provreqv1.Provisioned, metav1.ConditionTrue, "CapacityIsFound")
		if !strings.Contains(c.Message, "machines Stowage can buy") {
			t.Errorf("message %q, want what would be bought", c.Message)
		}
		if claims, _ := trnClaims(ctx, tc.c, "cpu"); len(claims) != 1 {
			t.Errorf("check-capacity bought: %d cpu claims", len(claims))
		}
	})
}
