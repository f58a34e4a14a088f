//go:build unix && !linux

package helm

import "syscall"

// controllerSysProcAttr runs the controller in its own process group, so
// cleanup can signal everything it started.
func controllerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
