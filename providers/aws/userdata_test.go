package aws

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

func discardLogger() logr.Logger { return logr.Discard() }

func decode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUserData(t *testing.T) {
	jc := joinConfig{
		ClusterName: "prod", Endpoint: "https://api.example", CABundle: "Q0E=", CIDR: "10.100.0.0/16",
		Labels: map[string]string{"stowage.dev/nodepool": "gpu", "team": "ml"},
		Taints: []corev1.Taint{{Key: "stowage.dev/unregistered", Effect: corev1.TaintEffectNoExecute}, {Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}},
	}
	tests := []struct {
		name    string
		family  imageFamily
		custom  string
		want    []string
		wantErr bool
	}{
		{name: "al2023", family: familyAL2023, custom: "#!/bin/bash\necho hi", want: []string{
			"Content-Type: text/x-shellscript", "echo hi", "kind: NodeConfig", `name: "prod"`, `apiServerEndpoint: "https://api.example"`,
			`cidr: "10.100.0.0/16"`, `"--node-labels=stowage.dev/nodepool=gpu,team=ml"`,
			`"--register-with-taints=stowage.dev/unregistered:NoExecute,gpu=true:NoSchedule"`, "--//stowage//--",
		}},
		{name: "al2023 rejects MIME", family: familyAL2023, custom: "MIME-Version: 1.0\n", wantErr: true},
		{name: "bottlerocket", family: familyBottlerocket, custom: "[settings.host-containers.admin]\nenabled = true", want: []string{
			"[settings.host-containers.admin]", `cluster-name = "prod"`, `"team" = "ml"`, `"gpu" = ["true:NoSchedule"]`,
			`"stowage.dev/unregistered" = [":NoExecute"]`,
		}},
		{name: "bottlerocket rejects kubernetes settings", family: familyBottlerocket, custom: "[settings.kubernetes]\nmax-pods = 1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderUserData(tt.family, tt.custom, jc)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrUserData) {
					t.Errorf("error %v does not wrap ErrUserData", err)
				}
				return
			}
			text := decode(t, got)
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("user data lacks %q:\n%s", w, text)
				}
			}
			if tt.custom != "" && strings.Index(text, strings.SplitN(tt.custom, "\n", 2)[0]) > strings.Index(text, "prod") {
				t.Error("the node class's part must come before the bootstrap")
			}
		})
	}
}

func TestFamilyOf(t *testing.T) {
	tests := []struct {
		name string
		nc   awsv1.EC2NodeClass
		want imageFamily
	}{
		{"alias bottlerocket-nvidia", awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "bottlerocket-nvidia@latest"}}}}, familyBottlerocket},
		{"alias al2023", awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023"}}}}, familyAL2023},
		{"ids resolving to bottlerocket", awsv1.EC2NodeClass{
			Spec:   awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{ID: "ami-1"}}},
			Status: awsv1.EC2NodeClassStatus{AMIs: []awsv1.AMI{{ID: "ami-1", Name: "bottlerocket-aws-k8s-1.34-x86_64-v1.40.0"}}}}, familyBottlerocket},
		{"ids resolving to anything else", awsv1.EC2NodeClass{
			Spec:   awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{ID: "ami-1"}}},
			Status: awsv1.EC2NodeClassStatus{AMIs: []awsv1.AMI{{ID: "ami-1", Name: "custom"}}}}, familyAL2023},
	}
	for _, tt := range tests {
		if got := familyOf(&tt.nc); got != tt.want {
			t.Errorf("%s: familyOf = %s, want %s", tt.name, got, tt.want)
		}
	}
}
