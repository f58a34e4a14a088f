package provisioning

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Event reasons the provisioner emits on pods.
const (
	ReasonNominated            = "Nominated"
	ReasonFailedProvisioning   = "FailedProvisioning"
	ReasonNoCompatibleNodePool = "NoCompatibleNodePool"
	// ReasonWaitingForVolume: the pod's claim is missing or not bound yet,
	// so where its volume will be is not known; nothing is bought for it.
	ReasonWaitingForVolume = "WaitingForVolume"
)

// maxNoteLength is the API server's limit on an event's note.
const maxNoteLength = 1024

type recorder struct{ r events.EventRecorder }

func (r recorder) nominated(pod *corev1.Pod, claim *v1.NodeClaim) {
	note := fmt.Sprintf("planned onto nodeclaim %s", claim.Name)
	if len(claim.Spec.Offerings) > 0 {
		o := claim.Spec.Offerings[0]
		note += fmt.Sprintf(" (%s %s %s $%s/h)", o.InstanceType, o.CapacityType, o.Zone, trimPrice(o.PricePerHour))
	}
	r.r.Eventf(pod, claim, corev1.EventTypeNormal, ReasonNominated, "Provision", "%s", truncate(note))
}

func (r recorder) nominatedInFlight(pod *corev1.Pod, claimName string) {
	r.r.Eventf(pod, nil, corev1.EventTypeNormal, ReasonNominated, "Provision", "%s",
		truncate(fmt.Sprintf("planned onto launching nodeclaim %s", claimName)))
}

func (r recorder) failed(pod *corev1.Pod, why string) {
	r.r.Eventf(pod, nil, corev1.EventTypeWarning, ReasonFailedProvisioning, "Provision", "%s", truncate(why))
}

func (r recorder) waitingForVolume(pod *corev1.Pod, why string) {
	r.r.Eventf(pod, nil, corev1.EventTypeNormal, ReasonWaitingForVolume, "Provision", "%s", truncate(why))
}

func (r recorder) noPool(pod *corev1.Pod, why string) {
	r.r.Eventf(pod, nil, corev1.EventTypeWarning, ReasonNoCompatibleNodePool, "Provision", "%s", truncate(why))
}

// trimPrice shows "3.4900" as "3.49" in messages.
func trimPrice(s string) string {
	var f float64
	if _, err := fmt.Sscanf(s, "%g", &f); err != nil {
		return s
	}
	return fmt.Sprintf("%.2f", f)
}

func truncate(s string) string {
	if len(s) <= maxNoteLength {
		return s
	}
	return s[:maxNoteLength-3] + "..."
}
