package aws

import (
	"encoding/base64"
	"errors"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

func decode(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func testJoin() joinConfig {
	return joinConfig{
		ClusterName: "prod", Endpoint: "https://api.example", CABundle: "Q0E=", CIDR: "10.100.0.0/16",
		Labels: map[string]string{"stowage.dev/nodepool": "gpu", "team": "ml"},
		Taints: []corev1.Taint{{Key: "stowage.dev/unregistered", Effect: corev1.TaintEffectNoSchedule}, {Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}},
	}
}

// parts reads a rendered AL2023 document the way cloud-init and nodeadm do:
// as MIME, returning each part's content type and body.
func parts(t *testing.T, doc string) [][2]string {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("not a MIME document: %v\n%s", err, doc)
	}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatal(err)
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	var out [][2]string
	for {
		p, err := r.NextRawPart()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("part %d: %v\n%s", len(out), err, doc)
		}
		body, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, [2]string{p.Header.Get("Content-Type"), string(body)})
	}
}

func TestAL2023UserData(t *testing.T) {
	tests := []struct {
		name   string
		custom string
		// wantTypes are the parts' content types, in order; the last is always Stowage's.
		wantTypes []string
		wantUser  []string // substrings of the user's parts, in order
	}{
		{name: "no user data", wantTypes: []string{"application/node.eks.aws"}},
		{name: "shell script", custom: "#!/bin/bash\necho hi",
			wantTypes: []string{`text/x-shellscript; charset="us-ascii"`, "application/node.eks.aws"}, wantUser: []string{"echo hi"}},
		{name: "NodeConfig", custom: "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec: {}",
			wantTypes: []string{"application/node.eks.aws", "application/node.eks.aws"}, wantUser: []string{"kind: NodeConfig"}},
		{name: "the user's own MIME document is merged part by part",
			custom:    "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BOUNDARY\"\n\n--BOUNDARY\nContent-Type: text/x-shellscript\n\n#!/bin/sh\necho one\n--BOUNDARY\nContent-Type: application/node.eks.aws\n\nkind: NodeConfig\n--BOUNDARY--\n",
			wantTypes: []string{"text/x-shellscript", "application/node.eks.aws", "application/node.eks.aws"}, wantUser: []string{"echo one", "kind: NodeConfig"}},
		{name: "user data holding the old fixed boundary cannot end the document early",
			custom:    "#!/bin/bash\ncat <<'X'\n--//stowage//--\n--//stowage//\nContent-Type: text/plain\nX",
			wantTypes: []string{`text/x-shellscript; charset="us-ascii"`, "application/node.eks.aws"}, wantUser: []string{"--//stowage//--\n--//stowage//"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderUserData(awsv1.AMIFamilyAL2023, tt.custom, testJoin())
			if err != nil {
				t.Fatal(err)
			}
			ps := parts(t, decode(t, got))
			var types []string
			for _, p := range ps {
				types = append(types, p[0])
			}
			if diff := cmp.Diff(tt.wantTypes, types); diff != "" {
				t.Fatalf("part types (-want +got):\n%s", diff)
			}
			for i, w := range tt.wantUser {
				if !strings.Contains(ps[i][1], w) {
					t.Errorf("part %d = %q, want it to hold %q", i, ps[i][1], w)
				}
			}
			last := ps[len(ps)-1][1]
			for _, w := range []string{"kind: NodeConfig", `name: "prod"`, `apiServerEndpoint: "https://api.example"`,
				`certificateAuthority: "Q0E="`, `cidr: "10.100.0.0/16"`, `"--node-labels=stowage.dev/nodepool=gpu,team=ml"`,
				`"--register-with-taints=stowage.dev/unregistered:NoSchedule,gpu=true:NoSchedule"`} {
				if !strings.Contains(last, w) {
					t.Errorf("Stowage's NodeConfig lacks %q:\n%s", w, last)
				}
			}
		})
	}
}

