package solver

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// placedNode is a node of the final layout, existing or new (as its first choice).
type placedNode struct {
	name   string
	labels map[string]string
	taints []corev1.Taint
	pods   []*corev1.Pod
}

// validate checks a plan against every constraint of the snapshot,
// independently of the solver's internals. It returns the violations found.
func validate(snap *Snapshot, plan *Plan) []string {
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	// Every pod is accounted for exactly once.
	seen := map[*corev1.Pod]int{}
	for _, b := range plan.Bindings {
		seen[b.Pod]++
	}
	for _, n := range plan.NewNodes {
		for _, p := range n.Pods {
			seen[p]++
		}
	}
	for _, u := range plan.Unschedulable {
		seen[u.Pod]++
		if u.Reason == "" {
			fail("pod %s unschedulable without a reason", u.Pod.Name)
		}
	}
	for _, p := range snap.Pods {
		if seen[p] != 1 {
			fail("pod %s appears %d times in the plan", p.Name, seen[p])
		}
	}

	pools := map[string]*NodePool{}
	for _, p := range snap.NodePools {
		pools[p.Name] = p
	}
	var layout []*placedNode
	byName := map[string]*placedNode{}
	for _, n := range snap.Nodes {
		pn := &placedNode{name: n.Name, labels: n.Labels, taints: n.Taints, pods: slices.Clone(n.Pods)}
		layout = append(layout, pn)
		byName[n.Name] = pn
	}
	for _, b := range plan.Bindings {
		pn := byName[b.NodeName]
		if pn == nil {
			fail("pod %s bound to unknown node %s", b.Pod.Name, b.NodeName)
			continue
		}
		pn.pods = append(pn.pods, b.Pod)
	}
	for _, n := range snap.Nodes {
		pn := byName[n.Name]
		var used scheduling.Resources
		for _, p := range pn.pods {
			used = used.Add(scheduling.PodRequests(p))
		}
		alloc := scheduling.FromList(n.Allocatable)
		if len(pn.pods) > len(n.Pods) && !used.Fits(&alloc) {
			fail("existing node %s overcommitted: %v", n.Name, used.Exceeded(&alloc))
		}
		for _, p := range pn.pods[len(n.Pods):] {
			checkPodOnNode(p, n.Labels, n.Taints, fail, n.Name)
		}
	}

	// New nodes: every choice holds every pod and meets every requirement.
	used := map[string]scheduling.Resources{}
	var cost float64
	for i, n := range plan.NewNodes {
		pool := pools[n.NodePool]
		if pool == nil || len(n.Choices) == 0 {
			fail("new node %d: unknown pool %q or no choices", i, n.NodePool)
			continue
		}
		nodeReqs, err := scheduling.FromAPI(n.Requirements)
		if err != nil {
			fail("new node %d: requirements do not parse: %v", i, err)
		}
		var podSum scheduling.Resources
		for _, p := range n.Pods {
			podSum = podSum.Add(scheduling.PodRequests(p))
		}
		for ci, c := range n.Choices {
			lbls := choiceLabels(pool, c)
			if !c.Offering.Available {
				fail("new node %d choice %d: offering unavailable", i, ci)
			}
			if ci > 0 && c.Offering.PricePerHour < n.Choices[ci-1].Offering.PricePerHour {
				fail("new node %d: choices not cheapest first", i)
			}
			if !nodeReqs.Matches(lbls) {
				fail("new node %d choice %s: does not meet the node's own requirements", i, c.InstanceType.Name)
			}
			if !pool.reqsMatch(lbls) {
				fail("new node %d choice %s: violates nodepool %s requirements", i, c.InstanceType.Name, pool.Name)
			}
			_, alloc := scheduling.EffectiveCapacity(c.InstanceType, pool.Spec.Template.Spec.GPU)
			overhead, _ := scheduling.DaemonSets(snap.DaemonSetPods, scheduling.FromLabels(lbls), pool.Spec.Template.Spec.Taints)
			a := scheduling.FromList(alloc).Sub(overhead)
			if !podSum.Fits(&a) {
				fail("new node %d choice %s: pods exceed allocatable in %v", i, c.InstanceType.Name, podSum.Exceeded(&a))
			}
			for _, p := range n.Pods {
				checkPodOnNode(p, lbls, pool.Spec.Template.Spec.Taints, fail, c.InstanceType.Name)
			}
		}
		first := n.Choices[0]
		cost += first.Offering.PricePerHour
		capacity, _ := scheduling.EffectiveCapacity(first.InstanceType, pool.Spec.Template.Spec.GPU)
		capacity = capacity.DeepCopy()
		capacity[ResourceNodes] = resource.MustParse("1")
		used[pool.Name] = used[pool.Name].Add(scheduling.FromList(capacity))
		lbls := choiceLabels(pool, first)
		lbls[v1.LabelHostname] = fmt.Sprintf("new-%d", i)
		layout = append(layout, &placedNode{name: lbls[v1.LabelHostname], labels: lbls, taints: pool.Spec.Template.Spec.Taints, pods: n.Pods})
		// A node whose pods a topology rule constrains or counts must keep
		// every fallback in the first choice's domain of that rule's key.
		for _, key := range pinnedKeys(snap, n.Pods) {
			for _, c := range n.Choices {
				if v := choiceLabels(pool, c)[key]; v != lbls[key] {
					fail("new node %d holds pods a rule at %s constrains but has fallbacks in %s and %s", i, key, lbls[key], v)
					break
				}
			}
		}
	}
	// Commitments: the first choices spend at most what each has left, and
	// reservations hold at most their count.
	spent, left := map[string]float64{}, map[string]float64{}
	reservedUse := map[string]int{}
	for _, n := range plan.NewNodes {
		if len(n.Choices) == 0 {
			continue
		}
		o := n.Choices[0].Offering
		if o.Commitment != "" {
			spent[o.Commitment] += o.CommitmentCost
			left[o.Commitment] = o.CommitmentLeft
		}
		if o.CapacityType == v1.CapacityTypeReserved {
			k := n.Choices[0].InstanceType.Name + "/" + o.Zone + "/" + o.ReservationID
			if reservedUse[k]++; reservedUse[k] > o.ReservedCount {
				fail("reservation %s used by more than its %d machines", k, o.ReservedCount)
			}
		}
	}
	for name, s := range spent {
		if s > left[name]+1e-6 {
			fail("commitment %s: plan spends %.4f of the %.4f it has left", name, s, left[name])
		}
	}
	if d := cost - plan.CostPerHour; d > 1e-6 || d < -1e-6 {
		fail("CostPerHour %.4f but first choices sum to %.4f", plan.CostPerHour, cost)
	}
	if plan.LowerBoundPerHour > plan.CostPerHour+1e-6 {
		fail("lower bound %.4f exceeds cost %.4f", plan.LowerBoundPerHour, plan.CostPerHour)
	}
	for name, u := range used {
		p := pools[name]
		if len(p.Spec.Limits) == 0 {
			continue
		}
		total := u.Add(scheduling.FromList(p.Usage))
		for res, q := range p.Spec.Limits {
			if total.Get(res) > scheduling.FromList(corev1.ResourceList{res: q}).Get(res) {
				fail("nodepool %s over its %s limit", name, res)
			}
		}
	}
	errs = append(errs, validateTopology(snap, layout)...)
	errs = append(errs, validateHostPorts(snap, layout)...)
	errs = append(errs, validateGangs(snap, plan, layout)...)
	return errs
}

