package cloudprovider

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// DefaultUnavailableTTL is how long an offering that reported insufficient
// capacity is skipped. Capacity comes back in minutes, not seconds.
const DefaultUnavailableTTL = 3 * time.Minute

// UnavailableOfferings remembers capacity pools that recently had no capacity,
// so the solver stops choosing them for a while. Providers own one and apply
// it in InstanceTypes; it is safe for concurrent use.
type UnavailableOfferings struct {
	clock clock.Clock
	ttl   time.Duration
	mu    sync.RWMutex
	until map[OfferingID]time.Time
}

// NewUnavailableOfferings returns an empty cache whose entries last ttl.
func NewUnavailableOfferings(clk clock.Clock, ttl time.Duration) *UnavailableOfferings {
	return &UnavailableOfferings{clock: clk, ttl: ttl, until: map[OfferingID]time.Time{}}
}

// MarkUnavailable records that these pools had no capacity just now.
func (u *UnavailableOfferings) MarkUnavailable(ids ...OfferingID) {
	u.MarkUnavailableFor(u.ttl, ids...)
}

// MarkUnavailableFor records these pools as unavailable for ttl, for clouds
// whose errors say how long a shortage lasts (a SKU withdrawn from a zone
// outlasts a momentary stockout). An entry is never shortened: a later,
// generic mark must not undo a longer, more specific one.
func (u *UnavailableOfferings) MarkUnavailableFor(ttl time.Duration, ids ...OfferingID) {
	u.mu.Lock()
	defer u.mu.Unlock()
	expiry := u.clock.Now().Add(ttl)
	for _, id := range ids {
		if cur, ok := u.until[id]; !ok || cur.Before(expiry) {
			u.until[id] = expiry
		}
	}
}

// IsUnavailable reports whether the pool is still within its unavailable window.
func (u *UnavailableOfferings) IsUnavailable(id OfferingID) bool {
	u.mu.RLock()
	expiry, ok := u.until[id]
	u.mu.RUnlock()
	if !ok {
		return false
	}
	if u.clock.Now().Before(expiry) {
		return true
	}
	u.mu.Lock()
	if e, ok := u.until[id]; ok && !u.clock.Now().Before(e) {
		delete(u.until, id)
	}
	u.mu.Unlock()
	return false
}

// Apply marks the instance types' offerings that are in the cache unavailable, in place.
func (u *UnavailableOfferings) Apply(its []*InstanceType) {
	for _, it := range its {
		for i := range it.Offerings {
			if u.IsUnavailable(it.Offerings[i].ID(it.Name)) {
				it.Offerings[i].Available = false
			}
		}
	}
}
