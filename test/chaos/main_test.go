package chaos

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

func TestMain(m *testing.M) {
	// The controller under test is its own process with its own log; the
	// test's clients (envtest's included) would otherwise print a stack
	// trace saying no logger was set.
	log.SetLogger(logr.Discard())
	os.Exit(m.Run())
}
