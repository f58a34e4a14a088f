package solver

import (
	"fmt"
	"maps"
	"slices"

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
			a := scheduling.FromList(alloc).Sub(scheduling.DaemonSetOverhead(snap.DaemonSetPods, scheduling.FromLabels(lbls), pool.Spec.Template.Spec.Taints))
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
		// Nodes whose pods constrain zones must keep every fallback in one zone.
		if zoneConstrained(n.Pods) {
			for _, c := range n.Choices {
				if c.Offering.Zone != first.Offering.Zone {
					fail("new node %d holds zone-constrained pods but has fallbacks in %s and %s", i, first.Offering.Zone, c.Offering.Zone)
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
	errs = append(errs, validateGangs(snap, plan, layout)...)
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

func zoneConstrained(pods []*corev1.Pod) bool {
	for _, p := range pods {
		for _, t := range p.Spec.TopologySpreadConstraints {
			if t.TopologyKey == v1.LabelZone {
				return true
			}
		}
		if a := p.Spec.Affinity; a != nil && a.PodAffinity != nil && len(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution) > 0 {
			return true
		}
		if p.Labels[v1.LabelPodGroup] != "" {
			return true
		}
	}
	return false
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
