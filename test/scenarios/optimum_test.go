package scenarios

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// TestSmallScenariosAgainstTheExactOptimum computes the true optimum of the
// file scenarios an exact model covers (optimum below) and checks the plan
// equals it and the bound does not exceed it. cpu-web is one: its plan is
// optimal, so what remains of its gap is the bound's.
func TestSmallScenariosAgainstTheExactOptimum(t *testing.T) {
	checked := 0
	for _, s := range All() {
		if s.Large {
			continue
		}
		r := solve(t, s)
		opt, why := optimum(r.snap)
		if why != "" {
			t.Logf("%s: not modelled (%s)", s.Name, why)
			continue
		}
		checked++
		t.Logf("%s: optimum $%.4f/h, plan $%.4f/h, bound $%.4f/h", s.Name, opt, r.plan.CostPerHour, r.plan.LowerBoundPerHour)
		if r.plan.CostPerHour < opt-1e-6 {
			t.Errorf("%s: plan $%.4f/h beats the exact optimum $%.4f/h: the model is wrong", s.Name, r.plan.CostPerHour, opt)
		}
		if r.plan.CostPerHour > opt+1e-6 {
			t.Errorf("%s: plan $%.4f/h, above the exact optimum $%.4f/h", s.Name, r.plan.CostPerHour, opt)
		}
		if r.plan.LowerBoundPerHour > opt+1e-6 {
			t.Errorf("%s: bound $%.4f/h above the exact optimum $%.4f/h", s.Name, r.plan.LowerBoundPerHour, opt)
		}
	}
	if checked == 0 {
		t.Fatal("no scenario was modelled: the exact check covers nothing")
	}
}

// exactShape is one kind of pod for optimum: its requests, how many are
// pending, and how many may share a node (hostname anti-affinity on itself: 1).
type exactShape struct {
	cpu, mem int64
	n        int
	perNode  int
}

