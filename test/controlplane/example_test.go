//go:build unix

package controlplane_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/stowage-k8s/stowage/test/controlplane"
)

// A test that needs running pods asks for every component; one that only
// validates objects needs the API server alone.
func ExampleStartT() {
	var t testing.TB // the test's *testing.T
	cp := controlplane.StartT(t, controlplane.Options{
		ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true,
	})
	nodes := &corev1.NodeList{}
	_ = cp.Client.List(context.Background(), nodes)
	// kubectl --kubeconfig <cp.KubeconfigPath> get nodes works too.
}

// Suites that share one cluster start it in TestMain.
func ExampleStart() {
	var m *testing.M // TestMain's argument
	cp, err := controlplane.Start(context.Background(), controlplane.Options{CRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := cp.Stop(); err != nil && code == 0 {
		code = 1
	}
	os.Exit(code)
}
