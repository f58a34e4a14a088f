// Package v1 holds the aws.stowage.dev/v1 API: EC2NodeClass, the AWS-specific
// half of a NodePool (AMI, subnets, security groups, IAM, disks, user data).
//
// +kubebuilder:object:generate=true
// +groupName=aws.stowage.dev
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group is the API group of the AWS node class.
const Group = "aws.stowage.dev"

// Kind is the kind a NodePool's nodeClassRef names to use an EC2NodeClass.
const Kind = "EC2NodeClass"

var (
	// SchemeGroupVersion is the group and version of this package's types.
	SchemeGroupVersion = schema.GroupVersion{Group: Group, Version: "v1"}
	// SchemeBuilder registers this package's types with a runtime.Scheme.
	// It is apimachinery's, so importing the API pulls in no controller code.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme adds this package's types to a runtime.Scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

var _ runtime.Object = (*EC2NodeClass)(nil)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion,
		&EC2NodeClass{},
		&EC2NodeClassList{},
	)
	metav1.AddToGroupVersion(s, SchemeGroupVersion)
	return nil
}