func TestBoundaryIsStableAndAvoidsContent(t *testing.T) {
	a, _ := renderUserData(awsv1.AMIFamilyAL2023, "#!/bin/bash\necho a", testJoin())
	b, _ := renderUserData(awsv1.AMIFamilyAL2023, "#!/bin/bash\necho a", testJoin())
	c, _ := renderUserData(awsv1.AMIFamilyAL2023, "#!/bin/bash\necho c", testJoin())
	if a != b {
		t.Error("the same node class must render the same user data (one launch template)")
	}
	if a == c {
		t.Error("different user data rendered the same document")
	}
	// A part that contains the boundary the content would get forces another.
	p := []mimePart{{body: []byte("x")}}
	first := uniqueBoundary(p)
	p[0].body = []byte("x")
	p = append(p, mimePart{body: []byte("--" + first)})
	if got := uniqueBoundary(p); strings.Contains("--"+first, got) && got == first {
		t.Errorf("boundary %q appears in a part", got)
	}
}

func TestUserDataErrors(t *testing.T) {
	tests := []struct {
		name, family, custom, want string
	}{
		{"MIME without boundary", awsv1.AMIFamilyAL2023, "MIME-Version: 1.0\nContent-Type: text/plain\n\nhi", "multipart with a boundary"},
		{"MIME without parts", awsv1.AMIFamilyAL2023, "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B--\n", "no parts"},
		{"bottlerocket sets kubernetes", awsv1.AMIFamilyBottlerocket, "[settings.kubernetes]\nmax-pods = 1", "[settings.kubernetes]"},
		{"bottlerocket sets eviction", awsv1.AMIFamilyBottlerocket, "[settings.kubernetes.eviction-hard]\n\"memory.available\" = \"1Gi\"", "spec.kubelet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := renderUserData(tt.family, tt.custom, testJoin())
			if !errors.Is(err, ErrUserData) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrUserData mentioning %q", err, tt.want)
			}
		})
	}
}

