package provisioning

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// zonalClaim stores claim name in namespace default, bound to volume
// pv-<name>, which only nodes of zone can attach.
func (f *fixture) zonalClaim(t *testing.T, name, zone string) {
	t.Helper()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name},
		Spec: corev1.PersistentVolumeSpec{NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{zone}},
			}}},
		}}},
	}
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: pv.Name},
	}
	for _, o := range []client.Object{pv, pvc} {
		if err := f.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
}

func withClaim(name string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
	}
}

// A pod whose volume is pinned to a zone reaches the solver confined to that
// zone; a pod whose claim does not exist yet is not planned and is told why.
func TestScheduleHonoursVolumeTopology(t *testing.T) {
	f := newFixture(t, onePerPod)
	ctx := context.Background()
	f.zonalClaim(t, "model", "us-east-1b")
	csiNode := &storagev1.CSINode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{
		{Name: "ebs.csi.aws.com", NodeID: "i-1", Allocatable: &storagev1.VolumeNodeResources{Count: ptr.To[int32](25)}}}}}
	if err := f.client.Create(ctx, csiNode); err != nil {
		t.Fatal(err)
	}
	f.cluster.UpdatePod(withPod(pendingPod("zonal"), tolerateGPU, withClaim("model")))
	f.cluster.UpdatePod(withPod(pendingPod("orphan"), tolerateGPU, withClaim("missing")))

	r := f.schedule(t)
	if len(r.Pods) != 1 || r.Pods[0].Name != "zonal" {
		t.Fatalf("planned pods %v, want only zonal", podNames(r.Pods))
	}
	snap := f.solver.snapshots[0]
	got := snap.Pods[0].Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	want := []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
		{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"us-east-1b"}},
	}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the solver saw the zonal pod's node affinity (-want +got):\n%s", diff)
	}
	// The solver counts attach limits with what the CSI drivers report.
	limit := cloudprovider.AttachLimitResource("ebs.csi.aws.com")
	if snap.Volumes == nil || snap.Volumes.NodeLimits["n1"][limit] != 25 {
		t.Errorf("the snapshot's volumes do not carry n1's CSINode attach limit of 25")
	}
	if !f.cluster.IsNominated(snap.Pods[0]) {
		t.Error("the zonal pod was not nominated to its claim")
	}
	var waiting []string
	for _, e := range f.drainEvents() {
		if strings.Contains(e, ReasonWaitingForVolume) {
			waiting = append(waiting, e)
		}
	}
	if len(waiting) != 1 || !strings.Contains(waiting[0], "default/missing") {
		t.Errorf("WaitingForVolume events %q, want one naming default/missing", waiting)
	}
}

func realSolverWith(f *fixture, its ...*cloudprovider.InstanceType) {
	f.ctrl.solver = SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) })
	f.ctrl.cloud = &stubCloud{types: map[string][]*cloudprovider.InstanceType{"gpu": its}}
}

func fullNodeIn(f *fixture, name, zone string) {
	f.cluster.UpdateNode(&corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelZone: zone, v1.LabelHostname: name}},
		Status: corev1.NodeStatus{Allocatable: res("cpu", "4", "memory", "16Gi", "pods", "110"),
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}})
}

// A claim the scheduler chose node n1 for is being provisioned in n1's zone;
// a machine in another (cheaper) zone could never mount it.
func TestSelectedNodeConfinesThePodToItsZone(t *testing.T) {
	f := newFixture(t, nil)
	realSolverWith(f, g5) // spot in us-east-1a is the cheapest offering
	fullNodeIn(f, "n1", "us-east-1b")
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "gp3"}, Provisioner: "ebs.csi.aws.com", VolumeBindingMode: &wffc}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "data",
		Annotations: map[string]string{scheduling.AnnotationSelectedNode: "n1"}},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("gp3")}}
	for _, o := range []client.Object{sc, pvc} {
		if err := f.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	f.cluster.UpdatePod(withPod(pendingPod("db-0"), tolerateGPU, withClaim("data")))

	r := f.schedule(t)
	if len(r.Created) != 1 {
		t.Fatalf("%d machines bought for db-0, want 1", len(r.Created))
	}
	for _, c := range r.Created {
		for _, o := range c.Spec.Offerings {
			if o.Zone != "us-east-1b" {
				t.Errorf("bought nodeclaim %s with an offering in %s: the claim's volume is being provisioned for n1 in us-east-1b and the kube-scheduler only considers n1", c.Name, o.Zone)
			}
		}
	}
}

// The scheduler keeps a pod whose ReadWriteOncePod claim another pod holds
// off every node; a machine bought for it would stand idle, held by the
// nomination. It waits, told why, until the claim is free.
func TestReadWriteOncePodClaimInUseBuysNothing(t *testing.T) {
	f := newFixture(t, nil)
	realSolverWith(f, g5)
	fullNodeIn(f, "n1", "us-east-1a")
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-shared"}, Spec: corev1.PersistentVolumeSpec{
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod},
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "ebs.csi.aws.com", VolumeHandle: "vol-1"}}}}
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "shared"},
		Spec: corev1.PersistentVolumeClaimSpec{VolumeName: pv.Name, AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOncePod}}}
	for _, o := range []client.Object{pv, pvc} {
		if err := f.client.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	f.cluster.UpdatePod(withPod(pendingPod("db-0"), withClaim("shared"), func(p *corev1.Pod) {
		p.Spec.NodeName = "n1"
		p.Spec.Containers[0].Resources.Requests = res("cpu", "1")
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning}
	}))
	f.cluster.UpdatePod(withPod(pendingPod("db-1"), tolerateGPU, withClaim("shared")))

	r := f.schedule(t)
	if len(r.Created) != 0 {
		t.Errorf("bought %d nodeclaim(s) for db-1, whose ReadWriteOncePod claim db-0 holds on n1", len(r.Created))
	}
	if evs := strings.Join(f.drainEvents(), "\n"); !strings.Contains(evs, ReasonWaitingForVolume) || !strings.Contains(evs, "pod db-0 uses it") {
		t.Errorf("events:\n%s\nwant %s naming db-0", evs, ReasonWaitingForVolume)
	}
}

// A pod whose only volume is an in-tree EBS disk in its spec counts against
// the EBS attach limit, so the solver gets the cluster's volumes for it.
func TestInlineDiskPodGetsAttachLimits(t *testing.T) {
	f := newFixture(t, onePerPod)
	f.cluster.UpdatePod(withPod(pendingPod("legacy"), tolerateGPU, func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-1"}}}}
	}))
	f.schedule(t)
	if snap := f.solver.snapshots[0]; snap.Volumes == nil {
		t.Error("the snapshot carries no volumes: the pod's EBS disk is not counted against attach limits")
	}
}
