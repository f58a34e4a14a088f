package scheduling

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func pvc(name, volume string, class *string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: volume, StorageClassName: class},
	}
}

func zonalPV(name, key string, zones ...string) *corev1.PersistentVolume {
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{
				{Key: key, Operator: corev1.NodeSelectorOpIn, Values: zones},
			}}},
		}}},
	}
}

func class(name string, mode storagev1.VolumeBindingMode, zones ...string) *storagev1.StorageClass {
	sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Provisioner: "ebs.csi.aws.com", VolumeBindingMode: &mode}
	if len(zones) > 0 {
		sc.AllowedTopologies = []corev1.TopologySelectorTerm{{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{
			{Key: "topology.ebs.csi.aws.com/zone", Values: zones},
		}}}
	}
	return sc
}

func podWithClaims(affinity *corev1.Affinity, claims ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}, Spec: corev1.PodSpec{Affinity: affinity}}
	for _, c := range claims {
		p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "v-" + c, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c}}})
	}
	return p
}

func in(key string, values ...string) corev1.NodeSelectorRequirement {
	return corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
}

func terms(pod *corev1.Pod) [][]corev1.NodeSelectorRequirement {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	var out [][]corev1.NodeSelectorRequirement
	for _, t := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		out = append(out, t.MatchExpressions)
	}
	return out
}

func TestWithTopology(t *testing.T) {
	wffc, immediate := storagev1.VolumeBindingWaitForFirstConsumer, storagev1.VolumeBindingImmediate
	vols := NewVolumes(
		[]*corev1.PersistentVolumeClaim{
			pvc("bound-b", "pv-b", nil),
			pvc("bound-legacy", "pv-legacy", nil),
			pvc("bound-anywhere", "pv-anywhere", nil),
			pvc("waiting", "", ptr.To("zonal-wffc")),
			pvc("waiting-default", "", nil),
			pvc("waiting-immediate", "", ptr.To("zonal-immediate")),
			pvc("dangling", "pv-gone", nil),
			pvc("static", "", ptr.To("")),
		},
		[]*corev1.PersistentVolume{
			zonalPV("pv-b", v1.LabelZone, "us-east-1b"),
			zonalPV("pv-legacy", "failure-domain.beta.kubernetes.io/zone", "us-east-1c"),
			{ObjectMeta: metav1.ObjectMeta{Name: "pv-anywhere"}},
		},
		[]*storagev1.StorageClass{
			class("zonal-wffc", wffc, "us-east-1a", "us-east-1b"),
			class("zonal-immediate", immediate, "us-east-1a"),
			func() *storagev1.StorageClass {
				sc := class("gp3", wffc, "us-east-1d")
				sc.Annotations = map[string]string{AnnotationDefaultStorageClass: "true"}
				return sc
			}(),
		},
	)
	gpuAffinity := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{in(v1.LabelGPUName, "a10g")}},
			{MatchExpressions: []corev1.NodeSelectorRequirement{in(v1.LabelGPUName, "l4")}},
		},
	}}}
	tests := []struct {
		name      string
		pod       *corev1.Pod
		want      [][]corev1.NodeSelectorRequirement
		unchanged bool
		notReady  bool
	}{
		{name: "no claims", pod: podWithClaims(nil), unchanged: true},
		{name: "bound zonal volume", pod: podWithClaims(nil, "bound-b"),
			want: [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1b")}}},
		{name: "legacy zone key is normalized", pod: podWithClaims(nil, "bound-legacy"),
			want: [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1c")}}},
		{name: "bound volume without affinity", pod: podWithClaims(nil, "bound-anywhere"), unchanged: true},
		{name: "WaitForFirstConsumer takes the class's allowed topologies", pod: podWithClaims(nil, "waiting"),
			want: [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1a", "us-east-1b")}}},
		{name: "no class name means the default class", pod: podWithClaims(nil, "waiting-default"),
			want: [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1d")}}},
		{name: "each of the pod's terms is narrowed", pod: podWithClaims(gpuAffinity, "bound-b"),
			want: [][]corev1.NodeSelectorRequirement{
				{in(v1.LabelGPUName, "a10g"), in(v1.LabelZone, "us-east-1b")},
				{in(v1.LabelGPUName, "l4"), in(v1.LabelZone, "us-east-1b")},
			}},
		{name: "two volumes in different zones leave no zone", pod: podWithClaims(nil, "bound-b", "bound-legacy"),
			want: [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1b"), in(v1.LabelZone, "us-east-1c")}}},
		{name: "immediate binding waits", pod: podWithClaims(nil, "waiting-immediate"), notReady: true},
		{name: "missing claim waits", pod: podWithClaims(nil, "nope"), notReady: true},
		{name: "claim bound to a missing volume waits", pod: podWithClaims(nil, "dangling"), notReady: true},
		{name: "unbound claim without a class waits", pod: podWithClaims(nil, "static"), notReady: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := vols.WithTopology(tt.pod)
			if tt.notReady {
				if !errors.Is(err, ErrVolumeNotReady) {
					t.Fatalf("err = %v, want ErrVolumeNotReady", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.unchanged {
				if got != tt.pod {
					t.Errorf("pod was copied and changed: %v", terms(got))
				}
				return
			}
			if diff := cmp.Diff(tt.want, terms(got)); diff != "" {
				t.Errorf("required terms (-want +got):\n%s", diff)
			}
			if terms(tt.pod) != nil && len(terms(tt.pod)) != 2 {
				t.Errorf("the input pod was modified")
			}
		})
	}
}

func TestWithTopologyEphemeralVolume(t *testing.T) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	vols := NewVolumes(nil, nil, []*storagev1.StorageClass{class("scratch", wffc, "us-east-1a")})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "train"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{{
		Name: "cache", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
			VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("scratch")}},
		}},
	}}}}
	got, err := vols.WithTopology(pod)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1a")}}
	if diff := cmp.Diff(want, terms(got)); diff != "" {
		t.Errorf("ephemeral volume not created yet uses its template's class (-want +got):\n%s", diff)
	}
}

// Four zone-redundant Azure disks of five terms each crossed into 625
// terms, past the limit, though only five can match a node.
func azureZRSPV(name string) *corev1.PersistentVolume {
	var terms []corev1.NodeSelectorTerm
	for _, z := range []string{"eastus-1", "eastus-2", "eastus-3", "eastus-4", ""} {
		terms = append(terms, corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{
			in("topology.disk.csi.azure.com/zone", z)}})
	}
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: terms}}}}
}

