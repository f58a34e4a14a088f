//go:build unix

package chaos

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/operator"
)

// Leader election as the chaos runs it: short, so a killed leader is
// replaced within seconds.
const (
	leaseDuration = 4 * time.Second
	renewDeadline = 3 * time.Second
	retryPeriod   = 500 * time.Millisecond
	leaseNS       = "default"
)

// controller runs `stowage controller` processes one after another, all
// writing to one log.
type controller struct {
	t       *testing.T
	binary  string
	kcfg    string
	logPath string
	log     *os.File
	c       client.Client
	rng     *rand.Rand

	mu        sync.Mutex
	cmd       *exec.Cmd
	done      chan struct{}
	kills     int
	selfExits int
	leaders   map[string]bool // lease holder identities seen
}

func buildStowage(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "stowage")
	began := time.Now()
	cmd := exec.Command("go", "build", "-o", out, "github.com/stowage-k8s/stowage/cmd/stowage")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/stowage: %v\n%s", err, b)
	}
	t.Logf("built %s in %s", out, time.Since(began).Round(100*time.Millisecond))
	return out
}

func newController(t *testing.T, binary, kubeconfig string, c client.Client, seed uint64) *controller {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "stowage-controller.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := &controller{t: t, binary: binary, kcfg: kubeconfig, logPath: logPath, log: f, c: c,
		rng: rand.New(rand.NewPCG(seed, 1)), leaders: map[string]bool{}} //nolint:gosec // test randomness
	t.Cleanup(func() {
		ctrl.stop()
		_ = f.Close()
		if t.Failed() {
			t.Logf("controller log %s (last lines):\n%s", logPath, ctrl.tail(80))
		}
	})
	return ctrl
}

// start launches a new controller process; the previous one must be gone.
func (c *controller) start() {
	args := []string{"controller",
		"--cloud-provider=fake",
		"--cluster-name=chaos",
		"--leader-elect=true",
		"--leader-election-namespace=" + leaseNS,
		"--leader-election-lease-duration=" + leaseDuration.String(),
		"--leader-election-renew-deadline=" + renewDeadline.String(),
		"--leader-election-retry-period=" + retryPeriod.String(),
		fmt.Sprintf("--fake-capacity-error-rate=%g", capacityErrorRate),
		fmt.Sprintf("--fake-lost-launch-rate=%g", lostLaunchRate),
		"--metrics-bind-address=0",
		"--health-probe-bind-address=0",
		"--log-format=json",
		"--graceful-shutdown-timeout=5s",
	}
	cmd := exec.Command(c.binary, args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.kcfg)
	cmd.Stdout, cmd.Stderr = c.log, c.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("starting the controller: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	c.mu.Lock()
	c.cmd, c.done = cmd, done
	c.mu.Unlock()
}

// kill SIGKILLs the running process and waits for it; an exit of its own
// since the last start is counted apart.
func (c *controller) kill() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		c.selfExits++
	default:
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		c.kills++
	}
	c.mu.Lock()
	c.cmd = nil
	c.mu.Unlock()
}

// exited reports whether the current process ended by itself.
func (c *controller) exited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done == nil {
		return false
	}
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop ends the current process gracefully, then by force.
func (c *controller) stop() {
	c.mu.Lock()
	cmd, done := c.cmd, c.done
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// leader returns the lease's holder, "" when there is none.
func (c *controller) leader(ctx context.Context) string {
	lease := &coordinationv1.Lease{}
	if err := c.c.Get(ctx, client.ObjectKey{Namespace: leaseNS, Name: operator.LeaderElectionID}, lease); err != nil {
		return ""
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// killLoop kills the controller every 1-5 s of leadership until ctx ends,
// restarting it each time. One kill in four comes 0.2-1.5 s after start
// instead, before the new process leads: a crash during start-up or cache sync.
func (c *controller) killLoop(ctx context.Context) {
	prev := c.leader(ctx)
	for ctx.Err() == nil {
		c.start()
		if c.rng.IntN(4) == 0 {
			sleep(ctx, time.Duration(200+c.rng.IntN(1300))*time.Millisecond)
		} else {
			// Wait for this process to lead (a new holder), then let it work 1-5 s.
			for ctx.Err() == nil && !c.exited() {
				if h := c.leader(ctx); h != "" && h != prev {
					prev = h
					c.leaders[h] = true
					break
				}
				sleep(ctx, 100*time.Millisecond)
			}
			sleep(ctx, time.Duration(1000+c.rng.IntN(4000))*time.Millisecond)
		}
		c.kill()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// count returns how many log lines contain s.
func (c *controller) count(s string) int {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		c.t.Errorf("reading the controller log: %v", err)
		return 0
	}
	return bytes.Count(b, []byte(s))
}

func (c *controller) tail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
