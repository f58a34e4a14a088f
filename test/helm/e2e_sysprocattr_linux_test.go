package helm

import "syscall"

// controllerSysProcAttr runs the controller in its own process group, so
// cleanup can signal everything it started, and has the kernel kill it if
// the test binary dies without running cleanup.
func controllerSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
