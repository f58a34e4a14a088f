package disruption

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

// A pod with a zonal disk moves only within the disk's zone, also when its
// other disks are zone-redundant (their terms once multiplied past the
// limit, and the what-if then planned the pod without its volumes).

func zonedCatalog() []*cloudprovider.InstanceType {
	large := instanceType("large", "16", "64Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.80})
	small := instanceType("small", "4", "16Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.20})
	small.Offerings = append(small.Offerings, cloudprovider.Offering{Zone: "zone-b", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 0.10, Available: true})
	return []*cloudprovider.InstanceType{large, small}
}

// auditEnv is newEnv with the real solver and zonedCatalog.
func zonedEnv(t *testing.T, objs ...client.Object) *env {
	t.Helper()
	e := &env{clock: clocktesting.NewFakeClock(start.Add(time.Hour)), cloud: &fakeCloud{types: zonedCatalog()},
		recorder: events.NewFakeRecorder(1000)}
	e.client = cloudtest.NewClientBuilder().WithObjects(objs...).Build()
	e.ctrl = NewController(Deps{Client: e.client, CloudProvider: e.cloud, Clock: e.clock, Recorder: e.recorder,
		Solver: SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })})
	return e
}

// boundZonalClaim returns a claim bound to a PV of the Azure Disk CSI
// driver whose node affinity has one term per zone value given.
func boundZonalClaim(name string, zones ...string) []client.Object {
	var terms []corev1.NodeSelectorTerm
	for _, z := range zones {
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			{Key: "topology.disk.csi.azure.com/zone", Operator: corev1.NodeSelectorOpIn, Values: []string{z}}}})
	}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name},
		Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "disk.csi.azure.com", VolumeHandle: name}},
			NodeAffinity:           &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}}}}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{VolumeName: pv.Name}}
	return []client.Object{pv, pvc}
}

func mounting(claims ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for _, c := range claims {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v-" + c, VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
		}
	}
}

// replacementZones runs the decision and validation passes for a
// cluster whose one large machine a (zone-a) runs db-0 with the given
// claims, and returns the zones the replacement may launch in.
func replacementZones(t *testing.T, claims []string, objs ...client.Object) []string {
	t.Helper()
	c, n := machine("a", "p", zonedCatalog()[0], v1.CapacityTypeOnDemand, start)
	e := zonedEnv(t, append([]client.Object{pool("p"), c, n}, objs...)...)
	mustT(t, e.client.Create(context.Background(), pod("db-0", "a", "1", ownedBy("StatefulSet"), mounting(claims...))))
	e.pass(t)
	e.validate(t)
	var zones []string
	for _, name := range e.claims(t) {
		if name == "a" {
			continue
		}
		claim := &v1.NodeClaim{}
		mustT(t, e.client.Get(context.Background(), client.ObjectKey{Name: name}, claim))
		for _, o := range claim.Spec.Offerings {
			zones = append(zones, o.Zone)
		}
	}
	return zones
}

// A StatefulSet pod whose data disk is zonal (zone-a) and which also mounts
// four Azure ZRS disks (one PV term per zone and one for non-zonal nodes)
// must not be moved out of zone-a: its data disk cannot follow it.
func TestConsolidationKeepsAZonalDisksPodInItsZone(t *testing.T) {
	zrs := []string{"zone-a", "zone-b", "zone-c", "zone-d", ""}
	t.Run("zonal disk only", func(t *testing.T) {
		zones := replacementZones(t, []string{"data"}, boundZonalClaim("data", "zone-a")...)
		for _, z := range zones {
			if z != "zone-a" {
				t.Errorf("replacement may launch in %s, but db-0's disk is in zone-a", z)
			}
		}
	})
	t.Run("claim not found", func(t *testing.T) {
		// Its topology cannot be read: the pod has no place, not any place.
		if zones := replacementZones(t, []string{"gone"}); len(zones) > 0 {
			t.Errorf("replacement in %v for a pod whose claim cannot be read", zones)
		}
	})
	t.Run("zonal disk and four ZRS disks", func(t *testing.T) {
		objs := boundZonalClaim("data", "zone-a")
		claims := []string{"data"}
		for i := 0; i < 4; i++ {
			name := fmt.Sprintf("shared-%d", i)
			objs = append(objs, boundZonalClaim(name, zrs...)...)
			claims = append(claims, name)
		}
		zones := replacementZones(t, claims, objs...)
		if len(zones) == 0 {
			t.Fatal("no replacement")
		}
		for _, z := range zones {
			if z != "zone-a" {
				t.Errorf("replacement may launch in %s, but db-0's data disk is in zone-a: the pod would be stranded", z)
			}
		}
	})
}

// A ReplicaSet's pod keeps scratch data on a generic ephemeral volume of a
// node-local class (rancher local-path, TopoLVM, OpenEBS LocalPV: the PV is
// pinned to the node). The claim belongs to the pod (ownerReference) and is
// deleted with it; the pod the ReplicaSet makes in its place, wherever it
// lands, gets a new claim from the template. So the bound PV's topology does
// not confine where the pod can go: the large machine a, under-used, must be
// replaced by a small one (the same holds for drift, which is refused the
// same way).

// A generic ephemeral volume goes with its pod: the copy a move makes gets a
// claim of its own. A node-local scratch volume (local-path) pinned the pod
// to its node, so the node was never consolidated, drifted or replaced.
func TestEphemeralVolumeDoesNotPinAMovedPod(t *testing.T) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: "rancher.io/local-path", VolumeBindingMode: &wffc}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pvc-123"}, Spec: corev1.PersistentVolumeSpec{
		StorageClassName:       "local-path",
		PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/opt/local-path-provisioner/pvc-123"}},
		NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: v1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}}}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "worker-scratch",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "worker", UID: "uid-worker", Controller: ptr.To(true)}}},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("local-path"), VolumeName: pv.Name}}
	c, n := machine("a", "p", zonedCatalog()[0], v1.CapacityTypeOnDemand, start)
	e := zonedEnv(t, pool("p"), c, n, sc, pv, pvc)
	mustT(t, e.client.Create(context.Background(), pod("worker", "a", "1", ownedBy("ReplicaSet"), func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
			VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("local-path")}}}}}}
	})))
	e.pass(t)
	e.validate(t)
	if got := e.claims(t); len(got) != 2 {
		t.Fatalf("claims %v: machine a (large, one 1-CPU pod) was not replaced; refused: %v", got, eventsWith(e.recorder, ""))
	}
}
