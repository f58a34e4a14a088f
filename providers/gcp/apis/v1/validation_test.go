package v1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

func valid() *gcpv1.GCENodeClass {
	return &gcpv1.GCENodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec:       gcpv1.GCENodeClassSpec{ServiceAccount: "stowage-nodes@my-project.iam.gserviceaccount.com"},
	}
}

// TestValidation runs the CRD's OpenAPI and CEL rules in a real API server.
func TestValidation(t *testing.T) {
	cp := controlplane.StartT(t, controlplane.Options{CRDs: true})
	s := runtime.NewScheme()
	if err := gcpv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*gcpv1.GCENodeClass)
		wantErr string // substring; empty means accepted
	}{
		{name: "valid", mutate: func(*gcpv1.GCENodeClass) {}},
		{name: "everything set", mutate: func(nc *gcpv1.GCENodeClass) {
			nc.Spec.Image = gcpv1.Image{Type: gcpv1.ImageUbuntu, Name: "gke-1306-gke1029000-ubuntu-2204", Project: "ubuntu-os-gke-cloud"}
			nc.Spec.Subnetwork = "projects/host-project/regions/us-central1/subnetworks/gke-nodes"
			nc.Spec.NetworkTags = []string{"gpu-nodes"}
			nc.Spec.Labels = map[string]string{"team": "ml", "cost_center": "42"}
			nc.Spec.Metadata = map[string]string{"enable-oslogin": "TRUE"}
			nc.Spec.BootDisk = gcpv1.BootDisk{Type: "pd-ssd", SizeGiB: 500}
			nc.Spec.Kubelet = &gcpv1.Kubelet{MaxPods: ptr.To[int32](64), KubeReserved: map[string]string{"cpu": "200m"}}
			nc.Spec.GPUDriver = gcpv1.GPUDriverNone
			nc.Spec.Reservations = gcpv1.Reservations{Consume: gcpv1.ReservationsSpecific, Names: []string{"h100-block"}}
			nc.Spec.Placement = gcpv1.PlacementPolicy{Type: "None"}
		}},
		{name: "service account missing", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.ServiceAccount = "" }, wantErr: "spec.serviceAccount"},
		{name: "service account not an email", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.ServiceAccount = "stowage-nodes" },
			wantErr: "spec.serviceAccount"},
		{name: "project without a pinned image", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Image.Project = "my-images" },
			wantErr: "project only applies with name"},
		{name: "unknown image type", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Image.Type = "COS" }, wantErr: "spec.image.type"},
		{name: "subnetwork URL", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Subnetwork = "https://www.googleapis.com/x" },
			wantErr: "spec.subnetwork"},
		{name: "reserved label", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Labels = map[string]string{"goog-gke-node": ""} },
			wantErr: "label keys starting with stowage- or goog- are reserved"},
		{name: "upper case label", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Labels = map[string]string{"Team": "ml"} },
			wantErr: "label keys must be lower case"},
		{name: "upper case label value", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Labels = map[string]string{"team": "ML Platform"} },
			wantErr: "label values must be at most 63 lower case"},
		{name: "bootstrap metadata", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Metadata = map[string]string{"kube-env": "x"} },
			wantErr: "are set by Stowage"},
		{name: "tiny disk", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.BootDisk.SizeGiB = 5 }, wantErr: "spec.bootDisk.sizeGiB"},
		{name: "reserved gpu memory", mutate: func(nc *gcpv1.GCENodeClass) {
			nc.Spec.Kubelet = &gcpv1.Kubelet{KubeReserved: map[string]string{"nvidia.com/gpu": "1"}}
		}, wantErr: "take only cpu, memory and ephemeral-storage"},
		{name: "specific without names", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Reservations.Consume = gcpv1.ReservationsSpecific },
			wantErr: "names are required when consume is Specific"},
		{name: "names without specific", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Reservations.Names = []string{"r"} },
			wantErr: "names are required when consume is Specific"},
		{name: "unknown placement", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.Placement.Type = "Spread" }, wantErr: "spec.placement.type"},
		{name: "gpu driver", mutate: func(nc *gcpv1.GCENodeClass) { nc.Spec.GPUDriver = "Installed" }, wantErr: "spec.gpuDriver"},
	}
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := valid()
			nc.Name = fmt.Sprintf("case-%d", i)
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

	got := &gcpv1.GCENodeClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: "case-0"}, got); err != nil {
		t.Fatal(err)
	}
	s0 := got.Spec
	if s0.Image.Type != gcpv1.ImageCOS || s0.BootDisk.Type != "pd-balanced" || s0.BootDisk.SizeGiB != 100 || s0.GPUDriver != gcpv1.GPUDriverDefault ||
		s0.Reservations.Consume != gcpv1.ReservationsAny || s0.Placement.Type != gcpv1.PlacementCompact || s0.PrivateNodes == nil || !*s0.PrivateNodes ||
		s0.ShieldedInstance == nil || !*s0.ShieldedInstance.VTPM {
		t.Errorf("defaults = %+v", s0)
	}
}