func TestWithTopologyPrunesTermsNoNodeMatches(t *testing.T) {
	var claims []*corev1.PersistentVolumeClaim
	var pvs []*corev1.PersistentVolume
	var names []string
	for i := 0; i < 4; i++ {
		n := fmt.Sprintf("data-%d", i)
		claims = append(claims, pvc(n, "pv-"+n, nil))
		pvs = append(pvs, azureZRSPV("pv-"+n))
		names = append(names, n)
	}
	vols := NewVolumes(claims, pvs, nil)
	got, err := vols.WithTopology(podWithClaims(nil, names...))
	if err != nil {
		t.Fatalf("a pod with 4 Azure ZRS disks (5 terms each) can run in any of 5 topologies, but WithTopology failed: %v", err)
	}
	if n := len(terms(got)); n > 5 {
		t.Errorf("%d terms, want at most 5", n)
	}
}

// The Azure disk driver's empty zone (a disk that is not zonal) stands for
// the fault-domain zones AKS gives nodes outside availability zones.
func TestAzureNonZonalDiskMeansTheFaultDomainZones(t *testing.T) {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-data"}, Spec: corev1.PersistentVolumeSpec{
		NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
			{MatchExpressions: []corev1.NodeSelectorRequirement{in("topology.disk.csi.azure.com/zone", "")}}}}}}}
	got, err := NewVolumes([]*corev1.PersistentVolumeClaim{pvc("data", "pv-data", nil)}, []*corev1.PersistentVolume{pv}, nil).
		WithTopology(podWithClaims(nil, "data"))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]corev1.NodeSelectorRequirement{{{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"0", "1", "2"}}}}
	if diff := cmp.Diff(want, terms(got)); diff != "" {
		t.Errorf("terms (-want +got):\n%s", diff)
	}
}

