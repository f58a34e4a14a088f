package solver

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// podGangs maps each pending pod of a gang to the gang's name.
func (m *model) podGangs() map[*corev1.Pod]string {
	out := map[*corev1.Pod]string{}
	for _, s := range m.shapes[:m.pending] {
		if s.gang != "" {
			for _, p := range s.pods {
				out[p] = s.gang
			}
		}
	}
	return out
}

// keepGangsWhole withdraws each gang that the finished plan holds only in
// part. Packing places a gang all-or-nothing, but a node can still fall out
// when the plan is finished (its pool's minValues cannot be met, a
// reservation is used up), taking some of the gang's pods with it; buying
// the rest would start half a training job. The withdrawn pods are reported
// unschedulable with the reason of the first that was, and nodes left empty
// are dropped.
func keepGangsWhole(plan *Plan, gangOf map[*corev1.Pod]string) {
	why := map[string]string{}
	for _, u := range plan.Unschedulable {
		if g := gangOf[u.Pod]; g != "" && why[g] == "" {
			why[g] = fmt.Sprintf("pod group %s cannot be planned whole: pod %s: %s", g, u.Pod.Name, u.Reason)
		}
	}
	if len(why) == 0 {
		return
	}
	broken := func(p *corev1.Pod) bool { return why[gangOf[p]] != "" }
	withdraw := func(p *corev1.Pod) {
		plan.Unschedulable = append(plan.Unschedulable, Unschedulable{Pod: p, Reason: why[gangOf[p]]})
	}
	bindings := plan.Bindings[:0:0]
	for _, b := range plan.Bindings {
		if broken(b.Pod) {
			withdraw(b.Pod)
			continue
		}
		bindings = append(bindings, b)
	}
	plan.Bindings = bindings
	nodes := plan.NewNodes[:0:0]
	for _, n := range plan.NewNodes {
		var kept []*corev1.Pod
		requests := scheduling.FromList(n.Requests)
		for _, p := range n.Pods {
			if broken(p) {
				withdraw(p)
				requests = requests.Sub(scheduling.PodRequests(p))
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) == 0 {
			plan.CostPerHour -= n.PricePerHour()
			continue
		}
		if len(kept) < len(n.Pods) {
			n.Pods, n.Requests = kept, requests.ToList()
		}
		nodes = append(nodes, n)
	}
	plan.NewNodes = nodes
}

// assignGangs marks each new node with the gang whose pods it holds (the
// one with the most pods on it, by name on a tie), so its machines are
// launched and released together. A gang planned onto two or more new nodes
// whose first choices can all share a placement domain gets a placement
// group: its nodes keep only choices that can join it, so a launch-time
// fallback never places half a gang outside the domain.
func assignGangs(nodes []*NewNode, gangOf map[*corev1.Pod]string) {
	if len(gangOf) == 0 {
		return
	}
	byGang := map[string][]*NewNode{}
	for _, n := range nodes {
		count := map[string]int{}
		for _, p := range n.Pods {
			if g := gangOf[p]; g != "" {
				count[g]++
			}
		}
		for g, c := range count {
			if c > count[n.Gang] || (c == count[n.Gang] && g < n.Gang) {
				n.Gang = g
			}
		}
		if n.Gang != "" {
			byGang[n.Gang] = append(byGang[n.Gang], n)
		}
	}
	for g, ns := range byGang {
		if len(ns) < 2 {
			continue
		}
		placeable := true
		for _, n := range ns {
			placeable = placeable && len(n.Choices) > 0 && n.Choices[0].InstanceType.Placement
		}
		if !placeable {
			continue
		}
		group := PlacementGroupName(g, ns[0].Choices[0].Offering.Zone)
		for _, n := range ns {
			kept := n.Choices[:0:0]
			for _, c := range n.Choices {
				if c.InstanceType.Placement && c.Offering.Zone == n.Choices[0].Offering.Zone {
					kept = append(kept, c)
				}
			}
			n.Choices = kept
			n.PlacementGroup = group
		}
	}
}

// PlacementGroupName is the placement group of a gang's machines in a zone:
// readable, a valid DNS label of at most 63 characters, and distinct per
// gang and zone, so a gang re-planned into another zone never reuses a
// domain pinned to the first.
func PlacementGroupName(gang, zone string) string { return labelSafe(gang, gang+"\x00"+zone) }

// GangLabelValue is a gang's namespace/name as a label value (at most 63
// characters, readable, unique by a hash suffix).
func GangLabelValue(gang string) string { return labelSafe(gang, gang) }

func labelSafe(readable, unique string) string {
	sum := sha256.Sum256([]byte(unique))
	suffix := hex.EncodeToString(sum[:])[:10]
	var b strings.Builder
	for _, r := range strings.ToLower(readable) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	prefix := strings.Trim(b.String(), "-")
	if max := 63 - len(suffix) - 1; len(prefix) > max {
		prefix = strings.TrimRight(prefix[:max], "-")
	}
	if prefix == "" {
		return "gang-" + suffix
	}
	return prefix + "-" + suffix
}
