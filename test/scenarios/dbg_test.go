package scenarios

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/simulate"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pricing"
)

func TestDbgD10(t *testing.T) {
	c, _ := pricing.Load(catalogName)
	snap, _ := simulate.BuildSnapshot(simulate.Input{Manifests: &manifest.Set{Pods: Diverse(10000)}, Catalog: c})
	t0 := time.Now()
	p, _ := solver.Solve(context.Background(), snap)
	fmt.Println(p.CostPerHour, p.LowerBoundPerHour, time.Since(t0))
}