// A volume whose zone is only in its labels (older provisioners) confines
// the pod as the kube-scheduler's VolumeZone filter does, with or without
// node affinity; "__" joins a regional volume's zones.
func TestVolumeZoneLabelsConfineThePod(t *testing.T) {
	labelled := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-old", Labels: map[string]string{
		"failure-domain.beta.kubernetes.io/zone": "us-east-1a__us-east-1b", "failure-domain.beta.kubernetes.io/region": "us-east-1"}}}
	both := zonalPV("pv-both", "topology.ebs.csi.aws.com/zone", "us-east-1a", "us-east-1c")
	both.Labels = map[string]string{v1.LabelZone: "us-east-1a"}
	vols := NewVolumes([]*corev1.PersistentVolumeClaim{pvc("old", "pv-old", nil), pvc("both", "pv-both", nil)},
		[]*corev1.PersistentVolume{labelled, both}, nil)
	got, err := vols.WithTopology(podWithClaims(nil, "old"))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1a", "us-east-1b"), in(v1.LabelRegion, "us-east-1")}}
	if diff := cmp.Diff(want, terms(got)); diff != "" {
		t.Errorf("labels only: terms (-want +got):\n%s", diff)
	}
	got, err = vols.WithTopology(podWithClaims(nil, "both"))
	if err != nil {
		t.Fatal(err)
	}
	want = [][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1a", "us-east-1c"), in(v1.LabelZone, "us-east-1a")}}
	if diff := cmp.Diff(want, terms(got)); diff != "" {
		t.Errorf("affinity and labels: terms (-want +got):\n%s", diff)
	}
}

// A claim's class is found as the kube-scheduler and the API server find
// it: the legacy volume.beta.kubernetes.io/storage-class annotation before
// spec.storageClassName (the PersistentVolume controller never gives such
// a claim the default), the default by either is-default-class
// annotation, and of several defaults created together the first by name.
func TestWithTopologyFindsTheClassAsKubernetesDoes(t *testing.T) {
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	defaultBy := func(annotation string, sc *storagev1.StorageClass) *storagev1.StorageClass {
		sc.Annotations = map[string]string{annotation: "true"}
		return sc
	}
	legacy := pvc("legacy", "", nil)
	legacy.Annotations = map[string]string{corev1.BetaStorageClassAnnotation: "zonal"}
	unnamed := pvc("unnamed", "", nil)

	vols := NewVolumes([]*corev1.PersistentVolumeClaim{legacy, unnamed}, nil, []*storagev1.StorageClass{
		class("zonal", wffc, "us-east-1a"),
		defaultBy(AnnotationDefaultStorageClass, class("gp3", wffc, "us-east-1d")),
	})
	got, err := vols.WithTopology(podWithClaims(nil, "legacy"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1a")}}, terms(got)); diff != "" {
		t.Errorf("class named by the beta annotation: terms (-want +got):\n%s", diff)
	}

	vols = NewVolumes([]*corev1.PersistentVolumeClaim{unnamed}, nil, []*storagev1.StorageClass{
		defaultBy("storageclass.beta.kubernetes.io/is-default-class", class("gp2", wffc, "us-east-1b")),
	})
	got, err = vols.WithTopology(podWithClaims(nil, "unnamed"))
	if err != nil {
		t.Fatalf("default marked by the beta annotation: %v", err)
	}
	if diff := cmp.Diff([][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1b")}}, terms(got)); diff != "" {
		t.Errorf("default marked by the beta annotation: terms (-want +got):\n%s", diff)
	}

	vols = NewVolumes([]*corev1.PersistentVolumeClaim{unnamed}, nil, []*storagev1.StorageClass{
		defaultBy(AnnotationDefaultStorageClass, class("b-standard", wffc, "us-east-1b")),
		defaultBy(AnnotationDefaultStorageClass, class("a-standard", wffc, "us-east-1a")),
	})
	for i := 0; i < 20; i++ { // map order varies from run to run
		got, err = vols.WithTopology(podWithClaims(nil, "unnamed"))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([][]corev1.NodeSelectorRequirement{{in(v1.LabelZone, "us-east-1a")}}, terms(got)); diff != "" {
			t.Fatalf("two defaults of the same age: terms (-want +got):\n%s", diff)
		}
	}
}
