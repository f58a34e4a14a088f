// Package v1 holds the gcp.stowage.dev/v1 API: GCENodeClass, the GCP-specific
// half of a NodePool (GKE node image, service account, network, disk,
// kubelet, GPU driver, reservations and placement).
//
// +kubebuilder:object:generate=true
// +groupName=gcp.stowage.dev
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of the GCP node class.
const Group = "gcp.stowage.dev"

// Kind is the kind a NodePool's nodeClassRef names to use a GCENodeClass.
const Kind = "GCENodeClass"

var (
	// SchemeGroupVersion is the group and version of this package's types.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1"}
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

var _ runtime.Object = (*GCENodeClass)(nil)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&GCENodeClass{},
		&GCENodeClassList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
