package solver

import (
	"context"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// rezone packs again, one zone at a time, the new nodes of zones where the
// plan mostly buys types the LP guide does not. The guide has no zones:
// where a zone lacks the types it buys (a hard zone spread sends each app's
// share of pods to a zone without the cheap family), its quotas say nothing
// and the packing there is first fit's. Solved alone, with its pods held to
// the zone, such a zone's share gets a guide of its own. A zone's new
// packing is kept only when it is cheaper and places every pod, so the plan
// is never worse.
//
// Why the result is still a valid plan. Every pod stays in its zone, so
// every zone-level count (spread, affinity) is what the plan had. What the
// zone's share is solved without is left out of it: nodes of gangs, of
// pools with limits (the other zones' machines count against them), pods
// with rules on other topology keys or counted at them by others' rules,
// and zones where such a left-out node holds a reservation (the share
// could take it twice). Commitments span
// zones, so a snapshot with any is not rezoned. Existing nodes are left
// out too: a new node holds none of their pods, and the solver's hostname
// rules ask only of each new node itself.
func rezone(ctx context.Context, snap *Snapshot, m *model, g *lpGuide, plan *Plan, o options) (*Plan, error) {
	if g == nil || m.zoneBits == nil || len(plan.Unschedulable) > 0 || hasCommitments(snap) {
		return plan, nil
	}
	pools := make([]*NodePool, 0, len(snap.NodePools))
	unlimited := map[string]bool{}
	for _, np := range snap.NodePools {
		if len(np.Spec.Limits) == 0 {
			pools = append(pools, np)
			unlimited[np.Name] = true
		}
	}
	guided := map[[2]string]bool{} // pool and instance type names the guide buys
	for _, mc := range g.machines {
		guided[[2]string{m.pools[mc.pool].name, m.pools[mc.pool].types[mc.typ].it.Name}] = true
	}
	fixed := map[*corev1.Pod]bool{} // pods that stay on the nodes they were packed onto
	for _, sh := range m.shapes[:m.pending] {
		if sh.gang != "" || !countedOnlyByZone(sh) {
			for _, p := range sh.pods {
				fixed[p] = true
			}
		}
	}
	for _, zone := range m.zones {
		var in, out []int // indexes of plan.NewNodes in zone that are packed again, and left
		for i, n := range plan.NewNodes {
			if n.Choices[0].Offering.Zone != zone {
				continue
			}
			if unlimited[n.NodePool] && !slices.ContainsFunc(n.Pods, func(p *corev1.Pod) bool {
				return fixed[p] || len(p.Spec.ResourceClaims) > 0
			}) {
				in = append(in, i)
			} else {
				out = append(out, i)
			}
		}
		if len(in) < 2 || slices.ContainsFunc(out, func(i int) bool {
			return plan.NewNodes[i].Choices[0].Offering.CapacityType == v1.CapacityTypeReserved
		}) {
			continue
		}
		was, onGuided := 0.0, 0.0
		for _, i := range in {
			n := plan.NewNodes[i]
			was += n.PricePerHour()
			if guided[[2]string{n.NodePool, n.Choices[0].InstanceType.Name}] {
				onGuided += n.PricePerHour()
			}
		}
		if onGuided >= rezoneGuidedShare*was {
			continue
		}
		sub := &Snapshot{NodePools: pools, DaemonSetPods: snap.DaemonSetPods, Gangs: snap.Gangs, Types: snap.Types}
		original := map[*corev1.Pod]*corev1.Pod{}
		for _, i := range in {
			for _, p := range plan.NewNodes[i].Pods {
				cp := pinnedTo(p, zone)
				original[cp] = p
				sub.Pods = append(sub.Pods, cp)
			}
		}
		o.noRezone, o.noImprove = true, true
		o.stats = nil
		subPlan, err := solve(ctx, sub, o)
		if err != nil {
			return nil, err
		}
		if len(subPlan.Unschedulable) > 0 || len(subPlan.Bindings) > 0 || subPlan.CostPerHour >= was-1e-9 {
			continue
		}
		replaced := make([]bool, len(plan.NewNodes))
		for _, i := range in {
			replaced[i] = true
		}
		next := &Plan{Bindings: plan.Bindings, Unschedulable: plan.Unschedulable}
		for i, n := range plan.NewNodes {
			if !replaced[i] {
				next.NewNodes = append(next.NewNodes, n)
				next.CostPerHour += n.PricePerHour()
			}
		}
		for _, n := range subPlan.NewNodes {
			for k, p := range n.Pods {
				n.Pods[k] = original[p]
			}
			next.NewNodes = append(next.NewNodes, n)
			next.CostPerHour += n.PricePerHour()
		}
		plan = next
	}
	return plan, nil
}

// rezoneGuidedShare is the share of a zone's new nodes' cost on types the
// guide buys above which the zone is left as it is.
const rezoneGuidedShare = 0.5

// countedOnlyByZone reports whether the zone is the only topology key
// (besides the hostname, whose rules hold per node) that the shape's own
// rules use, at any relaxation level, or that other pods' rules count it
// at: pinning keeps zone counts, and no other count may move.
func countedOnlyByZone(sh *shape) bool {
	zoneOnly := func(keys []string) bool {
		return !slices.ContainsFunc(keys, func(k string) bool { return k != v1.LabelZone })
	}
	if !zoneOnly(sh.pinKeys) {
		return false
	}
	for _, l := range sh.levels {
		if !zoneOnly(l.keys) {
			return false
		}
	}
	return true
}

// pinnedTo is a copy of p held to zone, without its zone-level spread and
// pod (anti-)affinity terms: with every pod kept in its zone, those counts
// do not change.
func pinnedTo(p *corev1.Pod, zone string) *corev1.Pod {
	cp := *p
	cp.Spec.NodeSelector = maps.Clone(p.Spec.NodeSelector)
	if cp.Spec.NodeSelector == nil {
		cp.Spec.NodeSelector = map[string]string{}
	}
	cp.Spec.NodeSelector[v1.LabelZone] = zone
	cp.Spec.TopologySpreadConstraints = slices.DeleteFunc(slices.Clone(p.Spec.TopologySpreadConstraints),
		func(c corev1.TopologySpreadConstraint) bool { return c.TopologyKey == v1.LabelZone })
	if a := p.Spec.Affinity; a != nil && (a.PodAffinity != nil || a.PodAntiAffinity != nil) {
		cp.Spec.Affinity = a.DeepCopy()
		notZone := func(t corev1.PodAffinityTerm) bool { return t.TopologyKey == v1.LabelZone }
		notZoneW := func(t corev1.WeightedPodAffinityTerm) bool { return t.PodAffinityTerm.TopologyKey == v1.LabelZone }
		if pa := cp.Spec.Affinity.PodAffinity; pa != nil {
			pa.RequiredDuringSchedulingIgnoredDuringExecution = slices.DeleteFunc(pa.RequiredDuringSchedulingIgnoredDuringExecution, notZone)
			pa.PreferredDuringSchedulingIgnoredDuringExecution = slices.DeleteFunc(pa.PreferredDuringSchedulingIgnoredDuringExecution, notZoneW)
		}
		if pa := cp.Spec.Affinity.PodAntiAffinity; pa != nil {
			pa.RequiredDuringSchedulingIgnoredDuringExecution = slices.DeleteFunc(pa.RequiredDuringSchedulingIgnoredDuringExecution, notZone)
			pa.PreferredDuringSchedulingIgnoredDuringExecution = slices.DeleteFunc(pa.PreferredDuringSchedulingIgnoredDuringExecution, notZoneW)
		}
	}
	return &cp
}

// hasCommitments reports whether any offering draws on a commitment.
func hasCommitments(snap *Snapshot) bool {
	for _, np := range snap.NodePools {
		for _, it := range np.InstanceTypes {
			for _, o := range it.Offerings {
				if o.Commitment != "" {
					return true
				}
			}
		}
	}
	return false
}
