package fake

import (
	"context"
	"fmt"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// LabelPlacementGroup on a fake machine's Node names the placement domain it
// was launched into, so tests can see that a gang shares one.
const LabelPlacementGroup = "fake.stowage.dev/placement-group"

var _ cloudprovider.PlacementHonourer = (*Cloud)(nil)

// HonoursPlacement implements cloudprovider.PlacementHonourer: Create
// launches the claims of one placement group into one zone, as a cluster
// placement group does.
func (c *Cloud) HonoursPlacement() bool { return true }

// placeable says which types can share a placement domain in the fake
// cloud: machines with accelerators, the shapes multi-node training uses.
func placeable(it *cloudprovider.InstanceType) bool { return it.GPU != nil && it.GPU.Count > 0 }

// placementZone is the zone of the group's machines, "" before the first.
// Callers hold launchMu, so two launches cannot pin a group to two zones.
func (c *Cloud) placementZone(ctx context.Context, group string) (string, error) {
	insts, err := c.listInstances(ctx)
	if err != nil {
		return "", fmt.Errorf("fake cloud: finding placement group %s: %w", group, err)
	}
	for _, inst := range insts {
		if inst.PlacementGroup == group {
			return inst.Zone, nil
		}
	}
	return "", nil
}

// placementRefusal says why the choice cannot join the claim's placement
// group, or "" when it can (or the claim asks for none).
func placementRefusal(claim *v1.NodeClaim, it *cloudprovider.InstanceType, choice v1.OfferingChoice, zone string) string {
	if claim.Spec.Placement == nil {
		return ""
	}
	group := claim.Spec.Placement.Group
	switch {
	case !placeable(it):
		return fmt.Sprintf("instance type %s cannot join placement group %s", it.Name, group)
	case zone != "" && choice.Zone != zone:
		return fmt.Sprintf("placement group %s is in zone %s, not %s", group, zone, choice.Zone)
	}
	return ""
}