// validateHostPorts: no pod the plan places shares a node with another pod
// binding one of its host ports (any host IP, by protocol and port).
func validateHostPorts(snap *Snapshot, layout []*placedNode) []string {
	var errs []string
	pending := map[*corev1.Pod]bool{}
	for _, p := range snap.Pods {
		pending[p] = true
	}
	for _, n := range layout {
		if strings.HasPrefix(n.name, "new-") { // the DaemonSet pods a new node will run
			_, taken := scheduling.DaemonSets(snap.DaemonSetPods, scheduling.FromLabels(n.labels), n.taints)
			for _, p := range n.pods {
				for _, port := range scheduling.HostPorts(p) {
					if slices.Contains(taken, port) {
						errs = append(errs, fmt.Sprintf("pod %s binds host port %s, which a DaemonSet pod binds on %s", p.Name, port, n.name))
					}
				}
			}
		}
		for i, p := range n.pods {
			for _, o := range n.pods[i+1:] {
				if !pending[p] && !pending[o] {
					continue
				}
				for _, c := range p.Spec.Containers {
					for _, cp := range c.Ports {
						for _, oc := range o.Spec.Containers {
							for _, op := range oc.Ports {
								if cp.HostPort > 0 && cp.HostPort == op.HostPort && cmp.Or(cp.Protocol, corev1.ProtocolTCP) == cmp.Or(op.Protocol, corev1.ProtocolTCP) {
									errs = append(errs, fmt.Sprintf("pods %s and %s share host port %d on %s", p.Name, o.Name, cp.HostPort, n.name))
								}
							}
						}
					}
				}
			}
		}
	}
	return errs
}

