package scheduling

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func TestAttachmentsResolveEachClaimsDriver(t *testing.T) {
	claim := func(name, class, volume string) *corev1.PersistentVolumeClaim {
		c := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: name},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: volume}}
		if class != "" {
			c.Spec.StorageClassName = ptr.To(class)
		}
		return c
	}
	annotated := claim("annotated-class", "", "")
	annotated.Annotations = map[string]string{corev1.BetaStorageClassAnnotation: "gp3"}
	v := NewVolumes(
		[]*corev1.PersistentVolumeClaim{
			annotated,
			claim("csi-bound", "", "pv-csi"),
			claim("intree-bound", "", "pv-ebs"),
			claim("nfs-bound", "", "pv-nfs"),
			claim("unbound", "gp3", ""),
			claim("legacy-class", "old", ""),
			claim("default-class", "", ""),
		},
		[]*corev1.PersistentVolume{
			{ObjectMeta: metav1.ObjectMeta{Name: "pv-csi"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
				CSI: &corev1.CSIPersistentVolumeSource{Driver: "pd.csi.storage.gke.io", VolumeHandle: "d"}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "pv-ebs"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
				AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-1"}}}},
			{ObjectMeta: metav1.ObjectMeta{Name: "pv-nfs"}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
				NFS: &corev1.NFSVolumeSource{Server: "nfs", Path: "/"}}}},
		},
		[]*storagev1.StorageClass{
			{ObjectMeta: metav1.ObjectMeta{Name: "gp3"}, Provisioner: "ebs.csi.aws.com"},
			{ObjectMeta: metav1.ObjectMeta{Name: "old"}, Provisioner: "kubernetes.io/azure-disk"},
			{ObjectMeta: metav1.ObjectMeta{Name: "std", Annotations: map[string]string{AnnotationDefaultStorageClass: "true"}},
				Provisioner: "disk.csi.azure.com"},
		},
	)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "trainer"}}
	for _, name := range []string{"csi-bound", "intree-bound", "nfs-bound", "unbound", "legacy-class", "default-class", "annotated-class", "missing"} {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: name}}})
	}
	pod.Spec.Volumes = append(pod.Spec.Volumes,
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
			VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("gp3")}}}}},
		corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})

	at := func(driver, claim string) Attachment {
		return Attachment{Resource: cloudprovider.AttachLimitResource(driver), Claim: types.NamespacedName{Namespace: "ml", Name: claim}}
	}
	want := []Attachment{
		at("pd.csi.storage.gke.io", "csi-bound"),
		at("ebs.csi.aws.com", "intree-bound"),
		at("ebs.csi.aws.com", "unbound"),
		at("disk.csi.azure.com", "legacy-class"),
		at("disk.csi.azure.com", "default-class"),
		at("ebs.csi.aws.com", "annotated-class"),
		at("ebs.csi.aws.com", "trainer-scratch"),
	}
	if diff := cmp.Diff(want, v.Attachments(pod)); diff != "" {
		t.Errorf("attachments (-want +got):\n%s", diff)
	}
}

func TestSetNodeLimits(t *testing.T) {
	v := NewVolumes(nil, nil, nil)
	v.SetNodeLimits([]*storagev1.CSINode{{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{
		{Name: "ebs.csi.aws.com", NodeID: "i-1", Allocatable: &storagev1.VolumeNodeResources{Count: ptr.To[int32](25)}},
		{Name: "efs.csi.aws.com", NodeID: "i-1"},
	}}}})
	want := map[string]map[corev1.ResourceName]int64{"n1": {cloudprovider.AttachLimitResource("ebs.csi.aws.com"): 25}}
	if diff := cmp.Diff(want, v.NodeLimits); diff != "" {
		t.Errorf("node limits (-want +got); a driver without a count has no limit:\n%s", diff)
	}
}

// As the kube-scheduler's NodeVolumeLimits counts them: an in-tree disk in
// the pod spec attaches through the CSI driver it migrated to, keyed by the
// disk so pods sharing it count it once on a node; a claim mounted by two
// of a pod's volumes attaches once.
func TestAttachmentsCountInlineDisksAndEachVolumeOnce(t *testing.T) {
	v := NewVolumes([]*corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{StorageClassName: ptr.To("gp3")}}}, nil,
		[]*storagev1.StorageClass{{ObjectMeta: metav1.ObjectMeta{Name: "gp3"}, Provisioner: "ebs.csi.aws.com"}})
	vol := func(name string, src corev1.VolumeSource) corev1.Volume {
		return corev1.Volume{Name: name, VolumeSource: src}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Name: "trainer"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{
		vol("data", corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}),
		vol("data-again", corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data", ReadOnly: true}}),
		vol("ebs", corev1.VolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "aws://us-east-1a/vol-1"}}),
		vol("ebs-again", corev1.VolumeSource{AWSElasticBlockStore: &corev1.AWSElasticBlockStoreVolumeSource{VolumeID: "vol-1", ReadOnly: true}}),
		vol("pd", corev1.VolumeSource{GCEPersistentDisk: &corev1.GCEPersistentDiskVolumeSource{PDName: "dataset"}}),
		vol("disk", corev1.VolumeSource{AzureDisk: &corev1.AzureDiskVolumeSource{DiskName: "d",
			DataDiskURI: "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"}}),
		vol("secrets", corev1.VolumeSource{CSI: &corev1.CSIVolumeSource{Driver: "secrets-store.csi.k8s.io"}}),
	}}}
	if !AttachesVolumes(pod) {
		t.Fatal("AttachesVolumes is false for a pod with claims and in-tree disks")
	}
	inlineOnly := &corev1.Pod{Spec: corev1.PodSpec{Volumes: pod.Spec.Volumes[2:3]}}
	if !AttachesVolumes(inlineOnly) {
		t.Error("AttachesVolumes is false for a pod whose only volume is an in-tree EBS disk")
	}
	at := func(driver, namespace, name string) Attachment {
		return Attachment{Resource: cloudprovider.AttachLimitResource(driver), Claim: types.NamespacedName{Namespace: namespace, Name: name}}
	}
	want := []Attachment{
		at("ebs.csi.aws.com", "ml", "data"),
		at("ebs.csi.aws.com", "", "vol-1"),
		at("pd.csi.storage.gke.io", "", "dataset"),
		at("disk.csi.azure.com", "", "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d"),
	}
	if diff := cmp.Diff(want, v.Attachments(pod)); diff != "" {
		t.Errorf("attachments (-want +got):\n%s", diff)
	}
}
