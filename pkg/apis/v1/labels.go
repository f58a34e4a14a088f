package v1

import (
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Well-known labels on every node Stowage makes. NodePool requirements and pod
// node selectors can ask for any of them.
const (
	LabelNodePool        = Group + "/nodepool"
	LabelCapacityType    = Group + "/capacity-type"
	LabelGPUName         = Group + "/gpu-name"
	LabelGPUCount        = Group + "/gpu-count"
	LabelGPUMemory       = Group + "/gpu-memory" // MiB per GPU
	LabelGPUManufacturer = Group + "/gpu-manufacturer"
	// LabelGPUFractional is "true" on types whose GPU is a slice of a physical
	// GPU (e.g. AWS g6f), advertised as one device with a fraction of its memory.
	LabelGPUFractional  = Group + "/gpu-fractional"
	LabelInstanceFamily = Group + "/instance-family"
	LabelInstanceCPU    = Group + "/instance-cpu"
	LabelInstanceMemory = Group + "/instance-memory" // MiB
	LabelNodeClaim      = Group + "/nodeclaim"
	LabelInitialized    = Group + "/initialized"
	LabelRegistered     = Group + "/registered"

	LabelInstanceType = corev1.LabelInstanceTypeStable
	LabelZone         = corev1.LabelTopologyZone
	LabelRegion       = corev1.LabelTopologyRegion
	LabelArch         = corev1.LabelArchStable
	LabelOS           = corev1.LabelOSStable
	LabelHostname     = corev1.LabelHostname
)

// Capacity types, cheapest at the margin first: reserved capacity is already
// paid for, so it is used before spot and on-demand.
const (
	CapacityTypeReserved = "reserved"
	CapacityTypeSpot     = "spot"
	CapacityTypeOnDemand = "on-demand"
)

// Annotations and pod labels users and Stowage set.
const (
	// AnnotationDoNotDisrupt on a pod or node blocks voluntary disruption.
	AnnotationDoNotDisrupt = Group + "/do-not-disrupt"
	// AnnotationKarpenterDoNotDisrupt is Karpenter's spelling, honoured the
	// same way so workloads moved from Karpenter keep their protection.
	AnnotationKarpenterDoNotDisrupt = "karpenter.sh/do-not-disrupt"
	// LabelPodGroup names a gang: pods sharing it are planned all-or-nothing in one zone.
	LabelPodGroup = Group + "/pod-group"
	// LabelPodGroupSize is the number of pods the gang needs before any of them gets capacity.
	LabelPodGroupSize = Group + "/pod-group-size"
	// AnnotationInterruption is set on pods whose node is being interrupted, so jobs can checkpoint,
	// and on the node's NodeClaim, so the drain knows the deadline: "<Kind>" or
	// "<Kind> deadline=<RFC 3339>" (ParseInterruption).
	AnnotationInterruption = Group + "/interruption"
	// LabelGang on a NodeClaim (and its Node) identifies the gang it was
	// bought for, as a label-safe value; its machines are launched,
	// released and disrupted together. AnnotationGang holds the gang's
	// namespace/name for people.
	LabelGang      = Group + "/gang"
	AnnotationGang = Group + "/gang"
	// AnnotationBookedBy on a NodeClaim names the ProvisioningRequest
	// (namespace/name) its capacity is held for; disruption leaves the
	// claim alone while the booking lasts.
	AnnotationBookedBy = Group + "/booked-by"
	// AnnotationDisruptionReason on a NodeClaim is the DisruptionReason of
	// the disruption command that is replacing or removing it, so whoever
	// deletes it last (termination, its metrics) can say why it went.
	AnnotationDisruptionReason = Group + "/disruption-reason"
)

// Finalizers Stowage owns.
const (
	TerminationFinalizer = Group + "/termination"
)

// Taints Stowage applies.
const (
	// DisruptedTaintKey marks a node that is being drained by Stowage.
	DisruptedTaintKey = Group + "/disrupted"
	// UnregisteredTaintKey keeps pods off a node until Stowage has synced its labels and taints.
	UnregisteredTaintKey = Group + "/unregistered"
	// ReservedTaintKey keeps a freshly released node for the pods planned
	// onto it until they are bound; its value is the Node's UID, and those
	// pods are given a toleration for it.
	ReservedTaintKey = Group + "/reserved"
)

// UnregisteredTaint is the taint a machine's kubelet registers with. It is
// NoSchedule, not NoExecute: the kube-controller-manager's taint eviction
// reads Nodes from its own cache, and a pod the scheduler bound moments
// after the taint was lifted was deleted by it while that cache still held
// the taint. NoSchedule keeps the scheduler off the node just the same.
var UnregisteredTaint = corev1.Taint{Key: UnregisteredTaintKey, Effect: corev1.TaintEffectNoSchedule}

// RegistrationTaints are the taints a machine's kubelet registers with:
// UnregisteredTaint, then the claim's taints and startup taints, each
// key and effect once (the API server refuses a Node that repeats one).
func RegistrationTaints(taints, startupTaints []corev1.Taint) []corev1.Taint {
	out := []corev1.Taint{UnregisteredTaint}
	for _, t := range slices.Concat(taints, startupTaints) {
		if !slices.ContainsFunc(out, func(x corev1.Taint) bool { return t.MatchTaint(&x) }) {
			out = append(out, t)
		}
	}
	return out
}

// Extended resource names Stowage understands.
const (
	ResourceNvidiaGPU        corev1.ResourceName = "nvidia.com/gpu"
	ResourceAMDGPU           corev1.ResourceName = "amd.com/gpu"
	ResourceAWSNeuron        corev1.ResourceName = "aws.amazon.com/neuron"
	ResourceMIGPrefix                            = "nvidia.com/mig-"
	ResourcePods                                 = corev1.ResourcePods
	ResourceCPU                                  = corev1.ResourceCPU
	ResourceMemory                               = corev1.ResourceMemory
	ResourceEphemeralStorage                     = corev1.ResourceEphemeralStorage
)

// WellKnownLabels are the labels a NodePool requirement may constrain even
// though no single node has them yet; any other key must be set in the
// NodePool's template labels or requirements to be satisfiable.
var WellKnownLabels = map[string]bool{
	LabelNodePool:        true,
	LabelCapacityType:    true,
	LabelGPUName:         true,
	LabelGPUCount:        true,
	LabelGPUMemory:       true,
	LabelGPUManufacturer: true,
	LabelGPUFractional:   true,
	LabelInstanceFamily:  true,
	LabelInstanceCPU:     true,
	LabelInstanceMemory:  true,
	LabelInstanceType:    true,
	LabelZone:            true,
	LabelRegion:          true,
	LabelArch:            true,
	LabelOS:              true,
	LabelHostname:        true,
}

// DoNotDisrupt reports whether annotations ask that the object not be
// voluntarily disrupted, in Stowage's spelling or Karpenter's.
func DoNotDisrupt(annotations map[string]string) bool {
	return annotations[AnnotationDoNotDisrupt] == "true" || annotations[AnnotationKarpenterDoNotDisrupt] == "true"
}

// ParseInterruption splits an AnnotationInterruption value into its kind
// and deadline ("SpotReclaim deadline=2026-11-27T12:02:00Z"); the deadline
// is zero for a hint that has none. The interruption controller writes the
// value and the termination controller drains by it, so both read it here.
func ParseInterruption(value string) (kind string, deadline time.Time) {
	var rest string
	if n, _ := fmt.Sscanf(value, "%s deadline=%s", &kind, &rest); n == 2 {
		if t, err := time.Parse(time.RFC3339, rest); err == nil {
			return kind, t
		}
	}
	if kind == "" {
		kind = value
	}
	return kind, time.Time{}
}
