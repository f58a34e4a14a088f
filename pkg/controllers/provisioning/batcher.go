package provisioning

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// Batcher turns a stream of "a pod needs a node" triggers into batches: a
// batch closes once no trigger arrived for the idle window, or when the max
// window since its first trigger has passed, so a steady trickle of pods still
// gets decided. Larger batches pack better; the max bounds the latency.
type Batcher struct {
	clock   clock.Clock
	idle    time.Duration
	max     time.Duration
	trigger chan struct{}
	poke    chan struct{}
	// took, when set, is called once the open batch has taken a trigger or
	// a poke; tests use it to step a fake clock only after that.
	took func()
}

// NewBatcher returns a Batcher with the given windows.
func NewBatcher(clk clock.Clock, idle, max time.Duration) *Batcher {
	return &Batcher{clock: clk, idle: idle, max: max, trigger: make(chan struct{}, 1), poke: make(chan struct{}, 1)}
}

// Trigger opens a batch, or extends the idle window of the open one. It never blocks.
func (b *Batcher) Trigger() {
	select {
	case b.trigger <- struct{}{}:
	default:
	}
}

// Poke opens a batch if none is open, and leaves an open one's idle window
// alone. It is for news about pods already waiting, such as the scheduler
// rewriting why one is unschedulable each time a node joins: those brought
// no new demand, and extending the window on each kept a busy cluster's
// batches open for the whole max window. It never blocks.
func (b *Batcher) Poke() {
	select {
	case b.poke <- struct{}{}:
	default:
	}
}

// Wait blocks until a batch has opened and closed, and returns when it
// opened. It returns false when ctx ends first.
func (b *Batcher) Wait(ctx context.Context) (opened time.Time, ok bool) {
	select {
	case <-ctx.Done():
		return time.Time{}, false
	case <-b.trigger:
	case <-b.poke:
	}
	opened = b.clock.Now()
	maxTimer := b.clock.NewTimer(b.max)
	defer maxTimer.Stop()
	idleTimer := b.clock.NewTimer(b.idle)
	defer idleTimer.Stop()
	for {
		select {
		case <-ctx.Done():
			return time.Time{}, false
		case <-b.trigger:
			if !idleTimer.Stop() {
				// Drain a fire that raced with the trigger so Reset starts clean.
				select {
				case <-idleTimer.C():
				default:
				}
			}
			idleTimer.Reset(b.idle)
			if b.took != nil {
				b.took()
			}
		case <-b.poke:
			// The open batch serves it.
			if b.took != nil {
				b.took()
			}
		case <-idleTimer.C():
			return opened, true
		case <-maxTimer.C():
			return opened, true
		}
	}
}
