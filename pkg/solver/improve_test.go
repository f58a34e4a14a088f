package solver

import (
	"strings"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// The improvement phase re-places pods with their own rules only: it must
// not move a pod another pod's hard hostname spread counts onto that pod's
// node. Each z pod allows one x pod beside it (maxSkew 1 over x per node).
func TestImproveKeepsOtherPodsHostnameSpread(t *testing.T) {
	x := map[string]string{"app": "x"}
	snap := &Snapshot{
		Pods: concat(
			makePods(4, "x", "500m", "256Mi", label("app", "x")),
			makePods(2, "z", "2500m", "256Mi", label("app", "z"),
				podAntiAffinity(v1.LabelHostname, map[string]string{"app": "z"}),
				spread(v1.LabelHostname, 1, true, x)),
		),
		NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
	}
	plan := solveT(t, snap)
	if errs := validate(snap, plan); len(errs) > 0 {
		t.Fatalf("violations:\n  %s\nplan:\n%s", strings.Join(errs, "\n  "), summarize(plan))
	}
}
