// Package v1 holds the azure.stowage.dev/v1 API: AKSNodeClass, the
// Azure-specific half of a NodePool (node image, subnet, disks, kubelet,
// security, GPU driver, capacity reservations and proximity placement).
//
// +kubebuilder:object:generate=true
// +groupName=azure.stowage.dev
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of the Azure node class.
const Group = "azure.stowage.dev"

// Kind is the kind a NodePool's nodeClassRef names to use an AKSNodeClass.
const Kind = "AKSNodeClass"

var (
	// SchemeGroupVersion is the group and version of this package's types.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1"}
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	// It is apimachinery's, so importing the API pulls in no controller code.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

var _ runtime.Object = (*AKSNodeClass)(nil)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&AKSNodeClass{},
		&AKSNodeClassList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
