package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeClaim is the durable record of one decision to buy one machine. It is
// written before the cloud call, so a controller that crashes mid-launch finds
// it again and never launches twice or leaks an instance.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=nodeclaims,scope=Cluster,categories=stowage,shortName=nc
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=".status.instanceType"
// +kubebuilder:printcolumn:name="Capacity",type=string,JSONPath=".status.capacityType"
// +kubebuilder:printcolumn:name="Zone",type=string,JSONPath=".status.zone"
// +kubebuilder:printcolumn:name="$/h",type=string,JSONPath=".status.pricePerHour"
// +kubebuilder:printcolumn:name="Node",type=string,JSONPath=".status.nodeName"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="NodePool",type=string,JSONPath=".metadata.labels.stowage\\.dev/nodepool",priority=1
type NodeClaim struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   NodeClaimSpec   `json:"spec"`
	Status NodeClaimStatus `json:"status,omitempty"`

	// decodeErr is set when a stored spec did not decode (see DecodeError).
	decodeErr *DecodeError `json:"-"`
}

// NodeClaimSpec is what to launch. The spec is immutable once written: a
// different decision is a different NodeClaim.
// +kubebuilder:validation:XValidation:message="spec is immutable",rule="self == oldSelf"
type NodeClaimSpec struct {
	// Requirements every machine launched for this claim must satisfy.
	// +kubebuilder:validation:MaxItems=100
	// +optional
	Requirements []NodeSelectorRequirementWithMinValues `json:"requirements,omitempty"`
	// Offerings are the solver's choices in order of preference; launch tries
	// them in order and skips those that report insufficient capacity.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=60
	// +required
	Offerings []OfferingChoice `json:"offerings"`
	// Resources the pods planned onto this machine request.
	// +optional
	Resources ResourceRequirements `json:"resources,omitempty"`
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:XValidation:message="taint key must be a qualified name such as example.com/gpu: an optional DNS subdomain and '/', then at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="self.key.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$')"
	// +kubebuilder:validation:items:XValidation:message="taint value must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="!has(self.value) || self.value.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')"
	// +optional
	Taints []corev1.Taint `json:"taints,omitempty"`
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:XValidation:message="taint key must be a qualified name such as example.com/gpu: an optional DNS subdomain and '/', then at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="self.key.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$')"
	// +kubebuilder:validation:items:XValidation:message="taint value must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="!has(self.value) || self.value.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')"
	// +optional
	StartupTaints []corev1.Taint `json:"startupTaints,omitempty"`
	// +optional
	NodeClassRef *NodeClassReference `json:"nodeClassRef,omitempty"`
	// +optional
	ExpireAfter NillableDuration `json:"expireAfter"`
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="must be a duration in hours, minutes and seconds such as 15m or 1h30m (at most 999999h)",rule="size(self) > 0 && self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$') && duration(self) <= duration('999999h')"
	// +optional
	TerminationGracePeriod *metav1.Duration `json:"terminationGracePeriod,omitempty"`
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="must be a duration in hours, minutes and seconds such as 15m or 1h30m (at most 999999h)",rule="size(self) > 0 && self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$') && duration(self) <= duration('999999h')"
	// +optional
	RegistrationTimeout *metav1.Duration `json:"registrationTimeout,omitempty"`
	// +optional
	GPU *GPUSharing `json:"gpu,omitempty"`
	// Placement asks the cloud to launch this machine into one placement
	// domain with every other claim of the same group (a gang's machines for
	// multi-node training). Providers without placement support ignore it.
	// +optional
	Placement *Placement `json:"placement,omitempty"`
}

// Placement names the placement domain a claim's machine joins.
type Placement struct {
	// Group identifies the domain: claims with the same group land together.
	// Stowage sets it from the gang's name.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	// +required
	Group string `json:"group"`
}

