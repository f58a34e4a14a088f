package nodeclass

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// VersionFunc returns the API server's Kubernetes minor version, "1.33".
type VersionFunc func(context.Context) (string, error)

// ServerVersion asks the API server its version through discovery.
func ServerVersion(cfg *rest.Config) (VersionFunc, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building discovery client: %w", err)
	}
	return func(context.Context) (string, error) {
		v, err := dc.ServerVersion()
		if err != nil {
			return "", fmt.Errorf("reading the API server's version: %w", err)
		}
		return MinorVersion(v.Major, v.Minor)
	}, nil
}

// MinorVersion renders major.minor from discovery's fields; EKS reports a
// minor such as "33+", whose suffix is dropped.
func MinorVersion(major, minor string) (string, error) {
	digits := func(s string) (int, error) {
		s = strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		return strconv.Atoi(s)
	}
	ma, err := digits(major)
	if err != nil {
		return "", fmt.Errorf("server major version %q: %w", major, err)
	}
	mi, err := digits(minor)
	if err != nil {
		return "", fmt.Errorf("server minor version %q: %w", minor, err)
	}
	return fmt.Sprintf("%d.%d", ma, mi), nil
}
