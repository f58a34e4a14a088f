package simulate

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// fuzzMaxPods keeps one input's solve quick.
const fuzzMaxPods = 40

var fuzzSeeds = []string{
	`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 5
  template:
    spec:
      containers: [{name: c, resources: {requests: {cpu: 1500m, memory: 3Gi}}}]
`,
	`apiVersion: v1
kind: Pod
metadata: {name: train, labels: {stowage.dev/pod-group: g, stowage.dev/pod-group-size: "2"}}
spec:
  initContainers: [{name: init, resources: {requests: {cpu: "30", memory: 100Gi}}},
                   {name: side, restartPolicy: Always, resources: {requests: {cpu: "1"}}}]
  containers: [{name: c, resources: {requests: {cpu: "8", memory: 64Gi, nvidia.com/gpu: "8"}}}]
  overhead: {cpu: 250m}
---
apiVersion: v1
kind: Pod
metadata: {name: train2, labels: {stowage.dev/pod-group: g, stowage.dev/pod-group-size: "2"}}
spec:
  containers: [{name: c, resources: {requests: {cpu: "8", nvidia.com/gpu: "8"}}}]
`,
	`apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: mig}
spec:
  limits: {nvidia.com/gpu: "16", cpu: "500"}
  template:
    spec:
      gpu: {migProfile: 1g.10gb}
      requirements: [{key: stowage.dev/gpu-name, operator: In, values: [a100]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: infer}
spec:
  parallelism: 9
  template:
    spec:
      containers: [{name: c, resources: {requests: {nvidia.com/mig-1g.10gb: "1", memory: 8Gi}}}]
`,
	`apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: sliced}
spec:
  template:
    spec:
      gpu: {timeSlicingReplicas: 4}
      taints: [{key: gpu, effect: NoSchedule}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s}
spec:
  replicas: 6
  template:
    spec:
      tolerations: [{key: gpu, operator: Exists}]
      nodeSelector: {stowage.dev/gpu-name: l4}
      containers: [{name: c, resources: {requests: {cpu: 500m, nvidia.com/gpu: "1"}}}]
`,
	// Quantities at the edge of what Stowage counts.
	`apiVersion: v1
kind: Pod
metadata: {name: huge}
spec:
  containers: [{name: c, resources: {requests: {cpu: 8T, memory: 8P, ephemeral-storage: "1e15"}}},
               {name: d, resources: {requests: {cpu: 1m, memory: "0.5"}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: tiny}
spec:
  containers: [{name: c, resources: {requests: {cpu: 1m, memory: "0.5"}}}]
`,
}

// FuzzSimulate runs manifests through decode, validation and the solver,
// and checks every plan with arithmetic of its own (big integers, straight
// from the quantities as written): each pod is placed once or reported
// unschedulable, every choice of every new node holds the pods planned onto
// it, and no pool goes past its limits. Quantities that overflowed the
// solver's int64s once planned 1e400 CPUs onto a t3a.nano.
func FuzzSimulate(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		l := manifest.NewLoader(manifest.Options{MaxPods: fuzzMaxPods})
		if err := l.Decode("fuzz.yaml", bytes.NewReader(data)); err != nil {
			return
		}
		set := l.Set()
		if len(set.Pods) == 0 {
			return
		}
		for _, p := range set.Pods {
			if errs := validation.PodSpec(field.NewPath("spec"), &p.Spec); len(errs) > 0 {
				t.Fatalf("decoded pod %s does not validate: %v", p.Name, errs.ToAggregate())
			}
		}
		for _, np := range set.NodePools {
			if errs := validation.NodePool(np); len(errs) > 0 {
				t.Fatalf("decoded NodePool %s does not validate: %v", np.Name, errs.ToAggregate())
			}
		}
		// Which DaemonSets a node runs is the solver's to decide; without
		// them the check below is exact.
		set.DaemonSetPods = nil
		snap, err := BuildSnapshot(Input{Manifests: set, Catalog: testCatalog()})
		if err != nil {
			return // e.g. a reservation for a type the catalog lacks
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		plan, err := solver.Solve(ctx, snap)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the solver took more than 20 s on %d pods", len(snap.Pods))
			}
			return
		}
		checkPlan(t, snap, plan)
	})
}

