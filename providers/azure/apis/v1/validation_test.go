package v1_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

const subnet = "/subscriptions/0000/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/aks-vnet/subnets/aks-subnet"

func valid() *azv1.AKSNodeClass {
	return &azv1.AKSNodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec:       azv1.AKSNodeClassSpec{SubnetID: subnet},
	}
}

func ptr[T any](v T) *T { return &v }

// TestValidation runs the CRD's OpenAPI and CEL rules in a real API server.
func TestValidation(t *testing.T) {
	cp := controlplane.StartT(t, controlplane.Options{CRDs: true})
	s := runtime.NewScheme()
	if err := azv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*azv1.AKSNodeClass)
		wantErr string // substring; empty means accepted
	}{
		{name: "valid", mutate: func(*azv1.AKSNodeClass) {}},
		{name: "lower-case resource group segment", mutate: func(nc *azv1.AKSNodeClass) {
			nc.Spec.SubnetID = strings.Replace(subnet, "resourceGroups", "resourcegroups", 1)
		}},
		{name: "subnet is a vnet", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.SubnetID = strings.TrimSuffix(subnet, "/subnets/aks-subnet") },
			wantErr: "subnetID must be a subnet resource ID"},
		{name: "no subnet", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.SubnetID = "" }, wantErr: "subnetID"},
		{name: "azure linux pinned", mutate: func(nc *azv1.AKSNodeClass) {
			nc.Spec.Image = azv1.ImageSelector{Family: azv1.ImageFamilyAzureLinux, Version: "202511.20.0"}
		}},
		{name: "unknown family", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.Image.Family = "Windows2022" }, wantErr: "spec.image.family"},
		{name: "bad image version", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.Image.Version = "latest" }, wantErr: "spec.image.version"},
		{name: "kubernetes version with v", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.KubernetesVersion = "v1.33.2" }, wantErr: "spec.kubernetesVersion"},
		{name: "tiny os disk", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.OSDisk = azv1.OSDisk{SizeGiB: 10} }, wantErr: "spec.osDisk.sizeGiB"},
		{name: "ephemeral os disk", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.OSDisk = azv1.OSDisk{SizeGiB: 64, Type: azv1.OSDiskEphemeral} }},
		{name: "unknown disk type", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.OSDisk = azv1.OSDisk{SizeGiB: 64, Type: "UltraSSD_LRS"} }, wantErr: "spec.osDisk.type"},
		{name: "max pods too high", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.MaxPods = ptr(int32(500)) }, wantErr: "spec.maxPods"},
		{name: "image gc thresholds inverted", mutate: func(nc *azv1.AKSNodeClass) {
			nc.Spec.Kubelet = &azv1.KubeletConfiguration{ImageGCHighThresholdPercent: ptr(int32(60)), ImageGCLowThresholdPercent: ptr(int32(80))}
		}, wantErr: "imageGCLowThresholdPercent must be below imageGCHighThresholdPercent"},
		{name: "kubelet topology", mutate: func(nc *azv1.AKSNodeClass) {
			nc.Spec.Kubelet = &azv1.KubeletConfiguration{CPUManagerPolicy: "static", TopologyManagerPolicy: "single-numa-node", ContainerLogMaxSize: "50Mi"}
		}},
		{name: "reserved tag", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.Tags = map[string]string{"stowage.dev_cluster": "x"} },
			wantErr: "tag names starting with stowage.dev are reserved"},
		{name: "slash in tag name", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.Tags = map[string]string{"team/ml": "x"} },
			wantErr: "Azure tag names cannot contain"},
		{name: "backslash in tag name", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.Tags = map[string]string{`team\ml`: "x"} },
			wantErr: "Azure tag names cannot contain"},
		{name: "long tag value", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.Tags = map[string]string{"team": strings.Repeat("x", 300)} },
			wantErr: "values at most 256"},
		{name: "capacity reservation group", mutate: func(nc *azv1.AKSNodeClass) {
			nc.Spec.CapacityReservationGroup = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/capacityReservationGroups/gpu"
		}},
		{name: "crg is a ppg", mutate: func(nc *azv1.AKSNodeClass) {
			nc.Spec.CapacityReservationGroup = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Compute/proximityPlacementGroups/gpu"
		}, wantErr: "capacityReservationGroup must be a resource ID"},
		{name: "ppg name only", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.ProximityPlacementGroup = "train" },
			wantErr: "proximityPlacementGroup must be a resource ID"},
		{name: "gpu driver", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.GPU.Driver = "Manual" }, wantErr: "spec.gpu.driver"},
		{name: "ssh key", mutate: func(nc *azv1.AKSNodeClass) { nc.Spec.SSHPublicKey = "not a key" }, wantErr: "spec.sshPublicKey"},
	}
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := valid()
			nc.Name = "case-" + string(rune('a'+i))
			tt.mutate(nc)
			err := c.Create(ctx, nc)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("rejected: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("accepted; want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}

	// Defaults: Ubuntu 22.04, a 128 GiB Premium SSD, the image's GPU driver.
	got := &azv1.AKSNodeClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: "case-a"}, got); err != nil {
		t.Fatal(err)
	}
	if got.Spec.Image.Family != azv1.ImageFamilyUbuntu2204 || got.Spec.OSDisk.SizeGiB != 128 || got.Spec.OSDisk.Type != azv1.OSDiskPremiumLRS ||
		got.Spec.GPU.Driver != azv1.GPUDriverImage {
		t.Errorf("defaults = %+v", got.Spec)
	}
}