func TestKubeletSettingsInUserData(t *testing.T) {
	jc := testJoin()
	jc.Kubelet = &awsv1.KubeletConfiguration{
		MaxPods:                     ptr.To[int32](110),
		SystemReserved:              map[string]awsv1.Quantity{"cpu": "100m"},
		KubeReserved:                map[string]awsv1.Quantity{"memory": "1Gi"},
		EvictionHard:                map[string]awsv1.Threshold{"memory.available": "5%"},
		EvictionSoft:                map[string]awsv1.Threshold{"nodefs.available": "15%"},
		EvictionSoftGracePeriod:     map[string]metav1.Duration{"nodefs.available": {Duration: 90e9}},
		ImageGCHighThresholdPercent: ptr.To[int32](80),
		ImageGCLowThresholdPercent:  ptr.To[int32](60),
	}
	al, err := renderUserData(awsv1.AMIFamilyAL2023, "", jc)
	if err != nil {
		t.Fatal(err)
	}
	br, err := renderUserData(awsv1.AMIFamilyBottlerocket, "[settings.host-containers.admin]\nenabled = true", jc)
	if err != nil {
		t.Fatal(err)
	}
	wantBR := map[string]any{"settings": map[string]any{
		"host-containers": map[string]any{"admin": map[string]any{"enabled": true}},
		"kubernetes": map[string]any{
			"cluster-name": "prod", "api-server": "https://api.example", "cluster-certificate": "Q0E=",
			"max-pods": int64(110), "image-gc-high-threshold-percent": int64(80), "image-gc-low-threshold-percent": int64(60),
			"kube-reserved": map[string]any{"memory": "1Gi"}, "system-reserved": map[string]any{"cpu": "100m"},
			"eviction-hard": map[string]any{"memory.available": "5%"}, "eviction-soft": map[string]any{"nodefs.available": "15%"},
			"eviction-soft-grace-period": map[string]any{"nodefs.available": "1m30s"},
			"node-labels":                map[string]any{"stowage.dev/nodepool": "gpu", "team": "ml"},
			"node-taints":                map[string]any{"stowage.dev/unregistered": []any{":NoSchedule"}, "gpu": []any{"true:NoSchedule"}},
		},
	}}
	if diff := cmp.Diff(wantBR, bottlerocketSettings(t, decode(t, br))); diff != "" {
		t.Errorf("bottlerocket settings (-want +got):\n%s", diff)
	}
	if again, _ := renderUserData(awsv1.AMIFamilyBottlerocket, "[settings.host-containers.admin]\nenabled = true", jc); again != br {
		t.Error("the same node class must render the same Bottlerocket user data (one launch template)")
	}
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"al2023", decode(t, al), []string{"    config:\n", "      maxPods: 110", "      systemReserved:\n        \"cpu\": \"100m\"",
			"      kubeReserved:\n        \"memory\": \"1Gi\"", "      evictionHard:\n        \"memory.available\": \"5%\"",
			"      evictionSoft:\n        \"nodefs.available\": \"15%\"", "      evictionSoftGracePeriod:\n        \"nodefs.available\": \"1m30s\"",
			"      imageGCHighThresholdPercent: 80", "      imageGCLowThresholdPercent: 60"}},
	}
	for _, tt := range tests {
		for _, w := range tt.want {
			if !strings.Contains(tt.doc, w) {
				t.Errorf("%s user data lacks %q:\n%s", tt.name, w, tt.doc)
			}
		}
	}
	custom, err := renderUserData(awsv1.AMIFamilyCustom, "#!/bin/bash\n/etc/my-join.sh", jc)
	if err != nil || decode(t, custom) != "#!/bin/bash\n/etc/my-join.sh" {
		t.Errorf("Custom user data = %q, %v; want it passed through unchanged", decode(t, custom), err)
	}
}

func TestFamily(t *testing.T) {
	tests := []struct {
		name string
		nc   awsv1.EC2NodeClass
		want string
	}{
		{"alias bottlerocket-nvidia", awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "bottlerocket-nvidia@latest"}}}}, awsv1.AMIFamilyBottlerocket},
		{"alias al2023", awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{Alias: "al2023"}}}}, awsv1.AMIFamilyAL2023},
		{"amiFamily Custom", awsv1.EC2NodeClass{Spec: awsv1.EC2NodeClassSpec{AMIFamily: "Custom", AMISelectorTerms: []awsv1.AMISelectorTerm{{ID: "ami-1"}}}}, awsv1.AMIFamilyCustom},
		{"ids resolving to bottlerocket", awsv1.EC2NodeClass{
			Spec:   awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{ID: "ami-1"}}},
			Status: awsv1.EC2NodeClassStatus{AMIs: []awsv1.AMI{{ID: "ami-1", Name: "bottlerocket-aws-k8s-1.34-x86_64-v1.40.0"}}}}, awsv1.AMIFamilyBottlerocket},
		{"ids resolving to anything else", awsv1.EC2NodeClass{
			Spec:   awsv1.EC2NodeClassSpec{AMISelectorTerms: []awsv1.AMISelectorTerm{{ID: "ami-1"}}},
			Status: awsv1.EC2NodeClassStatus{AMIs: []awsv1.AMI{{ID: "ami-1", Name: "custom"}}}}, awsv1.AMIFamilyAL2023},
	}
	for _, tt := range tests {
		if got := tt.nc.Family(); got != tt.want {
			t.Errorf("%s: Family() = %s, want %s", tt.name, got, tt.want)
		}
	}
}

