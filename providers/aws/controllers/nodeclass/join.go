package nodeclass

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
)

// JoinSettings are what a node needs to join the cluster; the controller
// writes them into every node's user data.
type JoinSettings struct {
	// Endpoint is the API server URL (https://...).
	Endpoint string
	// CABundle is the cluster CA certificate, base64-encoded PEM, as
	// `aws eks describe-cluster` prints it.
	CABundle string
	// CIDR is the service CIDR, from which AL2023 nodes derive the cluster DNS IP.
	CIDR string
}

// ErrJoinSettings is wrapped when join settings are missing or malformed.
var ErrJoinSettings = errors.New("invalid cluster join settings")

// Validate returns every problem with the settings, naming the flag that
// sets each, so a controller started without them says exactly what to add.
func (j JoinSettings) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: --%s: %s", ErrJoinSettings, flag, fmt.Sprintf(format, args...)))
	}
	switch u, err := url.Parse(j.Endpoint); {
	case j.Endpoint == "":
		bad("aws-cluster-endpoint", "missing (aws eks describe-cluster --query cluster.endpoint)")
	case err != nil || u.Scheme != "https" || u.Host == "":
		bad("aws-cluster-endpoint", "%q is not an https:// URL", j.Endpoint)
	}
	if j.CABundle == "" {
		bad("aws-cluster-ca-bundle", "missing (aws eks describe-cluster --query cluster.certificateAuthority.data)")
	} else if err := checkCA(j.CABundle); err != nil {
		bad("aws-cluster-ca-bundle", "%v", err)
	}
	if j.CIDR == "" {
		bad("aws-cluster-cidr", "missing (aws eks describe-cluster --query cluster.kubernetesNetworkConfig.serviceIpv4Cidr)")
	} else if _, _, err := net.ParseCIDR(j.CIDR); err != nil {
		bad("aws-cluster-cidr", "%q is not a CIDR such as 10.100.0.0/16", j.CIDR)
	}
	return errors.Join(errs...)
}

// checkCA accepts base64 of one or more PEM certificates.
func checkCA(b64 string) error {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return fmt.Errorf("not base64: %v", err)
	}
	found := 0
	for rest := raw; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(block.Bytes); err != nil {
			return fmt.Errorf("certificate %d does not parse: %v", found+1, err)
		}
		found++
	}
	if found == 0 {
		return errors.New("base64 of no PEM certificate")
	}
	return nil
}
