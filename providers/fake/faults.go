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

// ClearInsufficientCapacity ends every injected capacity error. Pools that
// already failed a launch stay in the unavailable-offerings cache until
// their TTL passes, as with a real cloud.
func (c *Cloud) ClearInsufficientCapacity() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.failing)
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

// SetImage changes the image new machines boot, as a node class pointing at
// a new image would. Running machines keep theirs and report ImageDrift.
func (c *Cloud) SetImage(id string) error {
	if id == "" {
		return fmt.Errorf("fake cloud: set image: the image ID is empty")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.image = id
	return nil
}

func (c *Cloud) currentImage() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.image
}

// DriftImage is the DriftReason of a machine running an image other than the current one.
const DriftImage cloudprovider.DriftReason = "ImageDrift"

// IsDrifted implements cloudprovider.DriftChecker: a launched machine that
// booted an image other than the current one has drifted.
func (c *Cloud) IsDrifted(_ context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	if claim.Status.ImageID == "" || claim.Status.ImageID == c.currentImage() {
		return "", nil
	}
	return DriftImage, nil
}
