// Package v1 is the part of the autoscaling.x-k8s.io/v1 API Stowage serves:
// ProvisioningRequest, the object Kueue's ProvisioningRequest admission check
// and Cluster Autoscaler use to ask for capacity for a set of pods at once.
//
// The upstream Go module (k8s.io/autoscaler/cluster-autoscaler/apis) is
// served here only at the version Kueue pins, and its types package
// blank-imports ginkgo, gomega and code-generator, which would link test
// frameworks into the controller. These are the same fields, JSON names and
// constants, written down for Stowage; the CRD installed is the upstream one
// (see charts/stowage/crds), so the schema is upstream's, not this file's.
//
// +kubebuilder:object:generate=true
// +kubebuilder:skip
// +groupName=autoscaling.x-k8s.io
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the ProvisioningRequest API group.
const Group = "autoscaling.x-k8s.io"

var (
	// SchemeGroupVersion is the group and version of this package's types.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1"}
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

var _ runtime.Object = (*ProvisioningRequest)(nil)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &ProvisioningRequest{}, &ProvisioningRequestList{})
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
