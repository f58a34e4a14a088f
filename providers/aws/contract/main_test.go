// Package contract runs the AWS provider with the real aws-sdk-go-v2 clients
// against moto_server on loopback. CI's .ci/run exports STOWAGE_MOTO_ENDPOINT;
// otherwise TestMain starts its own moto_server and stops it afterwards.
package contract

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/aws/mototest"
)

var moto *mototest.Server

func TestMain(m *testing.M) {
	var err error
	moto, err = mototest.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "contract tests need moto:", err)
		os.Exit(1)
	}
	code := m.Run()
	moto.Stop()
	os.Exit(code)
}

// begin returns a context logging to t and a cluster name unique to this
// test and run. moto may be shared with other packages (CI runs one for all),
// so tests never reset it: they keep to resources tagged or named with their
// own cluster name instead.
func begin(t *testing.T) (context.Context, string) {
	t.Helper()
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	name := strings.ToLower(strings.TrimPrefix(t.Name(), "Test"))
	if len(name) > 30 {
		name = name[:30]
	}
	return log.IntoContext(context.Background(), testr.New(t)), name + "-" + hex.EncodeToString(b[:])
}

// joinSettings are valid cluster join settings with a real certificate.
func joinSettings(t *testing.T) nodeclass.JoinSettings {
	t.Helper()
	ca, err := mototest.CABundle()
	if err != nil {
		t.Fatal(err)
	}
	return nodeclass.JoinSettings{Endpoint: "https://127.0.0.1:6443", CABundle: ca, CIDR: "10.100.0.0/16"}
}
