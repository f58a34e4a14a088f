package cost

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// A spot GPU machine whose price is below the CPU/memory reference value
// (e.g. g6e.48xlarge: 192 vCPU, 1536 GiB, 8 x L40S; $30.13/h on-demand, about
// $9.04/h spot, reference $12.52/h) must still have a GPU part: its eight
// idle GPUs are most of what it costs. Priced from its on-demand split, the
// GPU part is the same share of its spot price.
func TestSpotGPUMachineKeepsItsGPUPart(t *testing.T) {
	capacity := resources("cpu", "192", "memory", "1536Gi", "nvidia.com/gpu", "8")
	s := State{
		NodeClaims: []v1.NodeClaim{claim("g", "gpu", v1.CapacityTypeSpot, "g6e.48xlarge", "9.04", "n", "p://g", capacity)},
		Nodes:      []corev1.Node{node("n", "p://g", capacity)},
	}
	r := Attribute(s, DefaultPriceModel, fakePricer{"g6e.48xlarge": 30.1312})
	ref := 192*DefaultPriceModel.CPUPerCoreHour + 1536*DefaultPriceModel.MemoryPerGiBHour
	want := 9.04 * (30.1312 - ref) / 30.1312
	if d := r.Idle.GPU - want; d > 1e-6 || d < -1e-6 {
		t.Errorf("idle GPU $%.4f/h for 8 idle GPUs on a $9.04/h machine; want $%.4f/h", r.Idle.GPU, want)
	}
}