func (p *NodePool) reqsMatch(lbls map[string]string) bool {
	reqs, err := scheduling.FromAPI(p.Spec.Template.Spec.Requirements)
	return err == nil && reqs.Matches(lbls)
}

func choiceLabels(pool *NodePool, c Choice) map[string]string {
	lbls := scheduling.NodeLabels(c.InstanceType, pool.NodePool)
	lbls[v1.LabelZone] = c.Offering.Zone
	lbls[v1.LabelCapacityType] = c.Offering.CapacityType
	return lbls
}

func checkPodOnNode(p *corev1.Pod, lbls map[string]string, taints []corev1.Taint, fail func(string, ...any), where string) {
	if err := scheduling.Tolerates(p.Spec.Tolerations, taints); err != nil {
		fail("pod %s on %s: %v", p.Name, where, err)
	}
	pc, err := scheduling.NewPodConstraints(p)
	if err != nil {
		fail("pod %s placed despite bad constraints: %v", p.Name, err)
		return
	}
	for _, alt := range pc.NodeRequirements {
		if alt.Matches(lbls) {
			return
		}
	}
	fail("pod %s on %s: node labels do not meet its node selector/affinity", p.Name, where)
}

// pinnedKeys are the topology keys (other than the hostname) at which a
// rule constrains one of pods or counts it: a gang's zone, the pods' own
// spread (hard or soft) and required pod (anti-)affinity, and every pod's
// hard spread and required (anti-)affinity whose selector matches one of
// them.
func pinnedKeys(snap *Snapshot, pods []*corev1.Pod) []string {
	keys := map[string]bool{}
	type rule struct {
		key string
		sel *metav1.LabelSelector
	}
	rulesOf := func(p *corev1.Pod, soft bool) []rule {
		var out []rule
		for _, t := range p.Spec.TopologySpreadConstraints {
			if soft || t.WhenUnsatisfiable == corev1.DoNotSchedule {
				out = append(out, rule{t.TopologyKey, t.LabelSelector})
			}
		}
		if a := p.Spec.Affinity; a != nil {
			if a.PodAffinity != nil {
				for _, t := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
					out = append(out, rule{t.TopologyKey, t.LabelSelector})
				}
			}
			if a.PodAntiAffinity != nil {
				for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
					out = append(out, rule{t.TopologyKey, t.LabelSelector})
				}
			}
		}
		return out
	}
	for _, p := range pods {
		if p.Labels[v1.LabelPodGroup] != "" {
			keys[v1.LabelZone] = true
		}
		for _, r := range rulesOf(p, true) {
			keys[r.key] = true
		}
	}
	others := slices.Clone(snap.Pods)
	for _, n := range snap.Nodes {
		others = append(others, n.Pods...)
	}
	for _, o := range others {
		for _, r := range rulesOf(o, false) {
			sel, _ := metaSelector(r.sel)
			if slices.ContainsFunc(pods, func(p *corev1.Pod) bool { return p.Namespace == o.Namespace && sel.Matches(labels.Set(p.Labels)) }) {
				keys[r.key] = true
			}
		}
	}
	delete(keys, v1.LabelHostname)
	return slices.Sorted(maps.Keys(keys))
}

