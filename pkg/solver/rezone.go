package solver

import (
	"context"
	"maps"
	"runtime"
	"slices"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// rezone packs each zone's share of the plan again on its own: the new
// nodes of a zone, with their pods held to it, solved as a snapshot of
// their own. The LP that guides packing has no zones, so its quotas follow
// the whole demand's mix; a zone holds only its share of the zone-spread
// apps (and lacks the types some zones offer), and its own LP fits that
// share better: 0.3-3% cheaper per zone on the large scenarios, most where
// the zone lacks the cheap family the guide buys. A share's new packing is
// kept only when it is cheaper and places every pod, so the plan is never
// worse. A zone whose share holds more than rezoneMaxShare of the pods is
// left as it is: it costs about a whole solve again, and where one zone
// holds most pods its share came out dearer.
//
// Why the result is still a valid plan. Every pod stays in its zone, so
// every zone-level count (spread, affinity) is what the plan had. What a
// zone's share is solved without is left out of it: nodes of gangs, of
// pools with limits (the other zones' machines count against them), pods
// with rules on other topology keys or counted at them by others' rules,
// and zones where such a left-out node holds a reservation (the share
// could take it twice). Commitments span zones, so a snapshot with any is
// not rezoned. Existing nodes are left out too: a new node holds none of
// their pods, and the solver's hostname rules ask only of each new node
// itself. Shares are disjoint, so they are solved at once.
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
	fixed := map[*corev1.Pod]bool{} // pods that stay on the nodes they were packed onto
	for _, sh := range m.shapes[:m.pending] {
		if sh.gang != "" || !countedOnlyByZone(sh) {
			for _, p := range sh.pods {
				fixed[p] = true
			}
		}
	}
	// The zones' solves share how each pool buys each type, not the pods.
	types := newTypesOnlyCache(snap.DaemonSetPods)
	type share struct {
		zone string
		in   []int // indexes of plan.NewNodes packed again
		was  float64
		plan *Plan // the share packed again, its pods the plan's own; nil: kept as it was
	}
	var shares []*share
	for _, zone := range m.zones {
		var in, out []int // indexes of plan.NewNodes in zone that are packed again, and left
		pods := 0
		for i, n := range plan.NewNodes {
			if n.Choices[0].Offering.Zone != zone {
				continue
			}
			if unlimited[n.NodePool] && !slices.ContainsFunc(n.Pods, func(p *corev1.Pod) bool {
				return fixed[p] || len(p.Spec.ResourceClaims) > 0
			}) {
				in = append(in, i)
				pods += len(n.Pods)
			} else {
				out = append(out, i)
			}
		}
		if len(in) < 2 || float64(pods) > rezoneMaxShare*float64(len(snap.Pods)) || slices.ContainsFunc(out, func(i int) bool {
			return plan.NewNodes[i].Choices[0].Offering.CapacityType == v1.CapacityTypeReserved
		}) {
			continue
		}
		sh := &share{zone: zone, in: in}
		for _, i := range in {
			sh.was += plan.NewNodes[i].PricePerHour()
		}
		shares = append(shares, sh)
	}
	// Shares are disjoint, so they are solved at once and each is judged
	// on its own; the plan is assembled in zone order, as if one by one.
	o.share, o.stats = true, nil
	grp, gctx := errgroup.WithContext(ctx)
	grp.SetLimit(runtime.GOMAXPROCS(0))
	for _, sh := range shares {
		grp.Go(func() error {
			// The copies are made here, so only the shares being solved hold theirs.
			sub := &Snapshot{NodePools: pools, DaemonSetPods: snap.DaemonSetPods, Gangs: snap.Gangs, Types: types}
			orig := map[*corev1.Pod]*corev1.Pod{}
			for _, i := range sh.in {
				for _, p := range plan.NewNodes[i].Pods {
					cp := pinnedTo(p, sh.zone)
					orig[cp] = p
					sub.Pods = append(sub.Pods, cp)
				}
			}
			o := o
			o.shareWas = sh.was
			p, err := solve(gctx, sub, o)
			if err != nil || len(p.Unschedulable) > 0 || len(p.Bindings) > 0 || p.CostPerHour >= sh.was-1e-9 {
				return err
			}
			for _, n := range p.NewNodes {
				for k, pod := range n.Pods {
					n.Pods[k] = orig[pod]
				}
			}
			sh.plan = p
			return nil
		})
	}
	if err := grp.Wait(); err != nil {
		return nil, err
	}
	replaced := make([]bool, len(plan.NewNodes))
	for _, sh := range shares {
		if sh.plan != nil {
			for _, i := range sh.in {
				replaced[i] = true
			}
		}
	}
	next := &Plan{Bindings: plan.Bindings, Unschedulable: plan.Unschedulable}
	for i, n := range plan.NewNodes {
		if !replaced[i] {
			next.NewNodes = append(next.NewNodes, n)
			next.CostPerHour += n.PricePerHour()
		}
	}
	for _, sh := range shares {
		if sh.plan == nil {
			continue
		}
		for _, n := range sh.plan.NewNodes {
			next.NewNodes = append(next.NewNodes, n)
			next.CostPerHour += n.PricePerHour()
		}
	}
	return next, nil
}

// rezoneMaxShare is the largest part of the snapshot's pods a zone's share
// may hold to be packed again.
const rezoneMaxShare = 0.4

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
		if np == nil {
			continue
		}
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
