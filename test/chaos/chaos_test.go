//go:build unix

// Package chaos runs `stowage controller` as its own process against the
// local control plane and the fake cloud while everything goes wrong at once:
// the controller is SIGKILLed every 1-5 s (leader election on, short lease),
// the cloud fails launches for lack of capacity and loses launch responses,
// reclaims spot machines and changes prices, and pods arrive and leave in
// waves. Then the killing stops and the test waits for every pod to run.
// It checks what must hold whatever happened: machines = NodeClaims = Nodes,
// no machine ever bought twice for one claim, and nothing left behind once
// the claims are gone.
//
// `make test` runs a short version; `make chaos` (STOWAGE_CHAOS=long) a long
// one, and prints kills, faults, time to converge and leaks.
package chaos

import (
	"fmt"
	"os"
	"testing"
	"time"
)

// The two versions of the run.
type config struct {
	name string
	// chaos is how long kills, faults and waves go on.
	chaos time.Duration
	// waveEvery is the time between waves of pods; each adds waveSize pods
	// and deletes about a third of those running.
	waveEvery time.Duration
	waveSize  int
	// interruptEvery and priceEvery pace spot reclaims and price changes.
	interruptEvery time.Duration
	priceEvery     time.Duration
	// converge bounds the wait for every pod to run once the chaos stops.
	converge time.Duration
}

var (
	short = config{name: "short", chaos: 60 * time.Second, waveEvery: 15 * time.Second, waveSize: 8,
		interruptEvery: 12 * time.Second, priceEvery: 10 * time.Second, converge: 5 * time.Minute}
	long = config{name: "long", chaos: 8 * time.Minute, waveEvery: 20 * time.Second, waveSize: 12,
		interruptEvery: 10 * time.Second, priceEvery: 8 * time.Second, converge: 10 * time.Minute}
)

// Fault rates of the fake cloud, per launch attempt.
const (
	capacityErrorRate = 0.25
	lostLaunchRate    = 0.2
	// spotDeadline is how long after a reclaim notice the cloud takes the machine.
	spotDeadline = 20 * time.Second
	// minFaultedLaunches is how many launches make "no fault at all" implausible.
	minFaultedLaunches = 18
)

// envLong selects the long run; envOut, when set, names a file the figure is also written to.
const (
	envLong = "STOWAGE_CHAOS"
	envOut  = "STOWAGE_CHAOS_OUT"
)

func TestChaos(t *testing.T) {
	cfg := short
	if os.Getenv(envLong) == "long" {
		cfg = long
	}
	r := newRun(t, cfg)
	r.chaosPhase()
	r.convergePhase()
	r.cleanupPhase()

	figure := r.figure()
	t.Logf("chaos (%s):\n%s", cfg.name, figure)
	if out := os.Getenv(envOut); out != "" {
		if err := os.WriteFile(out, []byte(figure), 0o644); err != nil {
			t.Errorf("writing %s=%s: %v", envOut, out, err)
		}
	}
	if r.res.doubleBuys > 0 {
		t.Errorf("%d NodeClaims had more than one machine bought for them: %v", r.res.doubleBuys, r.machines.doubleBought())
	}
	if r.res.leaks > 0 {
		t.Errorf("%d machines or Nodes outlived every NodeClaim and the garbage collector", r.res.leaks)
	}
	if r.res.kills == 0 {
		t.Errorf("the controller was never killed; the chaos did not happen")
	}
	// Each launch draws its faults at random, so a short run that buys few
	// machines may see none (0.6^n for n launches); past minFaultedLaunches
	// that chance is below 1 in 10,000 and no fault means the wiring broke.
	if faults := r.res.injectedCapacity + r.res.injectedLost; faults == 0 && r.res.machinesBought >= minFaultedLaunches {
		t.Errorf("no fault was injected into the cloud in %d launches", r.res.machinesBought)
	} else if faults == 0 {
		t.Logf("no fault was drawn in %d launches; the fault check needs %d", r.res.machinesBought, minFaultedLaunches)
	}
}

// result is the figure `make chaos` prints.
type result struct {
	kills, selfExits, leaderChanges   int
	injectedCapacity, injectedLost    int
	interruptions, reclaimed, prices  int
	podsCreated, podsDeleted, podsEnd int
	machinesBought                    int
	sinceLastWave, converged          time.Duration
	machines, claims, nodes           int
	doubleBuys, orphansCollected      int
	leaks                             int
	wall                              time.Duration
}

func (r *run) figure() string {
	s := r.res
	return fmt.Sprintf(`| | |
|---|---|
| chaos phase | %s, then the killing stops |
| controller kills (SIGKILL) | %d (and %d exits of its own, e.g. a lost lease) |
| leader changes | %d |
| capacity errors injected | %d |
| launch responses lost | %d |
| spot reclaims announced / machines taken at the deadline | %d / %d |
| price changes | %d |
| pods created / deleted / at the end | %d / %d / %d |
| machines bought | %d |
| every pod Running, machines = claims = Nodes: after the last wave (kills went on) / after the chaos | %s / %s |
| machines = NodeClaims = Nodes at convergence | %d = %d = %d |
| machines bought twice for one claim | %d |
| orphans the garbage collector removed | %d |
| leaks after cleanup | %d |
| wall time | %s |
`, r.cfg.chaos, s.kills, s.selfExits, s.leaderChanges, s.injectedCapacity, s.injectedLost,
		s.interruptions, s.reclaimed, s.prices, s.podsCreated, s.podsDeleted, s.podsEnd, s.machinesBought,
		s.sinceLastWave.Round(time.Second), s.converged.Round(time.Second), s.machines, s.claims, s.nodes, s.doubleBuys, s.orphansCollected, s.leaks,
		s.wall.Round(time.Second))
}
