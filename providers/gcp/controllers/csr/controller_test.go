package csr_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"

	certv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	"github.com/stowage-k8s/stowage/providers/gcp/controllers/csr"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// machines are the VMs Stowage launched, by name.
type machines map[string][]string

func (m machines) OwnMachine(_ context.Context, name string) (*gcpprovider.Machine, error) {
	if addrs, ok := m[name]; ok {
		return &gcpprovider.Machine{Name: name, Addresses: addrs}, nil
	}
	return nil, nil
}

func request(t *testing.T, cn string, dns []string, ips ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{"system:nodes"}}, DNSNames: dns}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func csrObject(name, signer string, req []byte, usages ...certv1.KeyUsage) *certv1.CertificateSigningRequest {
	return &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       certv1.CertificateSigningRequestSpec{Request: req, SignerName: signer, Usages: usages},
	}
}

// TestApprovesOnlyStowageMachines runs the approver against a real API
// server: CSRs of Stowage's VMs are approved; a CSR naming another node, a
// serving CSR with a foreign IP and one with a foreign DNS name stay pending.
func TestApprovesOnlyStowageMachines(t *testing.T) {
	cp := controlplane.StartT(t, controlplane.Options{})
	c := cp.Client
	ctx := context.Background()
	ctrl := &csr.Controller{Client: c, Machines: machines{"gpu-abc12": {"10.128.0.7"}}}
	client := []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}
	serving := []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageServerAuth}
	tests := []struct {
		obj  *certv1.CertificateSigningRequest
		want bool
	}{
		{csrObject("client-ours", certv1.KubeAPIServerClientKubeletSignerName, request(t, "system:node:gpu-abc12", nil), client...), true},
		{csrObject("client-other", certv1.KubeAPIServerClientKubeletSignerName, request(t, "system:node:someone-else", nil), client...), false},
		{csrObject("serving-ours", certv1.KubeletServingSignerName, request(t, "system:node:gpu-abc12", []string{"gpu-abc12"}, "10.128.0.7"), serving...), true},
		{csrObject("serving-foreign-ip", certv1.KubeletServingSignerName, request(t, "system:node:gpu-abc12", nil, "10.0.0.99"), serving...), false},
		{csrObject("serving-foreign-dns", certv1.KubeletServingSignerName, request(t, "system:node:gpu-abc12", []string{"api.example.com"}), serving...), false},
	}
	for _, tt := range tests {
		if err := c.Create(ctx, tt.obj); err != nil {
			t.Fatalf("creating %s: %v", tt.obj.Name, err)
		}
		got := &certv1.CertificateSigningRequest{}
		if err := c.Get(ctx, clientKey(tt.obj), got); err != nil {
			t.Fatal(err)
		}
		if tt.obj.Spec.SignerName == certv1.KubeletServingSignerName {
			// Serving CSRs come from the node itself; the API server records
			// the creator, so stand in for the node's identity.
			got.Spec.Username = "system:node:gpu-abc12"
		}
		if _, err := ctrl.Reconcile(ctx, got); err != nil {
			t.Fatalf("%s: %v", tt.obj.Name, err)
		}
		after := &certv1.CertificateSigningRequest{}
		if err := c.Get(ctx, clientKey(tt.obj), after); err != nil {
			t.Fatal(err)
		}
		approved := false
		for _, cond := range after.Status.Conditions {
			if cond.Type == certv1.CertificateDenied {
				t.Errorf("%s was denied; the approver must only approve or leave alone", tt.obj.Name)
			}
			approved = approved || cond.Type == certv1.CertificateApproved
		}
		if approved != tt.want {
			t.Errorf("%s approved = %v, want %v (conditions %+v)", tt.obj.Name, approved, tt.want, after.Status.Conditions)
		}
	}
}

func TestServingCSRFromAnotherUserIsLeftAlone(t *testing.T) {
	obj := csrObject("x", certv1.KubeletServingSignerName, request(t, "system:node:gpu-abc12", nil, "10.128.0.7"))
	obj.Spec.Username = "system:serviceaccount:default:attacker"
	ok, why, err := csr.Check(context.Background(), machines{"gpu-abc12": {"10.128.0.7"}}, obj)
	if err != nil || ok {
		t.Errorf("Check = %v (%s), %v; want left alone", ok, why, err)
	}
}

func clientKey(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }
