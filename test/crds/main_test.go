package crds

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stowage-k8s/stowage/test/controlplane"
)

// cp is one API server for the package: validation needs no other component.
var cp *controlplane.ControlPlane

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	var err error
	cp, err = controlplane.Start(ctx, controlplane.Options{CRDs: true})
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "starting the local control plane: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := cp.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "stopping the local control plane: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
