package scheduling

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

func TestHostPorts(t *testing.T) {
	always := ptr.To(corev1.ContainerRestartPolicyAlways)
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{
			{Name: "sidecar", RestartPolicy: always, Ports: []corev1.ContainerPort{{ContainerPort: 7000, HostPort: 7000}}},
			{Name: "setup", Ports: []corev1.ContainerPort{{ContainerPort: 7001, HostPort: 7001}}},
		},
		Containers: []corev1.Container{
			{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 9100, HostPort: 9100}, {ContainerPort: 53, HostPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Name: "b", Ports: []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100, Protocol: corev1.ProtocolTCP, HostIP: "10.0.0.1"}}},
		},
	}}
	// The containers' and the sidecar's ports, as the scheduler's NodePorts
	// filter reads them (not a plain init container's, which has exited); the
	// host IP folded away; repeats dropped.
	want := []string{"TCP/7000", "TCP/9100", "UDP/53"}
	if diff := cmp.Diff(want, HostPorts(pod)); diff != "" {
		t.Errorf("HostPorts (-want +got):\n%s", diff)
	}
	if got := HostPorts(&corev1.Pod{}); got != nil {
		t.Errorf("a pod without ports binds %v", got)
	}
}
