package provisioningrequest

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
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
