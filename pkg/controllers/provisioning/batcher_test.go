package provisioning

import (
	"context"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// waitForTimers blocks until the batcher has armed its timers, so stepping
// the fake clock cannot race with it.
func waitForTimers(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
}

func TestBatcher(t *testing.T) {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	type result struct {
		opened time.Time
		ok     bool
	}
	run := func(b *Batcher, ctx context.Context) <-chan result {
		ch := make(chan result, 1)
		go func() {
			opened, ok := b.Wait(ctx)
			ch <- result{opened, ok}
		}()
		return ch
	}
	assertOpen := func(t *testing.T, ch <-chan result) {
		t.Helper()
		select {
		case r := <-ch:
			t.Fatalf("batch closed early: %+v", r)
		default:
		}
	}
	// assertClosed waits a bounded real time, so a batch that wrongly stays
	// open fails the test instead of hanging it.
	assertClosed := func(t *testing.T, ch <-chan result, wantOpened time.Time) {
		t.Helper()
		select {
		case r := <-ch:
			if !r.ok || !r.opened.Equal(wantOpened) {
				t.Fatalf("Wait() = %v, %v; want %v, true", r.opened, r.ok, wantOpened)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("batch still open after the fake clock passed its window")
		}
	}

	t.Run("closes after the idle window", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		b := NewBatcher(clk, time.Second, 10*time.Second)
		b.Trigger()
		ch := run(b, context.Background())
		waitForTimers(t, clk)
		clk.Step(999 * time.Millisecond)
		assertOpen(t, ch)
		clk.Step(time.Millisecond)
		assertClosed(t, ch, start)
	})

	t.Run("triggers extend the idle window up to the max", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		b := NewBatcher(clk, time.Second, 3*time.Second)
		took := make(chan struct{})
		b.took = func() { took <- struct{}{} }
		b.Trigger()
		ch := run(b, context.Background())
		waitForTimers(t, clk)
		for i := 0; i < 5; i++ {
			clk.Step(600 * time.Millisecond)
			if i < 4 {
				b.Trigger()
				<-took
				assertOpen(t, ch)
			}
		}
		// 3s have passed since the batch opened.
		assertClosed(t, ch, start)
	})

	t.Run("a poke opens a batch but does not extend one", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		b := NewBatcher(clk, time.Second, 10*time.Second)
		took := make(chan struct{})
		b.took = func() { took <- struct{}{} }
		b.Poke()
		ch := run(b, context.Background())
		waitForTimers(t, clk)
		clk.Step(600 * time.Millisecond)
		b.Poke()
		<-took // taken by the open batch, not left to open the next one
		clk.Step(400 * time.Millisecond)
		assertClosed(t, ch, start) // a second after it opened: the poke did not extend it
		if len(b.trigger)+len(b.poke) != 0 {
			t.Fatal("a poke served by the closed batch is still pending")
		}
	})

	t.Run("context cancellation ends the wait", func(t *testing.T) {
		clk := clocktesting.NewFakeClock(start)
		b := NewBatcher(clk, time.Second, 3*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		ch := run(b, ctx)
		cancel()
		if r := <-ch; r.ok {
			t.Fatalf("Wait() ok after cancel")
		}
	})
}