func validateTopology(snap *Snapshot, layout []*placedNode) []string {
	var errs []string
	type where struct {
		pod  *corev1.Pod
		node *placedNode
	}
	var all []where
	for _, n := range layout {
		for _, p := range n.pods {
			all = append(all, where{p, n})
		}
	}
	pending := map[*corev1.Pod]bool{}
	for _, p := range snap.Pods {
		pending[p] = true
	}
	for _, w := range all {
		if !pending[w.pod] {
			// A running pod's anti-affinity binds the pods placed beside it.
			if a := w.pod.Spec.Affinity; a != nil && a.PodAntiAffinity != nil {
				for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
					sel, _ := metaSelector(t.LabelSelector)
					for _, o := range all {
						if pending[o.pod] && o.pod.Namespace == w.pod.Namespace && sel.Matches(labels.Set(o.pod.Labels)) && sameDomain(w.node, o.node, t.TopologyKey) {
							errs = append(errs, fmt.Sprintf("pod %s placed in the %s of running %s, whose anti-affinity selects it", o.pod.Name, t.TopologyKey, w.pod.Name))
						}
					}
				}
			}
			continue
		}
		a := w.pod.Spec.Affinity
		if a != nil && a.PodAntiAffinity != nil {
			for _, t := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				sel, _ := metaSelector(t.LabelSelector)
				for _, o := range all {
					if o.pod != w.pod && o.pod.Namespace == w.pod.Namespace && sel.Matches(labels.Set(o.pod.Labels)) &&
						sameDomain(w.node, o.node, t.TopologyKey) {
						errs = append(errs, fmt.Sprintf("pod %s shares %s with %s despite anti-affinity", w.pod.Name, t.TopologyKey, o.pod.Name))
					}
				}
			}
		}
		if a != nil && a.PodAffinity != nil {
			for _, t := range a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
				sel, _ := metaSelector(t.LabelSelector)
				ok := false
				others := 0
				for _, o := range all {
					if o.pod == w.pod || o.pod.Namespace != w.pod.Namespace || !sel.Matches(labels.Set(o.pod.Labels)) {
						continue
					}
					others++
					ok = ok || sameDomain(w.node, o.node, t.TopologyKey)
				}
				if !ok && others > 0 {
					errs = append(errs, fmt.Sprintf("pod %s has no affinity peer in its %s", w.pod.Name, t.TopologyKey))
				}
			}
		}
		for _, t := range w.pod.Spec.TopologySpreadConstraints {
			if t.WhenUnsatisfiable != corev1.DoNotSchedule {
				continue
			}
			sel, _ := metaSelector(t.LabelSelector)
			// Domains, as the scheduler sees them with nodeTaintsPolicy: Honor
			// (the solver's documented semantics): values of the nodes whose
			// taints the pod tolerates and that its node selector and affinity admit.
			counts := map[string]int{}
			pc, _ := scheduling.NewPodConstraints(w.pod)
			for _, n := range layout {
				if scheduling.Tolerates(w.pod.Spec.Tolerations, n.taints) != nil {
					continue
				}
				if v, ok := n.labels[t.TopologyKey]; ok {
					for _, alt := range pc.NodeRequirements {
						if alt.Matches(n.labels) {
							counts[v] += 0
							break
						}
					}
				}
			}
			for _, o := range all {
				if _, domain := counts[o.node.labels[t.TopologyKey]]; domain && o.pod.Namespace == w.pod.Namespace && sel.Matches(labels.Set(o.pod.Labels)) {
					counts[o.node.labels[t.TopologyKey]]++
				}
			}
			if t.TopologyKey == v1.LabelHostname {
				if c := counts[w.node.labels[v1.LabelHostname]]; c > int(t.MaxSkew) {
					errs = append(errs, fmt.Sprintf("pod %s: %d matching pods on its node, maxSkew %d", w.pod.Name, c, t.MaxSkew))
				}
				continue
			}
			// Each placement keeps its domain within maxSkew of the minimum,
			// and the minimum only grows, so at the end every domain a pending
			// pod went to is still within maxSkew of the minimum. (Skew the
			// existing pods already had elsewhere is not the plan's doing.)
			lo := 1 << 30
			for _, c := range counts {
				lo = min(lo, c)
			}
			// With fewer domains than minDomains the scheduler takes the
			// global minimum as 0.
			if t.MinDomains != nil && len(counts) < int(*t.MinDomains) {
				lo = 0
			}
			if c := counts[w.node.labels[t.TopologyKey]]; c-lo > int(t.MaxSkew) {
				errs = append(errs, fmt.Sprintf("pod %s: %s domain %q has %d matching pods, minimum %d, maxSkew %d", w.pod.Name, t.TopologyKey, w.node.labels[t.TopologyKey], c, lo, t.MaxSkew))
			}
		}
	}
	slices.Sort(errs)
	return slices.Compact(errs)
}

