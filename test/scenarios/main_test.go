package scenarios

import (
	"os"
	"testing"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

func TestMain(m *testing.M) {
	// The solver logs through controller-runtime; these tests assert on plans, not logs.
	log.SetLogger(logr.Discard())
	os.Exit(m.Run())
}
