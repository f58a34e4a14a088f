package disruption

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// The room held for a draining node's pod is where its volume can attach:
// a0 (draining off a) fits c by CPU, but c's EBS driver attaches no more
// volumes, so a0 will land on d. A what-if for b must leave d's room to
// a0 rather than plan b0 there (b1 fits c: it has no volume).
func TestRoomHeldForADrainingPodIsWhereItsVolumeAttaches(t *testing.T) {
	now := start.Add(time.Hour)
	small := catalog()[0] // 4 CPU
	ca, na := draining("a", small, now)
	cb, nb := machine("b", "p", small, v1.CapacityTypeOnDemand, start)
	cc, nc := machine("c", "p", small, v1.CapacityTypeOnDemand, start)
	cd, nd := machine("d", "p", small, v1.CapacityTypeOnDemand, start)
	stay := annotated(v1.AnnotationDoNotDisrupt, "true")
	pods := []*corev1.Pod{pod("a0", "a", "1", mounting("data-a")), pod("b0", "b", "3"), pod("b1", "b", "500m"),
		pod("c0", "c", "3", stay, mounting("data-c")), pod("d0", "d", "1", stay)}
	st := stateOf(now, []*v1.NodePool{pool("p")}, []*v1.NodeClaim{ca, cb, cc, cd}, []*corev1.Node{na, nb, nc, nd}, pods, nil)
	var claims []*corev1.PersistentVolumeClaim
	var pvs []*corev1.PersistentVolume
	for _, name := range []string{"data-a", "data-c"} {
		claims = append(claims, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-" + name}})
		pvs = append(pvs, &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name},
			Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
				CSI: &corev1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: name}}}})
	}
	st.Volumes = scheduling.NewVolumes(claims, pvs, nil)
	st.Volumes.SetNodeLimits([]*storagev1.CSINode{{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Spec: storagev1.CSINodeSpec{
		Drivers: []storagev1.CSINodeDriver{{Name: "ebs.csi.aws.com", NodeID: "i-c", Allocatable: &storagev1.VolumeNodeResources{Count: ptr.To[int32](1)}}}}}})

	realSolver := SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	e := NewEvaluation(st, &Simulator{Solver: realSolver, Cloud: &fakeCloud{types: catalog()}}, DefaultChurnGuard())
	b := candidate(BuildCandidates(st, nil), "b")
	if b == nil {
		t.Fatal("b is no candidate")
	}
	sim, err := e.simulate(context.Background(), []*Candidate{b})
	if err != nil {
		t.Fatal(err)
	}
	for _, bd := range sim.Plan.Bindings {
		if bd.Pod.Name == "b0" {
			t.Errorf("the what-if puts b0 on %s; d's room is a0's (c cannot attach a0's volume)", bd.NodeName)
		}
	}
	if len(sim.Plan.NewNodes) != 1 {
		t.Errorf("the what-if buys %d machines, want 1 for b0", len(sim.Plan.NewNodes))
	}
}
