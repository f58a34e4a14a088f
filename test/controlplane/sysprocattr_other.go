//go:build unix && !linux

package controlplane

import "syscall"

// sysProcAttr puts the child in its own process group; outside Linux there is
// no parent-death signal, so Stop must run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

func pdeathsigWrapper() []string { return nil }