func sameDomain(a, b *placedNode, key string) bool {
	va, oka := a.labels[key]
	vb, okb := b.labels[key]
	return oka && okb && va == vb
}

func validateGangs(snap *Snapshot, plan *Plan, layout []*placedNode) []string {
	var errs []string
	zoneOf := map[*corev1.Pod]string{}
	for _, n := range layout {
		for _, p := range n.pods {
			zoneOf[p] = n.labels[v1.LabelZone]
		}
	}
	type g struct {
		placed, unsched int
		zones           map[string]bool
	}
	gangs := map[string]*g{}
	for _, p := range snap.Pods {
		name := p.Labels[v1.LabelPodGroup]
		if name == "" {
			continue
		}
		if gangs[name] == nil {
			gangs[name] = &g{zones: map[string]bool{}}
		}
		if z, ok := zoneOf[p]; ok {
			gangs[name].placed++
			gangs[name].zones[z] = true
		} else {
			gangs[name].unsched++
		}
	}
	for name, x := range gangs {
		if x.placed > 0 && x.unsched > 0 {
			errs = append(errs, fmt.Sprintf("gang %s partially placed: %d placed, %d not", name, x.placed, x.unsched))
		}
		if len(x.zones) > 1 {
			errs = append(errs, fmt.Sprintf("gang %s spans zones %v", name, slices.Sorted(maps.Keys(x.zones))))
		}
	}
	return errs
}

func metaSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// The validator must catch a fallback outside the domain a rule pinned,
// whether the rule is the pod's own or another pod's that counts it, and
// must not ask it of pods no rule at that key touches.
func TestValidateFallbacksStayInPinnedDomains(t *testing.T) {
	web := map[string]string{"app": "web"}
	snap := &Snapshot{
		Pods: concat(
			makePods(3, "web", "1", "1Gi", label("app", "web")),
			makePods(3, "batch", "1", "1Gi", label("app", "batch"), spread(v1.LabelInstanceCPU, 1, true, web)),
			makePods(1, "free", "1", "1Gi", label("app", "free")),
		),
		NodePools: []*NodePool{makePool("default", cpuCatalog())},
	}
	plan, err := Solve(context.Background(), snap, WithMaxChoices(1))
	if err != nil {
		t.Fatal(err)
	}
	if errs := validate(snap, plan); len(errs) > 0 {
		t.Fatalf("solved plan: %v", errs)
	}
	widened := 0
	for _, n := range plan.NewNodes {
		first := n.Choices[0]
		for _, it := range snap.NodePools[0].InstanceTypes {
			if it.Name != first.InstanceType.Name {
				n.Choices = append(n.Choices, Choice{InstanceType: it, Offering: first.Offering})
				widened++
				break
			}
		}
	}
	errs := validate(snap, plan)
	got := strings.Join(errs, "\n")
	if !strings.Contains(got, "a rule at "+v1.LabelInstanceCPU+" constrains") {
		t.Errorf("%d nodes given a fallback of another size; violations:\n%s", widened, got)
	}
	for _, e := range errs {
		if strings.Contains(e, "fallbacks") && !strings.Contains(e, v1.LabelInstanceCPU) {
			t.Errorf("unexpected: %s", e)
		}
	}
}