// ResourceRequirements are the summed requests of the pods planned onto a claim.
type ResourceRequirements struct {
	// Requests are quantities from 0 to 9P (9T for cpu).
	// +kubebuilder:validation:XValidation:message="requests must be quantities from 0 to 9P (9T for cpu)",rule="self.all(k, isQuantity(string(self[k])) && !quantity(string(self[k])).isLessThan(quantity('0')) && quantity(string(self[k])).compareTo(quantity(k == 'cpu' ? '9T' : '9P')) <= 0)"
	// +kubebuilder:validation:MaxProperties=50
	// +optional
	Requests corev1.ResourceList `json:"requests,omitempty"`
}

// OfferingChoice is one (instance type, zone, capacity type) the claim may be launched as.
type OfferingChoice struct {
	// +kubebuilder:validation:MinLength=1
	// +required
	InstanceType string `json:"instanceType"`
	// +kubebuilder:validation:MinLength=1
	// +required
	Zone string `json:"zone"`
	// +kubebuilder:validation:Enum=reserved;spot;on-demand
	// +required
	CapacityType string `json:"capacityType"`
	// PricePerHour is the price the solver used, in US dollars, as a decimal string.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="price must be a non-negative decimal number of US dollars such as 1.006",rule="self.matches('^[0-9]{1,9}([.][0-9]{1,12})?$')"
	// +optional
	PricePerHour string `json:"pricePerHour,omitempty"`
	// ReservationID targets a capacity reservation for reserved offerings.
	// +optional
	ReservationID string `json:"reservationID,omitempty"`
}

// NodeClaimStatus is what was actually launched and how far it has got.
type NodeClaimStatus struct {
	// ProviderID is the cloud's ID of the machine, as on the Node's spec.providerID.
	// +optional
	ProviderID string `json:"providerID,omitempty"`
	// NodeName is the Node that registered for this claim.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// +optional
	InstanceType string `json:"instanceType,omitempty"`
	// +optional
	Zone string `json:"zone,omitempty"`
	// +optional
	CapacityType string `json:"capacityType,omitempty"`
	// PricePerHour is the price of the launched offering, in US dollars.
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="price must be a non-negative decimal number of US dollars such as 1.006",rule="self.matches('^[0-9]{1,9}([.][0-9]{1,12})?$')"
	// +optional
	PricePerHour string `json:"pricePerHour,omitempty"`
	// +optional
	ImageID string `json:"imageID,omitempty"`
	// Topology is the machine's place in the cloud's network, as the cloud
	// reports it: network node IDs from the top layer down to the one the
	// machine hangs off (AWS DescribeInstanceTopology). Machines sharing more
	// leading nodes are closer. Empty where the cloud does not say.
	// +kubebuilder:validation:MaxItems=8
	// +optional
	Topology []string `json:"topology,omitempty"`
	// +optional
	Capacity corev1.ResourceList `json:"capacity,omitempty"`
	// +optional
	Allocatable corev1.ResourceList `json:"allocatable,omitempty"`
	// UnavailableOfferings lists offerings that reported insufficient capacity for this claim.
	// +optional
	UnavailableOfferings []string `json:"unavailableOfferings,omitempty"`
	// LastPodEventTime is when a pod was last bound to the claim's node or
	// left it. The node is Consolidatable once its pool's consolidateAfter has
	// passed since then.
	// +optional
	LastPodEventTime metav1.Time `json:"lastPodEventTime,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeClaim condition types, in the order a claim reaches them.
const (
	ConditionLaunched    = "Launched"
	ConditionRegistered  = "Registered"
	ConditionInitialized = "Initialized"
	ConditionReady       = "Ready"
	ConditionDrifted     = "Drifted"
	ConditionExpired     = "Expired"
	// ConditionConsolidatable is True once its pool's consolidateAfter has
	// passed since a pod last arrived on or left the node (and since it was
	// initialized): consolidation may then weigh it. Whether its pods could
	// run for less elsewhere is decided by the disruption pass.
	ConditionConsolidatable = "Consolidatable"
	ConditionInterrupted    = "Interrupted"
)

// NodeClaimList is a list of NodeClaims.
//
// +kubebuilder:object:root=true
type NodeClaimList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeClaim `json:"items"`
}
