// Package catalog is what the AWS, GCP and Azure providers share about their
// instance-type catalogs: the built-in catalog they fall back on (Static),
// live types built as pricing builds its own (InstanceTypes), where the
// offering prices in use came from and the gauge that counts them
// (PriceSource, PriceSources), and the NodeClaim facts a catalog type gives.
// Only providers import it; it depends on pricing and pkg/, never on them.
package catalog

import (
	"maps"
	"slices"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// Find returns the named type from the live catalog, else from the built-in
// one (nil when not loaded), else nil.
func Find(name string, live []*cloudprovider.InstanceType, static *pricing.Catalog) *cloudprovider.InstanceType {
	for _, it := range live {
		if it.Name == name {
			return it
		}
	}
	if it, ok := pricing.Lookup(static, name); ok {
		return it
	}
	return nil
}

// FillCapacity sets a claim's instance-type, zone and capacity-type labels
// from its status and, when its type is known (it is not nil), the type's
// labels, capacity and allocatable.
func FillCapacity(claim *v1.NodeClaim, instanceType string, it *cloudprovider.InstanceType) {
	if claim.Labels == nil {
		claim.Labels = map[string]string{}
	}
	claim.Labels[v1.LabelInstanceType] = instanceType
	claim.Labels[v1.LabelZone] = claim.Status.Zone
	claim.Labels[v1.LabelCapacityType] = claim.Status.CapacityType
	if it == nil {
		return
	}
	maps.Copy(claim.Labels, it.Labels)
	claim.Status.Capacity = it.Capacity.DeepCopy()
	claim.Status.Allocatable = it.Allocatable()
}

// Zones are the zones the types have offerings in, sorted.
func Zones(its []*cloudprovider.InstanceType) []string {
	zones := map[string]bool{}
	for _, it := range its {
		for _, o := range it.Offerings {
			zones[o.Zone] = true
		}
	}
	return slices.Sorted(maps.Keys(zones))
}

// PlannedPrice is the price the claim's plan gave the offering its machine
// launched as: the first of its choices of that type, zone and capacity
// type. A commitment's covered choice ($0.0001/h) comes before the same
// offering at list price and is the one the provider tried first, so a
// covered machine records its marginal price whether or not the list-price
// choice made the claim's list. "" when no choice matches.
func PlannedPrice(claim *v1.NodeClaim, instanceType, zone, capacityType string) string {
	if claim == nil {
		return ""
	}
	for _, c := range claim.Spec.Offerings {
		if c.InstanceType == instanceType && c.Zone == zone && c.CapacityType == capacityType {
			return c.PricePerHour
		}
	}
	return ""
}
