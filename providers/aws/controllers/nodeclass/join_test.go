package nodeclass

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func TestJoinSettingsValidate(t *testing.T) {
	ca := testCA(t)
	tests := []struct {
		name string
		join JoinSettings
		want []string // substrings of the error; none means valid
	}{
		{"valid", JoinSettings{Endpoint: "https://x.eks.amazonaws.com", CABundle: ca, CIDR: "10.100.0.0/16"}, nil},
		{"all missing", JoinSettings{}, []string{"--aws-cluster-endpoint: missing", "--aws-cluster-ca-bundle: missing", "--aws-cluster-cidr: missing"}},
		{"http endpoint", JoinSettings{Endpoint: "http://x", CABundle: ca, CIDR: "10.100.0.0/16"}, []string{`"http://x" is not an https:// URL`}},
		{"CA not base64", JoinSettings{Endpoint: "https://x", CABundle: "%%%", CIDR: "10.100.0.0/16"}, []string{"--aws-cluster-ca-bundle: not base64"}},
		{"CA without a certificate", JoinSettings{Endpoint: "https://x", CABundle: base64.StdEncoding.EncodeToString([]byte("-----BEGIN NOPE-----\n-----END NOPE-----\n")), CIDR: "10.100.0.0/16"},
			[]string{"no PEM certificate"}},
		{"bad CIDR", JoinSettings{Endpoint: "https://x", CABundle: ca, CIDR: "10.100.0.0"}, []string{`--aws-cluster-cidr: "10.100.0.0" is not a CIDR`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.join.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("err = %v, want valid", err)
				}
				return
			}
			if !errors.Is(err, ErrJoinSettings) {
				t.Fatalf("err = %v, want ErrJoinSettings", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestMinorVersion(t *testing.T) {
	tests := []struct{ major, minor, want string }{
		{"1", "33", "1.33"},
		{"1", "31+", "1.31"}, // EKS
		{"1", "", ""},
	}
	for _, tt := range tests {
		got, err := MinorVersion(tt.major, tt.minor)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("MinorVersion(%q, %q) = %q, %v; want %q", tt.major, tt.minor, got, err, tt.want)
		}
	}
}
