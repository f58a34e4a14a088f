package interruption

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Event reasons the interruption controller emits.
const (
	ReasonInterrupted          = "Interrupted"
	ReasonReplacingInterrupted = "ReplacingInterrupted"
	ReasonDrainingInterrupted  = "DrainingInterrupted"
)

const eventAction = "Interrupt"

type recorder struct{ r events.EventRecorder }

func (r recorder) interrupted(claim *v1.NodeClaim, node *corev1.Node, what string) {
	note := "the cloud announced " + what + "; node cordoned"
	r.r.Eventf(claim, node, corev1.EventTypeWarning, ReasonInterrupted, eventAction, "%s", note)
	r.r.Eventf(node, claim, corev1.EventTypeWarning, ReasonInterrupted, eventAction, "%s", note)
}

func (r recorder) podInterrupted(pod *corev1.Pod, node *corev1.Node, what string) {
	r.r.Eventf(pod, node, corev1.EventTypeWarning, ReasonInterrupted, eventAction, "%s",
		fmt.Sprintf("node %s is being interrupted (%s); checkpoint now", node.Name, what))
}

func (r recorder) replacing(claim *v1.NodeClaim, replacements []string) {
	r.r.Eventf(claim, nil, corev1.EventTypeNormal, ReasonReplacingInterrupted, eventAction, "%s",
		fmt.Sprintf("launched replacements %v", replacements))
}

func (r recorder) draining(claim *v1.NodeClaim, why string) {
	r.r.Eventf(claim, nil, corev1.EventTypeNormal, ReasonDrainingInterrupted, eventAction, "%s", "draining: "+why)
}
