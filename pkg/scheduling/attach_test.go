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
	v := NewVolumes(
		[]*corev1.PersistentVolumeClaim{
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
	for _, name := range []string{"csi-bound", "intree-bound", "nfs-bound", "unbound", "legacy-class", "default-class", "missing"} {
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
