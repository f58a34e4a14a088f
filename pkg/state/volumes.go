package state

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// ListVolumes reads the PersistentVolumeClaims, PersistentVolumes and
// StorageClasses that volume topology is computed from, and the CSINodes
// that report attach limits, through r (the manager's cache in production).
func ListVolumes(ctx context.Context, r client.Reader) (*scheduling.Volumes, error) {
	pvcs := &corev1.PersistentVolumeClaimList{}
	if err := r.List(ctx, pvcs); err != nil {
		return nil, fmt.Errorf("listing persistentvolumeclaims: %w", err)
	}
	pvs := &corev1.PersistentVolumeList{}
	if err := r.List(ctx, pvs); err != nil {
		return nil, fmt.Errorf("listing persistentvolumes: %w", err)
	}
	scs := &storagev1.StorageClassList{}
	if err := r.List(ctx, scs); err != nil {
		return nil, fmt.Errorf("listing storageclasses: %w", err)
	}
	csiNodes := &storagev1.CSINodeList{}
	if err := r.List(ctx, csiNodes); err != nil {
		return nil, fmt.Errorf("listing csinodes: %w", err)
	}
	claims := make([]*corev1.PersistentVolumeClaim, len(pvcs.Items))
	for i := range pvcs.Items {
		claims[i] = &pvcs.Items[i]
	}
	volumes := make([]*corev1.PersistentVolume, len(pvs.Items))
	for i := range pvs.Items {
		volumes[i] = &pvs.Items[i]
	}
	classes := make([]*storagev1.StorageClass, len(scs.Items))
	for i := range scs.Items {
		classes[i] = &scs.Items[i]
	}
	v := scheduling.NewVolumes(claims, volumes, classes)
	limits := make([]*storagev1.CSINode, len(csiNodes.Items))
	for i := range csiNodes.Items {
		limits[i] = &csiNodes.Items[i]
	}
	v.SetNodeLimits(limits)
	return v, nil
}
