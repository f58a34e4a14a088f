package provisioningrequest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// The request's pods get their RuntimeClass's overhead at admission, as all
// pods do; the PodTemplate does not carry it. Stand-ins without it book
// machines too small for the real pods.
func TestStandInsCarryRuntimeClassOverhead(t *testing.T) {
	const class = provreqv1.ProvisioningClassBestEffortAtomicScaleUp
	overhead := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m"), corev1.ResourceMemory: resource.MustParse("160Mi")}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "kata"}, Handler: "kata", Overhead: &nodev1.Overhead{PodFixed: overhead}}
	kata := template("sandboxed", "1")
	kata.Template.Spec.RuntimeClassName = ptr.To("kata")
	e := newEnv(t, rc, kata, template("plain", "1"), request("job", class, podSet("sandboxed", 2), podSet("plain", 1)))
	e.reconcile(t, "job")
	ds := e.ctrl.Demands()
	if len(ds) != 1 || len(ds[0].Pods) != 3 {
		t.Fatalf("demands %+v; want one demand of 3 pods", ds)
	}
	for _, p := range ds[0].Pods {
		want := overhead
		if p.Spec.RuntimeClassName == nil {
			want = nil
		}
		for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			got, wantQ := p.Spec.Overhead[name], want[name]
			if got.Cmp(wantQ) != 0 {
				t.Errorf("stand-in %s overhead %s = %s, want %s", p.Name, name, got.String(), wantQ.String())
			}
		}
	}
}

// Admission also gives the request's pods their RuntimeClass's node selector
// and tolerations. Stand-ins without them are planned onto machines the real
// pods cannot use (no kata there) and kept off the tainted ones they can.
func TestStandInsCarryRuntimeClassScheduling(t *testing.T) {
	const class = provreqv1.ProvisioningClassBestEffortAtomicScaleUp
	kataOnly := corev1.Toleration{Key: "kata", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "kata"}, Handler: "kata", Scheduling: &nodev1.Scheduling{
		NodeSelector: map[string]string{"runtime": "kata"},
		Tolerations:  []corev1.Toleration{kataOnly},
	}}
	kata := template("sandboxed", "1")
	kata.Template.Spec.RuntimeClassName = ptr.To("kata")
	kata.Template.Spec.NodeSelector = map[string]string{"gpu": "h100"}
	// The template's own toleration covers the class's: it is kept once.
	anyKata := corev1.Toleration{Key: "kata", Operator: corev1.TolerationOpExists}
	kata.Template.Spec.Tolerations = []corev1.Toleration{anyKata}
	e := newEnv(t, rc, kata, request("job", class, podSet("sandboxed", 2)))
	e.reconcile(t, "job")
	ds := e.ctrl.Demands()
	if len(ds) != 1 || len(ds[0].Pods) != 2 {
		t.Fatalf("demands %+v; want one demand of 2 pods", ds)
	}
	for _, p := range ds[0].Pods {
		if diff := cmp.Diff(map[string]string{"gpu": "h100", "runtime": "kata"}, p.Spec.NodeSelector); diff != "" {
			t.Errorf("stand-in %s node selector (-want +got):\n%s", p.Name, diff)
		}
		if diff := cmp.Diff([]corev1.Toleration{anyKata}, p.Spec.Tolerations); diff != "" {
			t.Errorf("stand-in %s tolerations (-want +got):\n%s", p.Name, diff)
		}
	}
}

// A template that selects another value for a key its RuntimeClass selects
// makes pods admission rejects: the request fails, naming the conflict,
// rather than buying machines for pods that will never exist.
func TestStandInsRuntimeClassConflict(t *testing.T) {
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "kata"}, Handler: "kata", Scheduling: &nodev1.Scheduling{
		NodeSelector: map[string]string{"runtime": "kata"},
	}}
	kata := template("sandboxed", "1")
	kata.Template.Spec.RuntimeClassName = ptr.To("kata")
	kata.Template.Spec.NodeSelector = map[string]string{"runtime": "runc"}
	e := newEnv(t, rc, kata, request("job", provreqv1.ProvisioningClassBestEffortAtomicScaleUp, podSet("sandboxed", 1)))
	e.reconcile(t, "job")
	if ds := e.ctrl.Demands(); len(ds) != 0 {
		t.Errorf("%d demands, want none: its pods are rejected", len(ds))
	}
	c := conditions.Get(e.get(t, "job").Status.Conditions, provreqv1.Failed)
	if c == nil || c.Reason != ReasonInvalid || !strings.Contains(c.Message, "runtime=kata conflicts with the pod's runtime=runc") {
		t.Errorf("Failed = %+v", c)
	}
}
