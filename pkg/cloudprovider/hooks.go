package cloudprovider

import (
	"context"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Optional hooks. A provider implements the small interfaces below only for
// what its cloud can do; the core asks through Capabilities and treats a
// missing hook as "not supported", never as an error.

// DriftChecker is implemented by providers that can tell whether a machine is
// out of date with its node class: an image, subnet or security group (or the
// cloud's equivalents) that changed since the machine was launched. Drift
// against the NodePool (requirements, labels, taints) is the core's job; this
// hook only reports what the core cannot see.
type DriftChecker interface {
	// IsDrifted returns why the claim's machine no longer matches its node
	// class, or "" when it matches. A claim whose node class cannot be read is
	// an error, not drift: a missing object must not roll the fleet.
	IsDrifted(ctx context.Context, claim *v1.NodeClaim) (DriftReason, error)
}

// DriftReason is a short, stable, machine-readable cause such as "ImageDrift"
// or "SubnetDrift"; the NodeClaim's Drifted condition carries it as its reason.
type DriftReason string

// Capabilities says which optional hooks a provider has.
type Capabilities struct {
	// Drift: the provider implements DriftChecker.
	Drift bool
	// Placement: Create honours spec.placement, launching claims of one
	// placement group into one placement domain. Which instance types can be
	// placed is said per type by InstanceType.Placement.
	Placement bool
}

// PlacementHonourer is implemented by providers whose Create honours a
// claim's spec.placement. It has no methods beyond the marker, because the
// request travels in the NodeClaim itself: the decision is durable and a
// retried launch after a crash lands in the same placement domain.
type PlacementHonourer interface {
	HonoursPlacement() bool
}

// CapabilitiesOf reports the optional hooks cp implements.
func CapabilitiesOf(cp CloudProvider) Capabilities {
	var c Capabilities
	_, c.Drift = cp.(DriftChecker)
	if p, ok := cp.(PlacementHonourer); ok {
		c.Placement = p.HonoursPlacement()
	}
	return c
}
