package controlplane

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const crashHelperEnv = "STOWAGE_CONTROLPLANE_CRASH_HELPER"

// TestCrashLeavesNothing kills a test binary that is running a control plane
// with SIGKILL (no Stop, no cleanup) and checks that every component dies
// with it and the next Start sweeps its directory.
func TestCrashLeavesNothing(t *testing.T) {
	if os.Getenv(crashHelperEnv) != "" {
		crashHelper()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLeavesNothing$")
	cmd.Env = append(os.Environ(), crashHelperEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 0 && fields[0] == "CRASH-HELPER" {
			dir = fields[1]
			for _, f := range fields[2:] {
				pid, _ := strconv.Atoi(f)
				pids = append(pids, pid)
			}
		}
	}
	_ = cmd.Wait()
	if len(pids) < 4 || dir == "" {
		t.Fatalf("helper reported dir %q and pids %v; want its directory and etcd, kube-apiserver, kube-controller-manager and kube-scheduler", dir, pids)
	}
	// The kernel delivers the parent-death signal at once, but the processes
	// take a moment to exit; poll for the condition, bounded generously.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, pid := range pids {
		for running(pid) {
			if ctx.Err() != nil {
				t.Fatalf("process %d (%s) outlived the crashed test", pid, procName(pid))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the crashed run's directory %s should still exist before a sweep: %v", dir, err)
	}
	sweepStaleDirs()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("sweep kept the crashed run's directory %s: %v", dir, err)
	}
}

// crashHelper starts a control plane, reports its processes and dies hard.
func crashHelper() {
	cp, err := Start(context.Background(), Options{ControllerManager: true, Scheduler: true})
	if err != nil {
		os.Stderr.WriteString("crash helper: " + err.Error() + "\n")
		os.Exit(2)
	}
	line := "CRASH-HELPER " + cp.Dir
	for _, pid := range childPIDsOf(os.Getpid()) {
		line += " " + strconv.Itoa(pid)
	}
	os.Stdout.WriteString(line + "\n")
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// running reports whether pid exists and is not a zombie: a killed child
// reparented to an init that does not reap stays a zombie, which is dead.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

func TestKillStragglers(t *testing.T) {
	dir := t.TempDir()
	// The shell's builtin read blocks on a pipe we never write, with no child
	// process; its command line carries dir as $0.
	inside := exec.Command("sh", "-c", "read x", dir)
	outside := exec.Command("sh", "-c", "read x")
	for _, c := range []*exec.Cmd{inside, outside} {
		if _, err := c.StdinPipe(); err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	defer func() { _ = outside.Process.Kill(); _ = outside.Wait() }()
	killed := killStragglers(dir)
	if len(killed) != 1 || killed[0] != inside.Process.Pid {
		t.Errorf("killed %v, want only %d (the process naming %s)", killed, inside.Process.Pid, dir)
	}
	if err := inside.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("process naming the directory: %v, want killed", err)
	}
}