// FuzzSimulateShapes does the same with manifests built from numbers, so
// the fuzzer spends its time on pod shapes, quantity magnitudes and GPU
// sharing rather than on YAML syntax.
func FuzzSimulateShapes(f *testing.F) {
	f.Add(uint8(5), uint16(1500), int8(9), uint8(0), uint8(0), uint8(1), uint16(0))
	f.Add(uint8(30), uint16(250), int8(8), uint8(1), uint8(4), uint8(3), uint16(2))
	f.Add(uint8(3), uint16(999), int8(15), uint8(8), uint8(0), uint8(2), uint16(64))
	f.Add(uint8(12), uint16(1), int8(-3), uint8(2), uint8(7), uint8(5), uint16(1))
	f.Fuzz(func(t *testing.T, pods uint8, cpuMilli uint16, memExp int8, gpus, slicing, containers uint8, limit uint16) {
		var b strings.Builder
		pool := "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: p}\nspec:\n"
		if limit > 0 {
			pool += fmt.Sprintf("  limits: {cpu: %q, nvidia.com/gpu: %q}\n", strconv.Itoa(int(limit)), strconv.Itoa(int(limit)/8))
		}
		pool += "  template:\n    spec:\n"
		if slicing >= 2 && slicing <= 64 {
			pool += fmt.Sprintf("      gpu: {timeSlicingReplicas: %d}\n", slicing)
		}
		b.WriteString(pool)
		fmt.Fprintf(&b, "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: %d\n  template:\n    spec:\n      containers:\n", pods%fuzzMaxPods)
		for i := range max(1, containers%6) {
			fmt.Fprintf(&b, "      - {name: c%d, resources: {requests: {cpu: %dm, memory: \"1e%d\"", i, cpuMilli, memExp)
			if gpus > 0 {
				fmt.Fprintf(&b, ", nvidia.com/gpu: \"%d\"", gpus%9)
			}
			b.WriteString("}}}\n")
		}
		l := manifest.NewLoader(manifest.Options{MaxPods: fuzzMaxPods})
		if err := l.Decode("shapes.yaml", strings.NewReader(b.String())); err != nil {
			return
		}
		set := l.Set()
		snap, err := BuildSnapshot(Input{Manifests: set, Catalog: testCatalog()})
		if err != nil || len(snap.Pods) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		plan, err := solver.Solve(ctx, snap)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("the solver took more than 20 s on %d pods", len(snap.Pods))
			}
			return
		}
		checkPlan(t, snap, plan)
	})
}

func checkPlan(t *testing.T, snap *solver.Snapshot, plan *solver.Plan) {
	t.Helper()
	seen := map[*corev1.Pod]int{}
	for _, n := range plan.NewNodes {
		for _, p := range n.Pods {
			seen[p]++
		}
	}
	for _, b := range plan.Bindings {
		seen[b.Pod]++
	}
	for _, u := range plan.Unschedulable {
		seen[u.Pod]++
	}
	for _, p := range snap.Pods {
		if seen[p] != 1 {
			t.Errorf("pod %s appears %d times in the plan, want once (placed or unschedulable)", p.Name, seen[p])
		}
	}
	pools := map[string]*solver.NodePool{}
	for _, np := range snap.NodePools {
		pools[np.Name] = np
	}
	used := map[string]map[corev1.ResourceName]*big.Int{}
	for i, n := range plan.NewNodes {
		np := pools[n.NodePool]
		if np == nil {
			t.Fatalf("new node %d comes from pool %q, which is not in the snapshot", i, n.NodePool)
		}
		demand := map[corev1.ResourceName]*big.Int{}
		for _, p := range n.Pods {
			for name, q := range podRequests(p) {
				addTo(demand, name, q)
			}
		}
		if len(n.Choices) == 0 {
			t.Errorf("new node %d has no instance type to launch", i)
		}
		for _, c := range n.Choices {
			_, allocatable := scheduling.EffectiveCapacity(c.InstanceType, np.Spec.Template.Spec.GPU)
			for name, want := range demand {
				have := milli(allocatable[name])
				if want.Cmp(have) > 0 {
					t.Errorf("new node %d as %s: its %d pods request %s milli-%s, it has %s", i, c.InstanceType.Name, len(n.Pods), want, name, have)
				}
			}
		}
		if len(n.Choices) > 0 {
			capacity, _ := scheduling.EffectiveCapacity(n.Choices[0].InstanceType, np.Spec.Template.Spec.GPU)
			if used[n.NodePool] == nil {
				used[n.NodePool] = map[corev1.ResourceName]*big.Int{}
			}
			for name, q := range capacity {
				addTo(used[n.NodePool], name, milli(q))
			}
		}
	}
	for name, np := range pools {
		for res, limit := range np.Spec.Limits {
			if got := used[name][res]; got != nil && got.Cmp(milli(limit)) > 0 {
				t.Errorf("pool %s buys %s milli-%s, past its limit of %s", name, got, res, limit.String())
			}
		}
	}
}

