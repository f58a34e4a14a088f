package fake

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// Facts the fake GPUs report that the catalog does not know.
const (
	fakeDriverVersion     = "580.95.5"
	fakeCUDADriverVersion = "13.0.0"
)

// publishSlice plays the NVIDIA DRA driver on the instance's Node: one
// ResourceSlice holding the devices the machine's GPUs would publish (see
// scheduling.Devices), owned by the Node so it goes with it. A cluster that
// does not serve the DRA API gets none; the Node still advertises its GPUs
// as extended resources, like a device plugin.
func (c *Cloud) publishSlice(ctx context.Context, inst *instance, owner *corev1.Node) error {
	it, ok := c.types[inst.InstanceType]
	if !ok {
		return nil
	}
	driver, devices := scheduling.Devices(it, inst.GPUSharing)
	if len(devices) == 0 {
		return nil
	}
	for i := range devices {
		// What only a real machine knows: a stable UUID per device and the
		// driver versions of the node image.
		sum := sha256.Sum256([]byte(inst.ID + "/" + devices[i].Name))
		uuid := "GPU-" + hex.EncodeToString(sum[:16])
		devices[i].Attributes["uuid"] = resourceapi.DeviceAttribute{StringValue: &uuid}
		devices[i].Attributes["driverVersion"] = resourceapi.DeviceAttribute{VersionValue: ptr.To(fakeDriverVersion)}
		devices[i].Attributes["cudaDriverVersion"] = resourceapi.DeviceAttribute{VersionValue: ptr.To(fakeCUDADriverVersion)}
	}
	slice := &resourceapi.ResourceSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:   sliceName(inst.ID),
			Labels: map[string]string{LabelCluster: c.cluster},
		},
		Spec: resourceapi.ResourceSliceSpec{
			Driver:   driver,
			NodeName: ptr.To(inst.ID),
			Pool:     resourceapi.ResourcePool{Name: inst.ID, Generation: 1, ResourceSliceCount: 1},
			Devices:  devices,
		},
	}
	if owner != nil && owner.UID != "" {
		slice.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: owner.Name, UID: owner.UID}}
	}
	err := c.client.Create(ctx, slice)
	switch {
	case err == nil, apierrors.IsAlreadyExists(err):
		return nil
	case meta.IsNoMatchError(err) || apierrors.IsNotFound(err):
		log.FromContext(ctx).V(1).Info("the cluster serves no DRA API; publishing no ResourceSlice", "node", inst.ID)
		return nil
	}
	return fmt.Errorf("fake DRA driver: publishing the devices of %s: %w", inst.ID, err)
}

// deleteSlice removes the instance's ResourceSlice, for clusters without a
// garbage collector to follow the owner reference.
func (c *Cloud) deleteSlice(ctx context.Context, id string) error {
	s := &resourceapi.ResourceSlice{ObjectMeta: metav1.ObjectMeta{Name: sliceName(id)}}
	err := c.client.Delete(ctx, s)
	if err == nil || apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return nil
	}
	return fmt.Errorf("fake DRA driver: deleting the devices of %s: %w", id, err)
}

func sliceName(id string) string { return id + "-gpu.nvidia.com" }
