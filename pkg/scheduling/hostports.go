package scheduling

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// HostPorts are the host ports a pod binds, as "protocol/port", sorted and
// without repeats: two pods with one of them in common cannot share a node
// (the kube-scheduler's NodePorts filter). The host IP is not part of the
// key, so pods binding one port on different host IPs are kept apart too; the
// scheduler would allow that, but it is rare and costs at most a node. The
// regular containers and the sidecars (init containers that keep running,
// restartPolicy Always) count, as in the scheduler.
func HostPorts(pod *corev1.Pod) []string {
	var out []string
	add := func(c *corev1.Container) {
		for _, p := range c.Ports {
			if p.HostPort <= 0 {
				continue
			}
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			out = append(out, string(proto)+"/"+strconv.Itoa(int(p.HostPort)))
		}
	}
	for i := range pod.Spec.Containers {
		add(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.InitContainers {
		if isSidecar(&pod.Spec.InitContainers[i]) {
			add(&pod.Spec.InitContainers[i])
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
