package lifecycle

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Event reasons, stable so users can filter on them.
const (
	reasonLaunched             = "Launched"
	reasonLaunchFailed         = "LaunchFailed"
	reasonInsufficientCapacity = "InsufficientCapacity"
	reasonRegistered           = "Registered"
	reasonRegistrationTimeout  = "RegistrationTimeout"
	reasonInitTimeout          = "InitializationTimeout"
	reasonLaunchTimeout        = "LaunchTimeout"
	reasonInitialized          = "Initialized"
	reasonNodeDeleted          = "NodeDeleted"
)

// recorder publishes the lifecycle's events on NodeClaims.
type recorder struct{ r events.EventRecorder }

func (e *recorder) launched(claim *v1.NodeClaim) {
	e.r.Eventf(claim, nil, corev1.EventTypeNormal, reasonLaunched, "Launch",
		"launched %s as %s/%s/%s", claim.Status.ProviderID, claim.Status.InstanceType, claim.Status.Zone, claim.Status.CapacityType)
}

func (e *recorder) launchFailed(claim *v1.NodeClaim, err error) {
	e.r.Eventf(claim, nil, corev1.EventTypeWarning, reasonLaunchFailed, "Launch", "%s", truncate(err.Error()))
}

func (e *recorder) insufficientCapacity(claim *v1.NodeClaim, err error, remaining int) {
	e.r.Eventf(claim, nil, corev1.EventTypeWarning, reasonInsufficientCapacity, "Launch",
		"%s; %d offerings left to try", truncate(err.Error()), remaining)
}

func (e *recorder) noCapacityLeft(claim *v1.NodeClaim) {
	e.r.Eventf(claim, nil, corev1.EventTypeWarning, reasonInsufficientCapacity, "Delete",
		"no offering had capacity; deleting the nodeclaim so its pods are planned again")
}

func (e *recorder) registered(claim *v1.NodeClaim, node *corev1.Node) {
	e.r.Eventf(claim, node, corev1.EventTypeNormal, reasonRegistered, "Register", "node %s registered", node.Name)
}

func (e *recorder) registrationTimeout(claim *v1.NodeClaim, timeout string) {
	e.r.Eventf(claim, nil, corev1.EventTypeWarning, reasonRegistrationTimeout, "Delete",
		"no node registered for %s within %s; deleting the nodeclaim so its pods are planned again", claim.Status.ProviderID, timeout)
}

func (e *recorder) initializationTimeout(claim *v1.NodeClaim, timeout, why string) {
	e.r.Eventf(claim, nil, corev1.EventTypeWarning, reasonInitTimeout, "Delete",
		"node not initialized within %s of registering (%s); deleting the nodeclaim so its pods are planned again", timeout, why)
}

func (e *recorder) initialized(claim *v1.NodeClaim, node *corev1.Node) {
	e.r.Eventf(claim, node, corev1.EventTypeNormal, reasonInitialized, "Initialize", "node %s initialized", node.Name)
}

func (e *recorder) launchTimeout(claim *v1.NodeClaim, timeout string) {
	e.r.Eventf(claim, nil, corev1.EventTypeWarning, reasonLaunchTimeout, "Delete",
		"launch kept failing for %s; deleting the nodeclaim so its pods are planned again", timeout)
}

func (e *recorder) nodeDeleted(claim *v1.NodeClaim) {
	e.r.Eventf(claim, nil, corev1.EventTypeWarning, reasonNodeDeleted, "Delete",
		"node %s is gone; deleting the nodeclaim so its machine is deleted and its pods are planned again", claim.Status.NodeName)
}
