package v1_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

func valid() *awsv1.EC2NodeClass {
	return &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SelectorTerm{{Tags: map[string]string{"stowage.dev/discovery": "prod"}}},
			SecurityGroupSelectorTerms: []awsv1.SelectorTerm{{ID: "sg-0123abcd"}},
			Role:                       "StowageNodeRole",
		},
	}
}

// TestValidation runs the CRD's OpenAPI and CEL rules in a real API server.
func TestValidation(t *testing.T) {
	cp := controlplane.StartT(t, controlplane.Options{CRDs: true})
	s := runtime.NewScheme()
	if err := awsv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(*awsv1.EC2NodeClass)
		wantErr string // substring; empty means accepted
	}{
		{name: "valid", mutate: func(*awsv1.EC2NodeClass) {}},
		{name: "instance profile instead of role", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Role, nc.Spec.InstanceProfile = "", "profile" }},
		{name: "role and instance profile", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.InstanceProfile = "profile" },
			wantErr: "exactly one of role or instanceProfile"},
		{name: "neither role nor instance profile", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Role = "" },
			wantErr: "exactly one of role or instanceProfile"},
		{name: "alias with another term", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms = append(nc.Spec.AMISelectorTerms, awsv1.AMISelectorTerm{ID: "ami-0123"})
		}, wantErr: "an alias term cannot be combined"},
		{name: "unknown alias", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.AMISelectorTerms[0].Alias = "ubuntu@latest" },
			wantErr: "amiSelectorTerms[0].alias"},
		{name: "pinned alias", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.AMISelectorTerms[0].Alias = "bottlerocket-nvidia@v1.50.0" }},
		{name: "ami term with alias and id", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.AMISelectorTerms[0].ID = "ami-0123" },
			wantErr: "set exactly one of alias, id, or tags/name"},
		{name: "ami tags refined by owner", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms[0] = awsv1.AMISelectorTerm{Tags: map[string]string{"team": "ml"}, Owner: "self"}
		}},
		{name: "ami by name alone", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms[0] = awsv1.AMISelectorTerm{Name: "my-gpu-image-*", Owner: "self"}
		}},
		{name: "owner on an id term", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms[0] = awsv1.AMISelectorTerm{ID: "ami-0123", Owner: "self"}
		}, wantErr: "owner only refines a tags or name term"},
		{name: "name on an alias term", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.AMISelectorTerms[0].Name = "x" },
			wantErr: "set exactly one of alias, id, or tags/name"},
		{name: "amiFamily beside an alias", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.AMIFamily = "Bottlerocket" },
			wantErr: "amiFamily is set only with id, name or tags terms"},
		{name: "custom family without user data", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMIFamily, nc.Spec.AMISelectorTerms = "Custom", []awsv1.AMISelectorTerm{{ID: "ami-0123"}}
		}, wantErr: "amiFamily Custom needs userData"},
		{name: "custom family", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMIFamily, nc.Spec.AMISelectorTerms, nc.Spec.UserData = "Custom", []awsv1.AMISelectorTerm{{ID: "ami-0123"}}, ptr.To("#!/bin/bash")
		}},
		{name: "unknown family", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMIFamily, nc.Spec.AMISelectorTerms = "Ubuntu", []awsv1.AMISelectorTerm{{ID: "ami-0123"}}
		}, wantErr: "spec.amiFamily"},
		{name: "kubelet settings", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.Kubelet = &awsv1.KubeletConfiguration{MaxPods: ptr.To[int32](110), SystemReserved: map[string]awsv1.Quantity{"cpu": "100m", "memory": "1.5Gi"},
				EvictionHard: map[string]awsv1.Threshold{"memory.available": "5%", "nodefs.available": "10Gi"},
				EvictionSoft: map[string]awsv1.Threshold{"memory.available": "10%"}, EvictionSoftGracePeriod: map[string]metav1.Duration{"memory.available": {Duration: time.Minute}},
				ImageGCHighThresholdPercent: ptr.To[int32](85), ImageGCLowThresholdPercent: ptr.To[int32](80)}
		}},
		{name: "kubelet reserved key", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.Kubelet = &awsv1.KubeletConfiguration{KubeReserved: map[string]awsv1.Quantity{"gpu": "1"}}
		}, wantErr: "keys must be cpu, memory, ephemeral-storage or pid"},
		{name: "kubelet reserved value", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.Kubelet = &awsv1.KubeletConfiguration{SystemReserved: map[string]awsv1.Quantity{"memory": "lots"}}
		}, wantErr: "spec.kubelet.systemReserved.memory in body should match"},
		{name: "eviction signal", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.Kubelet = &awsv1.KubeletConfiguration{EvictionHard: map[string]awsv1.Threshold{"memory.free": "1Gi"}}
		}, wantErr: "keys must be memory.available"},
		{name: "soft eviction without grace", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.Kubelet = &awsv1.KubeletConfiguration{EvictionSoft: map[string]awsv1.Threshold{"memory.available": "1Gi"}}
		}, wantErr: "every evictionSoft signal needs an evictionSoftGracePeriod"},
		{name: "image GC thresholds reversed", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.Kubelet = &awsv1.KubeletConfiguration{ImageGCHighThresholdPercent: ptr.To[int32](50), ImageGCLowThresholdPercent: ptr.To[int32](60)}
		}, wantErr: "imageGCLowThresholdPercent must be lower"},
		{name: "max pods zero", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Kubelet = &awsv1.KubeletConfiguration{MaxPods: ptr.To[int32](0)} },
			wantErr: "spec.kubelet.maxPods"},
		{name: "reservations", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: "cr-0123abcd"}, {Tags: map[string]string{"team": "ml"}, OwnerID: "111122223333"}}
		}},
		{name: "reservation term with id and tags", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: "cr-0123abcd", Tags: map[string]string{"a": "b"}}}
		}, wantErr: "set exactly one of id or tags"},
		{name: "reservation owner on an id term", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.CapacityReservationSelectorTerms = []awsv1.CapacityReservationSelectorTerm{{ID: "cr-0123abcd", OwnerID: "111122223333"}}
		}, wantErr: "ownerID only refines a tags term"},
		{name: "efa mode", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.EFA = "Always" }, wantErr: "spec.efa"},
		{name: "subnet term with id and tags", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.SubnetSelectorTerms[0].ID = "subnet-0123" },
			wantErr: "set exactly one of id or tags"},
		{name: "empty subnet term", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.SubnetSelectorTerms[0] = awsv1.SelectorTerm{} },
			wantErr: "set exactly one of id or tags"},
		{name: "no subnets", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.SubnetSelectorTerms = nil }, wantErr: "subnetSelectorTerms"},
		{name: "reserved tag", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{"stowage.dev/nodepool": "x"} },
			wantErr: "tags in the stowage.dev domain are reserved"},
		{name: "aws tag", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{"aws:cloudformation": "x"} },
			wantErr: "tag keys must not start with aws:"},
		{name: "upper-case aws tag", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{"AWS:team": "x"} },
			wantErr: "tag keys must not start with aws:"},
		{name: "tag at EC2's lengths", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.Tags = map[string]string{strings.Repeat("k", 128): strings.Repeat("v", 256), "empty-value": ""}
		}},
		{name: "tag key too long", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{strings.Repeat("k", 129): "x"} },
			wantErr: "tag keys must be 1 to 128 characters"},
		{name: "empty tag key", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{"": "x"} },
			wantErr: "tag keys must be 1 to 128 characters"},
		{name: "tag value too long", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{"team": strings.Repeat("v", 257)} },
			wantErr: "tag values must be at most 256 characters"},
		{name: "tags within the budget", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = numberedTags(40) }},
		{name: "too many tags", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = numberedTags(41) },
			wantErr: "spec.tags: Too many: 41: must have at most 40 items"},
		{name: "volume size unit", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.BlockDeviceMappings = []awsv1.BlockDeviceMapping{{DeviceName: "/dev/xvda", EBS: awsv1.BlockDevice{VolumeSize: "100G"}}}
		}, wantErr: "volumeSize"},
		{name: "hop limit too high", mutate: func(nc *awsv1.EC2NodeClass) {
			hops := int32(100)
			nc.Spec.MetadataOptions = &awsv1.MetadataOptions{HTTPPutResponseHopLimit: &hops}
		}, wantErr: "httpPutResponseHopLimit"},
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

	// Defaults: IMDSv2 with one hop.
	got := &awsv1.EC2NodeClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: "case-0"}, got); err != nil {
		t.Fatal(err)
	}
	m := got.Spec.MetadataOptions
	if m == nil || m.HTTPTokens != "required" || m.HTTPEndpoint != "enabled" || m.HTTPPutResponseHopLimit == nil || *m.HTTPPutResponseHopLimit != 1 {
		t.Errorf("metadataOptions defaults = %+v, want IMDSv2 required, hop limit 1", m)
	}
	if got.Spec.EFA != awsv1.EFAAuto {
		t.Errorf("efa default = %q, want Auto", got.Spec.EFA)
	}
}

func numberedTags(n int) map[string]string {
	tags := make(map[string]string, n)
	for i := range n {
		tags[fmt.Sprintf("tag-%d", i)] = "x"
	}
	return tags
}
