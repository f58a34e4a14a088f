// Package csr approves kubelet certificate requests from VMs Stowage
// launched, and only those: the requested node name must be a live VM
// labelled with this cluster and created by Stowage, and a serving
// certificate may name only that VM's own addresses. Anything else is left
// pending for another approver (GKE's own, or an admin); it is never denied,
// so this controller cannot block a request it does not own.
package csr

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
)

// Name is the controller's name.
const Name = "gcp.csr"

// ReasonApproved is the Approved condition's reason.
const ReasonApproved = "StowageMachine"

// Machines finds the VMs Stowage launched. *gcp.Provider implements it.
type Machines interface {
	OwnMachine(ctx context.Context, name string) (*gcpprovider.Machine, error)
}

// Controller approves kubelet CSRs of Stowage's own VMs.
type Controller struct {
	Client             client.Client
	Machines           Machines
	SkipNameValidation bool
}

// Register adds the controller to mgr.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if c.Client == nil {
		c.Client = mgr.GetClient()
	}
	return builder.ControllerManagedBy(mgr).Named(Name).For(&certv1.CertificateSigningRequest{}).
		WithOptions(controller.Options{SkipNameValidation: &c.SkipNameValidation}).
		Complete(reconcile.AsReconciler[*certv1.CertificateSigningRequest](mgr.GetClient(), c))
}

// Name is the controller's dotted name.
func (c *Controller) Name() string { return Name }

// Reconcile approves csr when Check says it belongs to one of Stowage's VMs.
func (c *Controller) Reconcile(ctx context.Context, csr *certv1.CertificateSigningRequest) (reconcile.Result, error) {
	for _, cond := range csr.Status.Conditions {
		if cond.Type == certv1.CertificateApproved || cond.Type == certv1.CertificateDenied || cond.Type == certv1.CertificateFailed {
			return reconcile.Result{}, nil
		}
	}
	ok, why, err := Check(ctx, c.Machines, csr)
	if err != nil {
		return reconcile.Result{}, err
	}
	logger := log.FromContext(ctx).WithValues("csr", csr.Name)
	if !ok {
		logger.V(1).Info("leaving kubelet CSR for another approver", "reason", why)
		return reconcile.Result{}, nil
	}
	csr.Status.Conditions = append(csr.Status.Conditions, certv1.CertificateSigningRequestCondition{
		Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: ReasonApproved,
		Message: why, LastUpdateTime: metav1.Now(),
	})
	if err := c.Client.SubResource("approval").Update(ctx, csr); err != nil {
		return reconcile.Result{}, fmt.Errorf("approving CSR %s: %w", csr.Name, err)
	}
	logger.Info("approved kubelet CSR", "reason", why)
	return reconcile.Result{}, nil
}

// Check says whether csr is a kubelet CSR of one of Stowage's VMs, and why
// (or why not).
func Check(ctx context.Context, machines Machines, csr *certv1.CertificateSigningRequest) (bool, string, error) {
	signer := csr.Spec.SignerName
	if signer != certv1.KubeAPIServerClientKubeletSignerName && signer != certv1.KubeletServingSignerName {
		return false, "signer " + signer + " is not a kubelet signer", nil
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return false, "request is not a PEM certificate request", nil
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return false, "request does not parse: " + err.Error(), nil
	}
	node, found := strings.CutPrefix(req.Subject.CommonName, "system:node:")
	if !found || node == "" || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
		return false, "subject is not system:node:<name> in system:nodes", nil
	}
	if signer == certv1.KubeletServingSignerName && csr.Spec.Username != req.Subject.CommonName {
		return false, "serving CSR requested by " + csr.Spec.Username + ", not by the node itself", nil
	}
	m, err := machines.OwnMachine(ctx, node)
	if err != nil {
		return false, "", fmt.Errorf("looking up machine %s: %w", node, err)
	}
	if m == nil {
		return false, "no VM named " + node + " launched by Stowage for this cluster", nil
	}
	switch signer {
	case certv1.KubeAPIServerClientKubeletSignerName:
		if len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
			return false, "client CSR carries subject alternative names", nil
		}
	case certv1.KubeletServingSignerName:
		for _, ip := range req.IPAddresses {
			if !slices.Contains(m.Addresses, ip.String()) {
				return false, "IP " + ip.String() + " is not an address of VM " + node, nil
			}
		}
		for _, dns := range req.DNSNames {
			if dns != node && !strings.HasPrefix(dns, node+".") {
				return false, "DNS name " + dns + " does not name VM " + node, nil
			}
		}
		if len(req.EmailAddresses)+len(req.URIs) > 0 {
			return false, "serving CSR carries e-mail or URI names", nil
		}
	}
	return true, "node " + node + " is Stowage VM " + m.Name, nil
}
