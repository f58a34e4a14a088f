package scheduling

import (
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

// Attachment is one claim a pod's volume attaches through a CSI driver.
type Attachment struct {
	Resource corev1.ResourceName
	Claim    types.NamespacedName
}

// Attachments lists the claims pod mounts with the driver each attaches
// through: the CSI driver of the bound PersistentVolume (or the driver an
// in-tree source migrated to), else the provisioner of the claim's
// StorageClass. Volumes whose driver is unknown (no claim yet, no class, a
// PersistentVolume that is neither CSI nor a migrated plugin) are left out:
// nothing is known to limit them.
func (v *Volumes) Attachments(pod *corev1.Pod) []Attachment {
	var out []Attachment
	for i := range pod.Spec.Volumes {
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
				className = pvc.Spec.StorageClassName
			}
			if sc, err := v.class(className); err == nil && sc != nil {
				driver = csiDriver(sc.Provisioner)
			}
		}
		if driver != "" {
			out = append(out, Attachment{Resource: cloudprovider.AttachLimitResource(driver), Claim: key})
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
