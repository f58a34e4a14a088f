package scheduling

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// migratedDrivers maps in-tree volume plugins (PersistentVolume sources and
// StorageClass provisioners) to the CSI drivers that serve them now, and
// count against the same limit.
var migratedDrivers = map[string]string{
	"kubernetes.io/aws-ebs":    "ebs.csi.aws.com",
	"kubernetes.io/gce-pd":     "pd.csi.storage.gke.io",
	"kubernetes.io/azure-disk": "disk.csi.azure.com",
}

func csiDriver(name string) string {
	if d, ok := migratedDrivers[name]; ok {
		return d
	}
	return name
}

// Attachment is one volume a pod attaches through a CSI driver.
type Attachment struct {
	Resource corev1.ResourceName
	// Claim names the claim; an in-tree disk in the pod spec has none, and
	// is named by its disk ID with an empty namespace.
	Claim types.NamespacedName
}

// AttachesVolumes reports whether a pod mounts volumes that may count
// against attach limits: claims, or in-tree disks in its spec.
func AttachesVolumes(pod *corev1.Pod) bool {
	for i := range pod.Spec.Volumes {
		if d, _ := inlineDisk(&pod.Spec.Volumes[i]); d != "" {
			return true
		}
	}
	return UsesClaims(pod)
}

// inlineDisk returns the CSI driver that serves an in-tree disk in a pod
// spec (CSI migration translates it, and the kube-scheduler counts it
// against that driver's limit) and the disk's ID, or "" for other volumes.
func inlineDisk(vol *corev1.Volume) (driver, id string) {
	switch {
	case vol.AWSElasticBlockStore != nil:
		// aws://<zone>/vol-... names the same volume as vol-...
		id := vol.AWSElasticBlockStore.VolumeID
		return migratedDrivers["kubernetes.io/aws-ebs"], id[strings.LastIndex(id, "/")+1:]
	case vol.GCEPersistentDisk != nil:
		return migratedDrivers["kubernetes.io/gce-pd"], vol.GCEPersistentDisk.PDName
	case vol.AzureDisk != nil:
		return migratedDrivers["kubernetes.io/azure-disk"], vol.AzureDisk.DataDiskURI
	}
	return "", ""
}

// Attachments lists the volumes pod attaches, each once, with the driver
// each attaches through: the CSI driver of the bound PersistentVolume (or
// the driver an in-tree source migrated to), else the provisioner of the
// claim's StorageClass; for an in-tree disk in the pod spec, the driver it
// migrated to. Volumes whose driver is unknown (no claim yet, no class, a
// PersistentVolume that is neither CSI nor a migrated plugin) are left out:
// nothing is known to limit them.
func (v *Volumes) Attachments(pod *corev1.Pod) []Attachment {
	var out []Attachment
	add := func(driver string, key types.NamespacedName) {
		a := Attachment{Resource: cloudprovider.AttachLimitResource(driver), Claim: key}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for i := range pod.Spec.Volumes {
		if driver, id := inlineDisk(&pod.Spec.Volumes[i]); driver != "" {
			add(driver, types.NamespacedName{Name: id})
			continue
		}
		ref, ok := claimRef(pod, &pod.Spec.Volumes[i])
		if !ok {
			continue
		}
		key := types.NamespacedName{Namespace: pod.Namespace, Name: ref.name}
		className := ref.className
		driver := ""
		pvc := v.Claims[key]
		switch {
		case pvc == nil && !ref.ephemeral:
			// Not created yet: nothing says which driver will serve it.
		case pvc != nil && pvc.Spec.VolumeName != "":
			driver = pvDriver(v.Volumes[pvc.Spec.VolumeName])
		default:
			if pvc != nil {
				className = claimClass(pvc.Annotations, pvc.Spec.StorageClassName)
			}
			if sc, err := v.class(className); err == nil && sc != nil {
				driver = csiDriver(sc.Provisioner)
			}
		}
		if driver != "" {
			add(driver, key)
		}
	}
	return out
}

func pvDriver(pv *corev1.PersistentVolume) string {
	switch {
	case pv == nil:
		return ""
	case pv.Spec.CSI != nil:
		return pv.Spec.CSI.Driver
	case pv.Spec.AWSElasticBlockStore != nil:
		return migratedDrivers["kubernetes.io/aws-ebs"]
	case pv.Spec.GCEPersistentDisk != nil:
		return migratedDrivers["kubernetes.io/gce-pd"]
	case pv.Spec.AzureDisk != nil:
		return migratedDrivers["kubernetes.io/azure-disk"]
	}
	return ""
}

// SetNodeLimits records the attach limits CSI drivers report for the nodes
// they run on (CSINode spec.drivers[].allocatable.count), which override
// what the instance type's catalog says.
func (v *Volumes) SetNodeLimits(csiNodes []*storagev1.CSINode) {
	v.NodeLimits = make(map[string]map[corev1.ResourceName]int64, len(csiNodes))
	for _, cn := range csiNodes {
		for _, d := range cn.Spec.Drivers {
			if d.Allocatable == nil || d.Allocatable.Count == nil {
				continue
			}
			if v.NodeLimits[cn.Name] == nil {
				v.NodeLimits[cn.Name] = map[corev1.ResourceName]int64{}
			}
			v.NodeLimits[cn.Name][cloudprovider.AttachLimitResource(d.Name)] = int64(*d.Allocatable.Count)
		}
	}
}
