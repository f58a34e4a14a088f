package gcp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"

	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
)

// reservation is one ready specific-SKU reservation in the region.
type reservation struct {
	Name         string
	Zone         string
	InstanceType string // Stowage's name: n1-standard-8-t4x1 for attached GPUs
	Available    int    // count minus in use
	// SpecificOnly reservations are consumed only by VMs that name them.
	SpecificOnly bool
}

// fetchReservations lists the project's ready reservations in the region.
func fetchReservations(ctx context.Context, c *Clients, project, region string) ([]reservation, error) {
	var out []reservation
	it := c.Reservations.AggregatedList(ctx, &computepb.AggregatedListReservationsRequest{Project: project})
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("listing reservations: %w", err)
		}
		zone := strings.TrimPrefix(pair.Key, "zones/")
		if !strings.HasPrefix(zone, region+"-") {
			continue
		}
		for _, r := range pair.Value.GetReservations() {
			sr := r.GetSpecificReservation()
			if r.GetStatus() != "READY" || sr == nil || sr.GetInstanceProperties().GetMachineType() == "" {
				continue
			}
			props := sr.GetInstanceProperties()
			name := props.GetMachineType()
			if ga := props.GetGuestAccelerators(); len(ga) == 1 {
				name = attachedName(name, ga[0].GetAcceleratorType(), int(ga[0].GetAcceleratorCount()))
			}
			out = append(out, reservation{
				Name: r.GetName(), Zone: zone, InstanceType: name,
				Available:    int(max(0, sr.GetCount()-sr.GetInUseCount())),
				SpecificOnly: r.GetSpecificReservationRequired(),
			})
		}
	}
	slices.SortFunc(out, func(a, b reservation) int { return strings.Compare(a.Zone+a.Name, b.Zone+b.Name) })
	return out, nil
}

// consumes says whether a node class's reservation policy takes r: Specific
// only the named ones, Any those open to any VM, None none.
func consumes(policy gcpv1.Reservations, r reservation) bool {
	switch policy.Consume {
	case gcpv1.ReservationsSpecific:
		return slices.Contains(policy.Names, r.Name)
	case gcpv1.ReservationsNone:
		return false
	default:
		return !r.SpecificOnly
	}
}
