package solver

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// TestHasOfferingMatchesTheRules checks the filtered offering test, which
// reads zone rules as bits (up to 63 zones) or by name (past that) and
// capacity types as flags, against the rules applied one offering at a
// time, on random rules, capacity types and reservations. Types offering
// only spot and on-demand take the masks per capacity type, the others
// the scan; both are met.
func TestHasOfferingMatchesTheRules(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	cts := []string{v1.CapacityTypeOnDemand, v1.CapacityTypeSpot, v1.CapacityTypeReserved, "preemptible"}
	for _, numZones := range []int{3, 70} {
		zones := make([]string, numZones)
		for i := range zones {
			zones[i] = fmt.Sprintf("zone-%02d", i)
		}
		var types []*cloudprovider.InstanceType
		for i := range 20 {
			it := makeIT(itSpec{name: fmt.Sprintf("t%d", i), cpu: 2, memGi: 4, price: 0.1, zones: []string{}})
			for range 1 + r.IntN(6) {
				o := cloudprovider.Offering{Zone: zones[r.IntN(numZones)], CapacityType: cts[r.IntN(len(cts))],
					PricePerHour: 0.1, Available: true}
				if o.CapacityType == v1.CapacityTypeReserved {
					o.ReservationID, o.ReservedCount = fmt.Sprintf("cr-%d", r.IntN(3)), 1
				}
				it.Offerings = append(it.Offerings, o)
			}
			types = append(types, it)
		}
		// One type in every zone, so all of them are known to the model.
		types = append(types, makeIT(itSpec{name: "everywhere", cpu: 2, memGi: 4, price: 0.1, noSpot: true, zones: zones}))
		m, err := newModel(&Snapshot{NodePools: []*NodePool{makePool("default", types)}})
		if err != nil {
			t.Fatal(err)
		}
		if numbered := m.zoneBits != nil; numbered != (numZones <= 63) {
			t.Fatalf("%d zones: numbered = %v", numZones, numbered)
		}
		st := newState(m, StrategyFFD)
		for k := range st.reservations {
			st.reservations[k] = r.IntN(2) // some used up
		}
		rule := func(key string, values []string) *scheduling.Requirement {
			var picked []string
			for _, v := range values {
				if r.IntN(3) == 0 {
					picked = append(picked, v)
				}
			}
			switch r.IntN(4) {
			case 0:
				return nil
			case 1:
				return scheduling.MustRequirement(key, corev1.NodeSelectorOpNotIn, picked...)
			default:
				return scheduling.MustRequirement(key, corev1.NodeSelectorOpIn, append(picked, values[r.IntN(len(values))])...)
			}
		}
		masked := 0
		for _, pt := range m.pools[0].types {
			if !pt.offSlow {
				masked++
			}
		}
		if numbered := numZones <= 63; numbered && (masked == 0 || masked == len(m.pools[0].types)) {
			t.Fatalf("%d zones: %d of %d types answer by mask; the test needs both kinds", numZones, masked, len(m.pools[0].types))
		}
		for range 500 {
			zone, ct := rule(v1.LabelZone, zones), rule(v1.LabelCapacityType, cts)
			f := st.newOfferFilter(zone, ct)
			for _, pt := range m.pools[0].types {
				want := false
				for _, o := range pt.offs {
					if (zone == nil || zone.Allows(o.Zone)) && (ct == nil || ct.Allows(o.CapacityType)) &&
						(o.CapacityType != v1.CapacityTypeReserved || st.reservations[reservationKey(pt.it.Name, o)] > 0) {
						want = true
					}
				}
				if got := st.hasOffering(pt, &f); got != want {
					t.Fatalf("%d zones, type %s, zone %v, capacity type %v: hasOffering = %v, want %v (offerings %+v)",
						numZones, pt.it.Name, zone, ct, got, want, pt.offs)
				}
			}
		}
	}
}

// A preferred node affinity must not narrow the domains a zone spread
// counts: the scheduler finds them from the required terms only. Here the
// preferred spot capacity exists in one zone, an on-demand node in another;
// piling every pod into the preferred zone leaves most of them pending.
func TestPreferredAffinityDoesNotNarrowSpreadDomains(t *testing.T) {
	web := map[string]string{"app": "web"}
	it := makeIT(itSpec{name: "c.xlarge", cpu: 4, memGi: 8, price: 0.20, zones: testZones[:1]})
	filler := makePod("full-b-filler", "1", "1Gi", label("app", "filler"))
	full := &Node{Name: "full-b", Pods: []*corev1.Pod{filler},
		Labels:      map[string]string{v1.LabelZone: testZones[1], v1.LabelHostname: "full-b", v1.LabelCapacityType: v1.CapacityTypeOnDemand},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"), corev1.ResourcePods: resource.MustParse("110")}}
	snap := &Snapshot{
		Pods: makePods(4, "web", "1", "1Gi", label("app", "web"), spread(v1.LabelZone, 1, true, web),
			preferredNodeAffinity(50, v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeSpot)),
		Nodes:     []*Node{full},
		NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{it})},
	}
	plan := solveT(t, snap)
	if errs := validate(snap, plan); len(errs) > 0 {
		t.Fatalf("violations:\n  %s\nplan:\n%s", strings.Join(errs, "\n  "), summarize(plan))
	}
	placed := len(plan.Bindings)
	for _, n := range plan.NewNodes {
		placed += len(n.Pods)
	}
	if placed != 1 {
		t.Errorf("%d web pods planned into %s; with %s a domain holding none, maxSkew 1 admits 1\n%s", placed, testZones[0], testZones[1], summarize(plan))
	}
}
