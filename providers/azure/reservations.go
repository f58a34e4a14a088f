package azure

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// reservation is one capacity reservation of a group: a size in a zone, how
// many VMs it holds and how many it has left.
type reservation struct {
	Size      string
	Zone      string // zone label
	Available int
}

// reservationSet is a capacity reservation group's reservations as last read.
type reservationSet struct {
	fetched time.Time
	items   []reservation
}

// addReserved adds one reserved offering per reservation of the group whose
// size is in its, priced at the on-demand price / 10,000,000 (already paid
// for) and targeted at launch through the group's ID.
func (p *Provider) addReserved(ctx context.Context, its []*cloudprovider.InstanceType, group string) {
	items, err := p.reservationsOf(ctx, group)
	if err != nil {
		// Stale or guessed counts would launch outside the reservation; offer none.
		log.FromContext(ctx).WithName(Name).Error(err, "listing capacity reservations; offering no reserved capacity until it succeeds", "group", group)
		return
	}
	byName := map[string]*cloudprovider.InstanceType{}
	for _, it := range its {
		byName[it.Name] = it
	}
	for _, r := range items {
		it, ok := byName[r.Size]
		if !ok {
			continue
		}
		od := 0.0
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeOnDemand && (o.Zone == r.Zone || od == 0) {
				od = o.PricePerHour
			}
		}
		it.Offerings = append(it.Offerings, cloudprovider.Offering{
			Zone: r.Zone, CapacityType: v1.CapacityTypeReserved, PricePerHour: od / reservedPriceDivisor,
			Available: r.Available > 0, ReservationID: group, ReservedCount: r.Available,
		})
	}
}

// reservationsOf returns the group's reservations, read at most once per
// ReservationTTL.
func (p *Provider) reservationsOf(ctx context.Context, group string) ([]reservation, error) {
	key := strings.ToLower(group)
	p.mu.Lock()
	set, ok := p.reservations[key]
	p.mu.Unlock()
	if ok && p.clock.Since(set.fetched) < p.opts.ReservationTTL {
		return set.items, nil
	}
	items, err := p.fetchReservations(ctx, group)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.reservations[key] = &reservationSet{fetched: p.clock.Now(), items: items}
	p.mu.Unlock()
	return items, nil
}

// invalidateReservations makes the next InstanceTypes read the group again,
// after a launch used one of its VMs.
func (p *Provider) invalidateReservations(group string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.reservations, strings.ToLower(group))
}

func (p *Provider) fetchReservations(ctx context.Context, group string) ([]reservation, error) {
	if p.opts.Reservations == nil {
		return nil, fmt.Errorf("capacity reservation group %s: no capacity reservation client configured", group)
	}
	rid, err := arm.ParseResourceID(group)
	if err != nil {
		return nil, fmt.Errorf("capacity reservation group %q: %w", group, err)
	}
	var out []reservation
	pager := p.opts.Reservations.NewListByCapacityReservationGroupPager(rid.ResourceGroupName, rid.Name, nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing capacity reservations of %s: %w", rid.Name, err)
		}
		for _, cr := range page.Value {
			if cr == nil || cr.SKU == nil || cr.SKU.Name == nil {
				continue
			}
			if cr.Properties != nil && cr.Properties.ProvisioningState != nil && !strings.EqualFold(*cr.Properties.ProvisioningState, "Succeeded") {
				continue
			}
			zone := noZone
			if len(cr.Zones) > 0 && deref(cr.Zones[0]) != "" {
				zone = zoneLabel(p.opts.Location, deref(cr.Zones[0]))
			}
			used := 0
			if cr.Properties != nil {
				used = len(cr.Properties.VirtualMachinesAssociated)
			}
			out = append(out, reservation{Size: *cr.SKU.Name, Zone: zone, Available: max(int(deref(cr.SKU.Capacity))-used, 0)})
		}
	}
	return out, nil
}
