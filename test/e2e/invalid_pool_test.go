//go:build unix

package e2e

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	poolvalidation "github.com/stowage-k8s/stowage/pkg/controllers/nodepool/validation"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// TestInvalidStoredPoolIsSkipped is issue 10 #1: NodePools that today's CRD
// refuses but an older one stored (a duration Go cannot hold, a field that
// does not decode) must not stop provisioning. The operator starts with them
// already in the cluster, as after a restart: the valid pool still gets its
// pod a node, and each bad pool is reported with a condition, an event and a
// metric, and never bought for.
func TestInvalidStoredPoolIsSkipped(t *testing.T) {
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	ctx := context.Background()
	const ns = "invalid-pool"

	broken := map[string]string{
		// name -> the field the older CRD let through
		"huge-expiry": "spec.template.spec.expireAfter",
		"soon":        "spec.template.spec.terminationGracePeriod",
	}
	withLooseCRD(t, cp, func() {
		for _, obj := range []map[string]any{
			pool("huge-expiry", map[string]any{"expireAfter": "99999999999999h"}),
			pool("soon", map[string]any{"terminationGracePeriod": "soon"}),
		} {
			u := &unstructured.Unstructured{Object: obj}
			if err := cp.Client.Create(ctx, u); err != nil {
				t.Fatalf("storing NodePool %s under the loose CRD: %v", u.GetName(), err)
			}
		}
	})

	provCreate(t, cp.Client,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		provPool("good", "good", nil, provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)))
	pc := e2eStartOperator(t, cp, e2eOptions{clusterName: "prov-e2e"})
	// The pod tolerates every pool's taint, so only validity decides.
	provCreate(t, pc.c, provPod(ns, "app", nil, []string{"good", "bad"}, "cpu", "1", "memory", "1Gi"))

	pod := &corev1.Pod{}
	provEventually(t, "pod app Running", func(ctx context.Context) (bool, error) {
		err := pc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "app"}, pod)
		return err == nil && pod.Status.Phase == corev1.PodRunning, err
	})
	node := &corev1.Node{}
	if err := pc.c.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
		t.Fatal(err)
	}
	if got := node.Labels[v1.LabelNodePool]; got != "good" {
		t.Errorf("pod runs on a node of pool %q, want good", got)
	}

	for name, fieldPath := range broken {
		var cond *metav1.Condition
		provEventually(t, "ValidationSucceeded=False on "+name, func(ctx context.Context) (bool, error) {
			np := &v1.NodePool{}
			if err := pc.c.Get(ctx, client.ObjectKey{Name: name}, np); err != nil {
				return false, err
			}
			cond = meta.FindStatusCondition(np.Status.Conditions, poolvalidation.ConditionValidationSucceeded)
			return cond != nil && cond.Status == metav1.ConditionFalse, nil
		})
		if !strings.Contains(cond.Message, fieldPath) {
			t.Errorf("pool %s: condition message %q does not name %s", name, cond.Message, fieldPath)
		}
		notes, err := provEventNotes(ctx, pc.c, "", name, poolvalidation.ReasonInvalid)
		if err != nil {
			t.Fatal(err)
		}
		if len(notes) == 0 || !strings.Contains(notes[0], fieldPath) {
			t.Errorf("pool %s: Invalid events %q, want one naming %s", name, notes, fieldPath)
		}
		if got := gaugeValue(t, "stowage_nodepool_invalid", "nodepool", name); got != 1 {
			t.Errorf("stowage_nodepool_invalid{nodepool=%q} = %v, want 1", name, got)
		}
		claims, err := provClaims(ctx, pc.c, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(claims) > 0 {
			t.Errorf("pool %s is invalid but has %d NodeClaims", name, len(claims))
		}
	}
	// The stored value is untouched: status updates never rewrite the spec.
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(v1.SchemeGroupVersion.WithKind("NodePool"))
	if err := pc.c.Get(ctx, client.ObjectKey{Name: "huge-expiry"}, u); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := unstructured.NestedString(u.Object, "spec", "template", "spec", "expireAfter"); got != "99999999999999h" {
		t.Errorf("stored expireAfter is now %q; the controller must never rewrite it", got)
	}
}

func pool(name string, spec map[string]any) map[string]any {
	return map[string]any{
		"apiVersion": v1.SchemeGroupVersion.String(), "kind": "NodePool",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"template": map[string]any{"spec": mergeMaps(map[string]any{
			"taints": []any{map[string]any{"key": "bad", "effect": "NoSchedule"}},
		}, spec)}},
	}
}

func mergeMaps(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// withLooseCRD runs fn while the NodePool CRD lets any string through as a
// duration, as an older CRD (or a direct etcd write) would, then restores it.
func withLooseCRD(t *testing.T, cp *controlplane.ControlPlane, fn func()) {
	t.Helper()
	ctx := context.Background()
	crd := &apiextensionsv1.CustomResourceDefinition{}
	key := client.ObjectKey{Name: "nodepools.stowage.dev"}
	if err := cp.Client.Get(ctx, key, crd); err != nil {
		t.Fatal(err)
	}
	original := crd.Spec.DeepCopy()
	tmpl := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["template"].Properties["spec"]
	for _, f := range []string{"expireAfter", "terminationGracePeriod"} {
		p := tmpl.Properties[f]
		p.XValidations, p.MaxLength, p.Pattern = nil, nil, ""
		tmpl.Properties[f] = p
	}
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["template"].Properties["spec"] = tmpl
	updateCRD(t, cp, crd)
	// The API server swaps its validator asynchronously: wait for it.
	probe := &unstructured.Unstructured{Object: pool("probe", map[string]any{"expireAfter": "99999999999999h"})}
	provEventually(t, "the loose CRD to be served", func(ctx context.Context) (bool, error) {
		return cp.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll) == nil, nil
	})
	fn()

	if err := cp.Client.Get(ctx, key, crd); err != nil {
		t.Fatal(err)
	}
	crd.Spec = *original
	updateCRD(t, cp, crd)
	provEventually(t, "the strict CRD to be served again", func(ctx context.Context) (bool, error) {
		return cp.Client.Create(ctx, probe.DeepCopy(), client.DryRunAll) != nil, nil
	})
}

func updateCRD(t *testing.T, cp *controlplane.ControlPlane, crd *apiextensionsv1.CustomResourceDefinition) {
	t.Helper()
	if err := cp.Client.Update(context.Background(), crd); err != nil {
		t.Fatalf("updating CRD %s: %v", crd.Name, err)
	}
}

// gaugeValue reads a gauge of the in-process operator from controller-runtime's registry.
func gaugeValue(t *testing.T, name, label, value string) float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}