// podRequests is what the kubelet reserves for a pod, in milli-units: the
// larger of the running containers plus sidecars and the peak of the init
// phase, pod-level requests where set, the overhead, and one pod slot.
func podRequests(p *corev1.Pod) map[corev1.ResourceName]*big.Int {
	running, sidecars, peak := map[corev1.ResourceName]*big.Int{}, map[corev1.ResourceName]*big.Int{}, map[corev1.ResourceName]*big.Int{}
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			for name, q := range c.Resources.Requests {
				addTo(sidecars, name, milli(q))
			}
			maxInto(peak, sidecars)
			continue
		}
		step := copyOf(sidecars)
		for name, q := range c.Resources.Requests {
			addTo(step, name, milli(q))
		}
		maxInto(peak, step)
	}
	for _, c := range p.Spec.Containers {
		for name, q := range c.Resources.Requests {
			addTo(running, name, milli(q))
		}
	}
	for name, q := range sidecars {
		addTo(running, name, q)
	}
	maxInto(running, peak)
	if p.Spec.Resources != nil {
		for name, q := range p.Spec.Resources.Requests {
			running[name] = milli(q)
		}
	}
	for name, q := range p.Spec.Overhead {
		addTo(running, name, milli(q))
	}
	addTo(running, corev1.ResourcePods, big.NewInt(1000))
	return running
}

// milli is q times 1000, rounded up, exactly.
func milli(q resource.Quantity) *big.Int {
	d := q.AsDec()
	scaled := new(big.Int).Set(d.UnscaledBig())
	scale := int64(d.Scale()) - 3 // value = unscaled * 10^-scale; milli = unscaled * 10^(3-scale)
	ten := big.NewInt(10)
	if scale <= 0 {
		return scaled.Mul(scaled, new(big.Int).Exp(ten, big.NewInt(-scale), nil))
	}
	div := new(big.Int).Exp(ten, big.NewInt(scale), nil)
	quo, rem := new(big.Int).QuoRem(scaled, div, new(big.Int))
	if rem.Sign() > 0 {
		quo.Add(quo, big.NewInt(1))
	}
	return quo
}

func addTo(m map[corev1.ResourceName]*big.Int, name corev1.ResourceName, v *big.Int) {
	if m[name] == nil {
		m[name] = new(big.Int)
	}
	m[name].Add(m[name], v)
}

func maxInto(dst, src map[corev1.ResourceName]*big.Int) {
	for name, v := range src {
		if dst[name] == nil || dst[name].Cmp(v) < 0 {
			dst[name] = new(big.Int).Set(v)
		}
	}
}

func copyOf(m map[corev1.ResourceName]*big.Int) map[corev1.ResourceName]*big.Int {
	out := make(map[corev1.ResourceName]*big.Int, len(m))
	for k, v := range m {
		out[k] = new(big.Int).Set(v)
	}
	return out
}

// TestMilli pins the exact conversion the fuzz check relies on.
func TestMilli(t *testing.T) {
	for in, want := range map[string]string{
		"1": "1000", "250m": "250", "1.5": "1500", "0.5m": "1", "1e400": "1" + string(bytes.Repeat([]byte("0"), 403)),
		// The quantity parser itself clamps binary-suffixed values to MaxInt64.
		"99999999Ei": "9223372036854775807000", "-1": "-1000", "1Ki": "1024000",
	} {
		if got := milli(resource.MustParse(in)).String(); got != want {
			t.Errorf("milli(%s) = %s, want %s", in, got, want)
		}
	}
}
