// Package v1 holds the stowage.dev/v1 API: NodePool (what a platform team
// allows Stowage to buy) and NodeClaim (one decision to buy one machine).
//
// Field names follow karpenter.sh/v1 wherever the meaning is the same, so
// existing NodePools move over with a group rename.
//
// +kubebuilder:object:generate=true
// +groupName=stowage.dev
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of every Stowage core object.
const Group = "stowage.dev"

var (
	// SchemeGroupVersion is the group and version of this package's types.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1"}
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	// It is apimachinery's, so importing the API pulls in no controller code.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

// Compile-time checks that the types are runtime objects.
var (
	_ runtime.Object = (*NodePool)(nil)
	_ runtime.Object = (*NodeClaim)(nil)
	_ runtime.Object = (*Commitment)(nil)
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&NodePool{},
		&NodePoolList{},
		&NodeClaim{},
		&NodeClaimList{},
		&Commitment{},
		&CommitmentList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
