//go:build unix

package controlplane

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// child is one component run as a child process in its own process group, so
// Stop can signal everything it spawned and a terminal's Ctrl-C reaches only
// the test binary (which then takes the children down via Pdeathsig).
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // exit status, valid once done is closed
}

func startChild(name, path string, args []string, out io.Writer) (*child, error) {
	cmd := exec.Command(path, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, path, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the process has already ended, with its status.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then SIGKILLs
// the group. It returns once the process has been reaped.
func (c *child) stop(grace time.Duration) error {
	if done, _ := c.exited(); done {
		// The leader is gone but stragglers in its group may remain.
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		return nil
	}
	pgid := c.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling %s: %w", c.name, err)
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
	case <-timer.C:
		fmt.Fprintf(os.Stderr, "[controlplane] %s did not exit within %s, killing it\n", c.name, grace)
	}
	// Kill anything left in the group, the leader included when it ignored SIGTERM.
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s: %w", c.name, err)
	}
	<-c.done
	return nil
}

// processAlive reports whether pid names a live (not zombie) process.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
