package lifecycle

import (
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func gangClaim(name, gang string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	c := newClaim(name, offerings...)
	c.Labels[v1.LabelGang] = gang
	c.Annotations = map[string]string{v1.AnnotationGang: "ml/" + gang}
	return c
}

// A gang member that no offering can hold releases the whole gang, launched
// members included, so provisioning re-plans it whole elsewhere; other gangs
// and ordinary claims are left alone.
func TestGangMemberOutOfCapacityReleasesTheGang(t *testing.T) {
	a := offering("p5.48xlarge", "zone-a", v1.CapacityTypeOnDemand)
	e := newEnv(t,
		gangClaim("m1", "train", a), gangClaim("m2", "train", a),
		gangClaim("other", "serve", a), newClaim("plain", a))
	for _, name := range []string{"m1", "other", "plain"} {
		if _, err := e.reconcile(t, name); err != nil {
			t.Fatalf("reconcile %s: %v", name, err)
		}
	}
	if !e.claim(t, "m1").DeletionTimestamp.IsZero() {
		t.Fatal("m1 launched; nothing should be released yet")
	}
	e.cloud.SetNoCapacity(cloudprovider.ChoiceID(a))
	if _, err := e.reconcile(t, "m2"); err != nil {
		t.Fatalf("reconcile m2: %v", err)
	}
	for name, wantDeleted := range map[string]bool{"m1": true, "m2": true, "other": false, "plain": false} {
		if deleted := !e.claim(t, name).DeletionTimestamp.IsZero(); deleted != wantDeleted {
			t.Errorf("claim %s deleted = %v, want %v", name, deleted, wantDeleted)
		}
	}
}
