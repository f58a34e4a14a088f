package termination

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Event reasons, stable so users can filter on them.
const (
	reasonDraining        = "Draining"
	reasonEvicted         = "Evicted"
	reasonEvictionBlocked = "EvictionBlocked"
	reasonEvictionFailed  = "EvictionFailed"
	reasonDoNotDisrupt    = "DoNotDisrupt"
	reasonForceDeleted    = "TerminationGracePeriodElapsed"
	reasonTerminated      = "Terminated"
	reasonNodeDeleted     = "NodeDeleted"
	reasonAwaitingDetach  = "AwaitingVolumeDetach"
)

// recorder publishes termination's events.
type recorder struct{ r events.EventRecorder }

func (e *recorder) draining(claim *v1.NodeClaim, node *corev1.Node) {
	e.r.Eventf(node, claim, corev1.EventTypeNormal, reasonDraining, "Drain", "cordoned and draining for nodeclaim %s", claim.Name)
	e.r.Eventf(claim, node, corev1.EventTypeNormal, reasonDraining, "Drain", "cordoned node %s and draining it", node.Name)
}

func (e *recorder) evicted(claim *v1.NodeClaim, pod *corev1.Pod) {
	e.r.Eventf(pod, claim, corev1.EventTypeNormal, reasonEvicted, "Evict", "evicted to terminate nodeclaim %s", claim.Name)
}

func (e *recorder) evictionBlocked(claim *v1.NodeClaim, pod *corev1.Pod, err error) {
	e.r.Eventf(pod, claim, corev1.EventTypeWarning, reasonEvictionBlocked, "Evict",
		"eviction for nodeclaim %s refused, retrying: %v", claim.Name, err)
}

func (e *recorder) evictionFailed(claim *v1.NodeClaim, pod *corev1.Pod, err error) {
	e.r.Eventf(pod, claim, corev1.EventTypeWarning, reasonEvictionFailed, "Evict",
		"eviction for nodeclaim %s failed, retrying: %v", claim.Name, err)
}

func (e *recorder) doNotDisrupt(claim *v1.NodeClaim, pod *corev1.Pod) {
	e.r.Eventf(claim, pod, corev1.EventTypeNormal, reasonDoNotDisrupt, "Drain",
		"pod %s/%s has %s=true and blocks the drain until the nodeclaim's deadline (terminationGracePeriod or interruption), if any",
		pod.Namespace, pod.Name, v1.AnnotationDoNotDisrupt)
}

func (e *recorder) awaitingDetach(claim *v1.NodeClaim, node *corev1.Node, attached int) {
	e.r.Eventf(claim, node, corev1.EventTypeNormal, reasonAwaitingDetach, "Terminate",
		"node %s is drained; waiting for %d volume(s) to detach before deleting the machine", node.Name, attached)
}

func (e *recorder) forceDeleted(claim *v1.NodeClaim, pod *corev1.Pod) {
	e.r.Eventf(pod, claim, corev1.EventTypeWarning, reasonForceDeleted, "Delete",
		"deleted, disruption budgets notwithstanding, to stop before the deadline of nodeclaim %s (terminationGracePeriod or interruption)", claim.Name)
}

func (e *recorder) terminated(claim *v1.NodeClaim) {
	e.r.Eventf(claim, nil, corev1.EventTypeNormal, reasonTerminated, "Terminate", "machine %s deleted", claim.Status.ProviderID)
}

func (e *recorder) nodeDeleted(node *corev1.Node, claim *v1.NodeClaim) {
	e.r.Eventf(node, claim, corev1.EventTypeNormal, reasonNodeDeleted, "Terminate",
		"node deleted; deleting nodeclaim %s to drain it and delete its machine", claim.Name)
}