// optimum is the cheapest placement of snap's pods on new machines, by
// dynamic programming over how many pods of each shape are left: the
// cheapest way to place a state is, over the sets of pods one machine can
// hold that include a pod of the first shape left, that machine's cheapest
// price plus the cheapest way to place the rest. It models one pool without
// taints or limits, no existing nodes, DaemonSets on every node, and pods
// that request only CPU and memory with no node selection, volumes or
// spread, at most a required hostname anti-affinity on their own labels;
// why names what it cannot model.
func optimum(snap *solver.Snapshot) (float64, string) {
	if len(snap.NodePools) != 1 || len(snap.Nodes) > 0 {
		return 0, "not one pool and no nodes"
	}
	pool := snap.NodePools[0]
	if len(pool.Spec.Template.Spec.Taints) > 0 || len(pool.Spec.Limits) > 0 {
		return 0, "pool taints or limits"
	}
	var daemon scheduling.Resources
	for _, d := range snap.DaemonSetPods {
		if len(d.Spec.NodeSelector) > 0 || d.Spec.Affinity != nil {
			return 0, "a DaemonSet that selects nodes"
		}
		daemon = daemon.Add(scheduling.PodRequests(d))
	}
	byKey := map[string]int{}
	var shapes []exactShape
	for _, p := range snap.Pods {
		if why := unmodelled(p); why != "" {
			return 0, why
		}
		req := scheduling.PodRequests(p)
		for _, name := range req.Names() {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory && name != corev1.ResourcePods {
				return 0, "a pod requests " + string(name)
			}
		}
		// Pods of one anti-affinity selector never share a node; pods of
		// another may join them.
		perNode, apart := math.MaxInt, ""
		if a := p.Spec.Affinity; a != nil {
			perNode = 1
			apart = metav1.FormatLabelSelector(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].LabelSelector)
		}
		cpu, mem := req.Get(corev1.ResourceCPU), req.Get(corev1.ResourceMemory)
		key := fmt.Sprint(cpu, "/", mem, "/", apart)
		i, ok := byKey[key]
		if !ok {
			i = len(shapes)
			byKey[key] = i
			shapes = append(shapes, exactShape{cpu: cpu, mem: mem, perNode: perNode})
		}
		shapes[i].n++
	}
	states := 1
	for _, s := range shapes {
		states *= s.n + 1
		if states > 3000 {
			return 0, "too many pods for the dynamic program"
		}
	}
	type machine struct {
		cpu, mem, pods int64
		price          float64
	}
	var machines []machine
	for _, it := range pool.InstanceTypes {
		price := math.Inf(1)
		for _, o := range it.Offerings {
			if o.Available && o.CapacityType != v1.CapacityTypeReserved {
				price = math.Min(price, o.PricePerHour)
			}
		}
		a := scheduling.FromList(it.Allocatable()).Sub(daemon)
		if !math.IsInf(price, 1) {
			machines = append(machines, machine{a.Get(corev1.ResourceCPU), a.Get(corev1.ResourceMemory), a.Get(corev1.ResourcePods), price})
		}
	}
	// cheapest is the price of the cheapest machine holding the counts c.
	cheapest := func(c []int) float64 {
		var cpu, mem, pods int64
		for i, s := range shapes {
			if c[i] > s.perNode {
				return math.Inf(1)
			}
			cpu += int64(c[i]) * s.cpu
			mem += int64(c[i]) * s.mem
			pods += int64(c[i])
		}
		best := math.Inf(1)
		for _, m := range machines {
			if m.cpu >= cpu && m.mem >= mem && m.pods >= pods {
				best = math.Min(best, m.price)
			}
		}
		return best
	}
	// States and patterns are count vectors, numbered in mixed radix.
	radix := make([]int, len(shapes))
	for i, s := range shapes {
		radix[i] = s.n + 1
	}
	decode := func(x int) []int {
		c := make([]int, len(radix))
		for i, r := range radix {
			c[i], x = x%r, x/r
		}
		return c
	}
	price := make([]float64, states)
	for x := 1; x < states; x++ {
		price[x] = cheapest(decode(x))
	}
	cost := make([]float64, states)
	for x := 1; x < states; x++ {
		left := decode(x)
		first := slices.IndexFunc(left, func(n int) bool { return n > 0 })
		cost[x] = math.Inf(1)
		for y := 1; y < states; y++ {
			if math.IsInf(price[y], 1) {
				continue
			}
			c := decode(y)
			if c[first] == 0 {
				continue
			}
			rest, mult, fits := 0, 1, true
			for i := range c {
				if c[i] > left[i] {
					fits = false
					break
				}
				rest += (left[i] - c[i]) * mult
				mult *= radix[i]
			}
			if fits {
				cost[x] = math.Min(cost[x], price[y]+cost[rest])
			}
		}
	}
	return cost[states-1], ""
}

// unmodelled says what about p the exact model leaves out, "" for nothing.
func unmodelled(p *corev1.Pod) string {
	switch {
	case len(p.Spec.NodeSelector) > 0 || len(p.Spec.TopologySpreadConstraints) > 0:
		return "node selectors or topology spread"
	case len(p.Spec.ResourceClaims) > 0:
		return "resource claims"
	case slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.PersistentVolumeClaim != nil }):
		return "volumes"
	case hasAnnotationPrefix(p, "stowage.dev/") || hasAnnotationPrefix(p, "kueue.x-k8s.io/"):
		return "gang or scheduling annotations"
	}
	a := p.Spec.Affinity
	if a == nil {
		return ""
	}
	if a.NodeAffinity != nil || a.PodAffinity != nil || a.PodAntiAffinity == nil ||
		len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 ||
		len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
		return "affinity other than one hostname anti-affinity"
	}
	term := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]
	if term.TopologyKey != corev1.LabelHostname || term.LabelSelector == nil || len(term.LabelSelector.MatchExpressions) > 0 {
		return "affinity other than one hostname anti-affinity"
	}
	for k, v := range term.LabelSelector.MatchLabels {
		if p.Labels[k] != v {
			return "anti-affinity to other pods"
		}
	}
	return ""
}

func hasAnnotationPrefix(p *corev1.Pod, prefix string) bool {
	for k := range p.Annotations {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	for k := range p.Labels {
		if strings.HasPrefix(k, prefix) {
			return true
		}
	}
	return false
}
