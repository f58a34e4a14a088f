package controlplane

import "syscall"

// sysProcAttr puts the child in its own process group and has the kernel kill
// it when the test binary dies, even by SIGKILL or a crash, so nothing leaks.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// pdeathsigWrapper returns a command prefix that makes a process started by
// someone else (envtest starts etcd and kube-apiserver) die with its parent.
// setpriv is in util-linux, present on every Debian-based image.
func pdeathsigWrapper() []string {
	path, err := lookPath("setpriv")
	if err != nil {
		return nil
	}
	return []string{path, "--pdeathsig", "KILL", "--"}
}
