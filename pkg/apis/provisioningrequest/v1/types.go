package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ProvisioningRequest asks for capacity for sets of pods that do not exist
// yet, all at once. Its spec is immutable.
//
// +kubebuilder:object:root=true
type ProvisioningRequest struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ProvisioningRequestSpec   `json:"spec"`
	Status ProvisioningRequestStatus `json:"status,omitempty"`
}

// ProvisioningRequestList is a list of ProvisioningRequests.
//
// +kubebuilder:object:root=true
type ProvisioningRequestList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata"`
	Items           []ProvisioningRequest `json:"items"`
}

// ProvisioningRequestSpec is the pods to find or buy capacity for.
type ProvisioningRequestSpec struct {
	// PodSets are groups of identical pods, each described by a PodTemplate
	// in the request's namespace.
	PodSets []PodSet `json:"podSets"`
	// ProvisioningClassName selects how capacity is provided, e.g.
	// ProvisioningClassCheckCapacity or ProvisioningClassBestEffortAtomicScaleUp.
	ProvisioningClassName string `json:"provisioningClassName"`
	// Parameters are class-specific settings.
	// +optional
	Parameters map[string]Parameter `json:"parameters,omitempty"`
}

// Parameter is a class-specific setting (at most 255 characters).
type Parameter string

// PodSet is Count pods shaped like the referenced PodTemplate.
type PodSet struct {
	PodTemplateRef Reference `json:"podTemplateRef"`
	Count          int32     `json:"count"`
}

// Reference names an object in the request's namespace.
type Reference struct {
	Name string `json:"name,omitempty"`
}

// ProvisioningRequestStatus is what the autoscaler reports.
type ProvisioningRequestStatus struct {
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// ProvisioningClassDetails are class-specific details for the requester.
	// +optional
	ProvisioningClassDetails map[string]Detail `json:"provisioningClassDetails,omitempty"`
}

// Detail is a class-specific value (at most 32768 characters).
type Detail string

// Condition types.
const (
	// Accepted: the autoscaler serves the request's class and will act on it.
	Accepted = "Accepted"
	// Provisioned: the capacity exists (check-capacity) or was bought.
	Provisioned = "Provisioned"
	// Failed: the capacity cannot be found or bought; requesters retry with a new request.
	Failed = "Failed"
	// BookingExpired: the capacity was held for the request's pods for the
	// booking time and is now released to everyone.
	BookingExpired = "BookingExpired"
	// CapacityRevoked: capacity reported as provisioned is gone (a machine
	// was taken away) before the booking expired.
	CapacityRevoked = "CapacityRevoked"
)

// Provisioning classes.
const (
	// ProvisioningClassCheckCapacity answers whether the pods fit without buying.
	ProvisioningClassCheckCapacity = "check-capacity.autoscaling.x-k8s.io"
	// ProvisioningClassBestEffortAtomicScaleUp buys capacity for all the pods or none.
	ProvisioningClassBestEffortAtomicScaleUp = "best-effort-atomic-scale-up.autoscaling.x-k8s.io"
)

// Pod annotations.
const (
	// ConsumeAnnotation on a pod names the request (in the pod's namespace)
	// whose capacity the pod may use.
	ConsumeAnnotation = "autoscaling.x-k8s.io/consume-provisioning-request"
	// ClassAnnotation on a pod names the request's class.
	ClassAnnotation = "autoscaling.x-k8s.io/provisioning-class-name"
)

// Parameters Stowage reads.
const (
	// ParameterNoRetry "true" makes a check-capacity request that finds no
	// capacity Failed instead of checking again.
	ParameterNoRetry = "noRetry"
	// ParameterValidUntilSeconds bounds, from the request's creation, how
	// long a best-effort-atomic request keeps trying before it is Failed.
	ParameterValidUntilSeconds = "ValidUntilSeconds"
)