// bottlerocketSettings decodes a rendered Bottlerocket document the way its
// TOML reader must: as one valid document. The decoder accepts a table
// defined by dotted keys and again by a header, which TOML (and Bottlerocket)
// refuse, so dotted keys are refused here.
func bottlerocketSettings(t *testing.T, doc string) map[string]any {
	t.Helper()
	var out map[string]any
	if _, err := toml.Decode(doc, &out); err != nil {
		t.Fatalf("not valid TOML: %v\n%s", err, doc)
	}
	for _, line := range strings.Split(doc, "\n") {
		key, _, ok := strings.Cut(line, "=")
		if key = strings.TrimSpace(key); !ok || strings.HasPrefix(key, "[") || strings.HasPrefix(key, "#") {
			continue
		}
		if quoted := strings.HasPrefix(key, `"`) && strings.Count(key, `"`) == 2 && strings.HasSuffix(key, `"`); !quoted && strings.Contains(key, ".") {
			t.Fatalf("dotted key %q: a table defined by dotted keys cannot also have a header\n%s", key, doc)
		}
	}
	return out
}

// A user's TOML that reaches settings.kubernetes through dotted or quoted
// keys or an inline table must neither produce a document TOML refuses
// (a [settings.kubernetes] header for a table already defined, which
// Bottlerocket rejects whole, so the node never joins) nor slip past the
// refusal of what Stowage writes.
func TestBottlerocketUserDataKeys(t *testing.T) {
	tests := []struct {
		name, custom string
		wantErr      string
		// wantKube are keys of settings.kubernetes the user set, beside Stowage's.
		wantKube map[string]any
	}{
		{name: "dotted node label", custom: `settings.kubernetes.node-labels."example.com/team" = "ml"`,
			wantErr: "settings.kubernetes.node-labels"},
		{name: "dotted node label under [settings]", custom: "[settings]\nkubernetes.node-labels.\"example.com/team\" = \"ml\"",
			wantErr: "settings.kubernetes.node-labels"},
		{name: "quoted table name", custom: "[settings.\"kubernetes\".\"node-labels\"]\n\"example.com/team\" = \"ml\"",
			wantErr: "settings.kubernetes.node-labels"},
		{name: "inline table", custom: "settings = {kubernetes = {max-pods = 10}}", wantErr: "settings.kubernetes.max-pods"},
		{name: "not TOML", custom: "[settings.kubernetes", wantErr: "not valid TOML"},
		{name: "dotted setting of its own", custom: `settings.kubernetes.cluster-dns-ip = "10.100.0.10"`,
			wantKube: map[string]any{"cluster-dns-ip": "10.100.0.10"}},
		{name: "sub-table of its own", custom: "[settings.kubernetes.credential-providers.ecr-credential-provider]\nenabled = true\nimage-patterns = [\"*.dkr.ecr.*.amazonaws.com\"]",
			wantKube: map[string]any{"credential-providers": map[string]any{"ecr-credential-provider": map[string]any{
				"enabled": true, "image-patterns": []any{"*.dkr.ecr.*.amazonaws.com"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := renderUserData(awsv1.AMIFamilyBottlerocket, tt.custom, testJoin())
			if tt.wantErr != "" {
				if !errors.Is(err, ErrUserData) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrUserData mentioning %q; document:\n%s", err, tt.wantErr, decode(t, got))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			settings, _ := bottlerocketSettings(t, decode(t, got))["settings"].(map[string]any)
			kube, _ := settings["kubernetes"].(map[string]any)
			want := map[string]any{
				"cluster-name": "prod", "api-server": "https://api.example", "cluster-certificate": "Q0E=",
				"node-labels": map[string]any{"stowage.dev/nodepool": "gpu", "team": "ml"},
				"node-taints": map[string]any{"stowage.dev/unregistered": []any{":NoSchedule"}, "gpu": []any{"true:NoSchedule"}},
			}
			maps.Copy(want, tt.wantKube)
			if diff := cmp.Diff(want, kube); diff != "" {
				t.Errorf("settings.kubernetes (-want +got):\n%s", diff)
			}
		})
	}
}
