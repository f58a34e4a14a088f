package cloudprovider

import (
	"context"
	"time"
)

// InterruptionKind is why the cloud is taking (or may take) a machine away.
type InterruptionKind string

// Interruption kinds, provider-neutral.
const (
	InterruptionSpotReclaim          InterruptionKind = "SpotReclaim"
	InterruptionRebalanceHint        InterruptionKind = "RebalanceHint"
	InterruptionScheduledMaintenance InterruptionKind = "ScheduledMaintenance"
	InterruptionInstanceStopped      InterruptionKind = "InstanceStopped"
	InterruptionReservationReclaim   InterruptionKind = "ReservationReclaim"
)

// InterruptionEvent is one notice for one machine.
type InterruptionEvent struct {
	ProviderID string
	Kind       InterruptionKind
	// Deadline is when the machine goes away; zero when the notice is only a hint.
	Deadline time.Time
	Message  string
	// Ack is called once the event is handled, so a queue-backed source can
	// delete the message. It may be called again for the same event (an
	// event handled again after a failure): a source counts that once. May
	// be nil.
	Ack func(context.Context) error
}

// InterruptionSource delivers interruption events until ctx is done.
type InterruptionSource interface {
	Interruptions(ctx context.Context) (<-chan InterruptionEvent, error)
}

// ClientToken is the idempotency token for launching claimName/claimUID: the
// same claim always yields the same token, so a retried launch after a crash
// finds the first machine instead of creating a second.
func ClientToken(claimName, claimUID string) string {
	if claimUID == "" {
		return claimName
	}
	return claimName + "-" + claimUID
}
