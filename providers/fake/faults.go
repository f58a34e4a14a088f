package fake

import (
	"context"
	"fmt"
	"time"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// InjectInsufficientCapacity makes launches in these pools fail with an
// InsufficientCapacityError until ClearInsufficientCapacity.
func (c *Cloud) InjectInsufficientCapacity(ids ...cloudprovider.OfferingID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.failing[id] = true
	}
}

// LimitCapacity lets only n more machines launch in the pool; later launches
// there fail with an InsufficientCapacityError, as when a zone runs dry
// midway through a gang. ClearInsufficientCapacity lifts the limit.
func (c *Cloud) LimitCapacity(id cloudprovider.OfferingID, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.limits[id] = max(n, 0)
}

// ClearInsufficientCapacity ends every injected capacity error and limit. Pools that
// already failed a launch stay in the unavailable-offerings cache until
// their TTL passes, as with a real cloud.
func (c *Cloud) ClearInsufficientCapacity() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.failing)
	clear(c.limits)
}

// SetPrice changes an offering's hourly price for InstanceTypes and later
// launches; running instances keep the price they were launched at.
func (c *Cloud) SetPrice(id cloudprovider.OfferingID, pricePerHour float64) error {
	if pricePerHour < 0 {
		return fmt.Errorf("fake cloud: price %v for %s is negative", pricePerHour, id)
	}
	if !c.sells(id) {
		return fmt.Errorf("fake cloud: set price: %s is neither in catalog %s/%s nor a reservation", id, c.catalog.Cloud, c.catalog.Region)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.prices[id] = pricePerHour
	return nil
}

// Interrupt announces that the machine with providerID is going away: the
// event is delivered on the channel from Interruptions. deadline is when it
// goes; zero for a hint. The fake does not take the machine itself.
func (c *Cloud) Interrupt(providerID string, kind cloudprovider.InterruptionKind, deadline time.Time) error {
	if _, err := parseProviderID(providerID); err != nil {
		return fmt.Errorf("fake cloud: interrupt: %w", err)
	}
	ev := cloudprovider.InterruptionEvent{
		ProviderID: providerID, Kind: kind, Deadline: deadline,
		Message: fmt.Sprintf("fake cloud: %s for %s", kind, providerID),
	}
	select {
	case c.events <- ev:
		return nil
	default:
		return fmt.Errorf("fake cloud: interrupt %s: %d events are waiting for a consumer", providerID, cap(c.events))
	}
}

// Interruptions delivers interruption events until ctx is done, then closes
// the channel. Events raised before the call wait for it. Use one consumer:
// concurrent callers share the events between them.
func (c *Cloud) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	out := make(chan cloudprovider.InterruptionEvent)
	go func() {
		defer close(out)
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-c.events:
				select {
				case out <- ev:
				case <-ctx.Done():
					// Keep it for the next consumer rather than lose it.
					select {
					case c.events <- ev:
					default:
					}
					return
				}
			}
		}
	}()
	return out, nil
}

// sells reports whether the offering is in the catalog or is a reservation.
func (c *Cloud) sells(id cloudprovider.OfferingID) bool {
	if id.CapacityType == v1.CapacityTypeReserved {
		for _, r := range c.reservations {
			if r.InstanceType == id.InstanceType && r.Zone == id.Zone {
				return true
			}
		}
		return false
	}
	it, ok := c.types[id.InstanceType]
	if !ok {
		return false
	}
	for _, o := range it.Offerings {
		if o.ID(it.Name) == id {
			return true
		}
	}
	return false
}
