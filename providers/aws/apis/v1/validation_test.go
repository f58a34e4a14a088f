package v1_test

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
			wantErr: "set exactly one of alias, id, or tags"},
		{name: "ami tags refined by owner", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms[0] = awsv1.AMISelectorTerm{Tags: map[string]string{"team": "ml"}, Owner: "self"}
		}},
		{name: "owner on an id term", mutate: func(nc *awsv1.EC2NodeClass) {
			nc.Spec.AMISelectorTerms[0] = awsv1.AMISelectorTerm{ID: "ami-0123", Owner: "self"}
		}, wantErr: "owner and name only refine a tags term"},
		{name: "subnet term with id and tags", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.SubnetSelectorTerms[0].ID = "subnet-0123" },
			wantErr: "set exactly one of id or tags"},
		{name: "empty subnet term", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.SubnetSelectorTerms[0] = awsv1.SelectorTerm{} },
			wantErr: "set exactly one of id or tags"},
		{name: "no subnets", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.SubnetSelectorTerms = nil }, wantErr: "subnetSelectorTerms"},
		{name: "reserved tag", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{"stowage.dev/nodepool": "x"} },
			wantErr: "tags in the stowage.dev domain are reserved"},
		{name: "aws tag", mutate: func(nc *awsv1.EC2NodeClass) { nc.Spec.Tags = map[string]string{"aws:cloudformation": "x"} },
			wantErr: "tag keys must not start with aws:"},
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

	// Defaults: IMDSv2 with one hop.
	got := &awsv1.EC2NodeClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: "case-a"}, got); err != nil {
		t.Fatal(err)
	}
	m := got.Spec.MetadataOptions
	if m == nil || m.HTTPTokens != "required" || m.HTTPEndpoint != "enabled" || m.HTTPPutResponseHopLimit == nil || *m.HTTPPutResponseHopLimit != 1 {
		t.Errorf("metadataOptions defaults = %+v, want IMDSv2 required, hop limit 1", m)
	}
}
