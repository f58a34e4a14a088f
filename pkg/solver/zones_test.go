package solver

import (
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"

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
