package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// AKSNodeClass says how Stowage launches Azure VMs for the NodePools that
// reference it: which AKS node image, subnet, OS disk, kubelet settings,
// security features and GPU driver, and which capacity reservation group and
// proximity placement group to use.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=aksnodeclasses,scope=Cluster,categories=stowage,shortName=aksnc
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=".spec.image.family"
// +kubebuilder:printcolumn:name="Version",type=string,JSONPath=".status.images[0].version",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type AKSNodeClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   AKSNodeClassSpec   `json:"spec"`
	Status AKSNodeClassStatus `json:"status,omitempty"`
}

// Image families: AKS's own node images, published in AKS's community galleries.
const (
	ImageFamilyUbuntu2204 = "Ubuntu2204"
	ImageFamilyUbuntu2404 = "Ubuntu2404"
	ImageFamilyAzureLinux = "AzureLinux"
)

// OS disk types.
const (
	OSDiskPremiumLRS     = "Premium_LRS"
	OSDiskStandardSSDLRS = "StandardSSD_LRS"
	OSDiskStandardLRS    = "Standard_LRS"
	// OSDiskEphemeral places the OS disk on the VM's local storage: no
	// managed disk to pay for or clean up, and faster image pulls.
	OSDiskEphemeral = "Ephemeral"
)

// GPU driver handling.
const (
	// GPUDriverImage: the node image brings the NVIDIA driver; nodes are
	// labelled so a GPU Operator does not install a second one.
	GPUDriverImage = "Image"
	// GPUDriverOperator: the driver is left to the NVIDIA GPU Operator.
	GPUDriverOperator = "Operator"
)

// AKSNodeClassSpec is the desired launch configuration.
type AKSNodeClassSpec struct {
	// Image selects the node image. Default: AKS Ubuntu 22.04, the newest
	// version in the region.
	// +kubebuilder:default={family: Ubuntu2204}
	// +optional
	Image ImageSelector `json:"image"`
	// KubernetesVersion is the kubelet version nodes run, such as 1.33.2.
	// Default: the API server's version.
	// +kubebuilder:validation:Pattern=`^1\.[0-9]+\.[0-9]+$`
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// SubnetID is the subnet every VM's network interface joins, usually the
	// AKS cluster's node subnet.
	// +kubebuilder:validation:XValidation:message="subnetID must be a subnet resource ID: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>",rule="self.matches('(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\\\.Network/virtualNetworks/[^/]+/subnets/[^/]+$')"
	// +kubebuilder:validation:MaxLength=512
	// +required
	SubnetID string `json:"subnetID"`
	// OSDisk is the VM's OS disk.
	// +kubebuilder:default={sizeGiB: 128, type: Premium_LRS}
	// +optional
	OSDisk OSDisk `json:"osDisk"`
	// MaxPods is the kubelet's pod limit. Default 110; raise it with Azure
	// CNI Overlay, whose pod IPs do not come from the subnet.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=250
	// +optional
	MaxPods *int32 `json:"maxPods,omitempty"`
	// Kubelet settings written into every node's kubelet configuration.
	// +optional
	Kubelet *KubeletConfiguration `json:"kubelet,omitempty"`
	// Tags are added to every VM, network interface and disk. Azure tag names
	// cannot contain < > % & \ ? /, and stowage.dev_ names are reserved.
	// +kubebuilder:validation:XValidation:message="tag names starting with stowage.dev are reserved",rule="self.all(k, !k.startsWith('stowage.dev'))"
	// +kubebuilder:validation:XValidation:message="Azure tag names cannot contain < > % & \\ ? or /",rule="self.all(k, !k.matches('[<>%&?/\\\\\\\\]'))"
	// +kubebuilder:validation:XValidation:message="Azure tag names are at most 512 characters and values at most 256",rule="self.all(k, size(k) <= 512 && size(self[k]) <= 256)"
	// +kubebuilder:validation:MaxProperties=40
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// Security features of every VM.
	// +optional
	Security *Security `json:"security,omitempty"`
	// GPU says who installs the NVIDIA driver on GPU VMs.
	// +kubebuilder:default={driver: Image}
	// +optional
	GPU GPUSettings `json:"gpu"`
	// CapacityReservationGroup is an on-demand capacity reservation group's
	// resource ID. Its reserved VMs are offered as reserved capacity, which
	// the solver uses before spot and on-demand.
	// +kubebuilder:validation:XValidation:message="capacityReservationGroup must be a resource ID: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/capacityReservationGroups/<name>",rule="self.matches('(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\\\.Compute/capacityReservationGroups/[^/]+$')"
	// +kubebuilder:validation:MaxLength=512
	// +optional
	CapacityReservationGroup string `json:"capacityReservationGroup,omitempty"`
	// ProximityPlacementGroup is an existing proximity placement group's
	// resource ID that every VM of this class joins. Without it, claims of one
	// placement group (a training gang) share a group Stowage creates and
	// removes once it is empty.
	// +kubebuilder:validation:XValidation:message="proximityPlacementGroup must be a resource ID: /subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Compute/proximityPlacementGroups/<name>",rule="self.matches('(?i)^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\\\.Compute/proximityPlacementGroups/[^/]+$')"
	// +kubebuilder:validation:MaxLength=512
	// +optional
	ProximityPlacementGroup string `json:"proximityPlacementGroup,omitempty"`
	// SSHPublicKey is an OpenSSH public key for the node's admin user
	// (azureuser). Without it, a key whose private half is discarded is used,
	// so nobody can log in.
	// +kubebuilder:validation:Pattern=`^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp256) [A-Za-z0-9+/=]+( .*)?$`
	// +kubebuilder:validation:MaxLength=4096
	// +optional
	SSHPublicKey string `json:"sshPublicKey,omitempty"`
}

// ImageSelector picks an AKS node image.
type ImageSelector struct {
	// Family is the node OS: Ubuntu2204, Ubuntu2404 or AzureLinux (3.0).
	// +kubebuilder:validation:Enum=Ubuntu2204;Ubuntu2404;AzureLinux
	// +kubebuilder:default=Ubuntu2204
	// +optional
	Family string `json:"family,omitempty"`
	// Version pins a node image version such as 202511.03.0. Default: the
	// newest version published in the region, picked up as it is released
	// (and rolled out through drift).
	// +kubebuilder:validation:Pattern=`^[0-9]{6}\.[0-9]{2}\.[0-9]+$`
	// +optional
	Version string `json:"version,omitempty"`
}

// OSDisk is the VM's OS disk.
type OSDisk struct {
	// SizeGiB of the disk. GPU images, container layers and model weights
	// are large.
	// +kubebuilder:validation:Minimum=30
	// +kubebuilder:validation:Maximum=4095
	// +kubebuilder:default=128
	// +optional
	SizeGiB int32 `json:"sizeGiB,omitempty"`
	// Type is the managed disk's storage type, or Ephemeral for a disk on
	// the VM's local storage.
	// +kubebuilder:validation:Enum=Premium_LRS;StandardSSD_LRS;Standard_LRS;Ephemeral
	// +kubebuilder:default=Premium_LRS
	// +optional
	Type string `json:"type,omitempty"`
}

// KubeletConfiguration is the part of the kubelet's configuration a node
// class may set.
//
// +kubebuilder:validation:XValidation:message="imageGCLowThresholdPercent must be below imageGCHighThresholdPercent",rule="!has(self.imageGCLowThresholdPercent) || !has(self.imageGCHighThresholdPercent) || self.imageGCLowThresholdPercent < self.imageGCHighThresholdPercent"
type KubeletConfiguration struct {
	// +kubebuilder:validation:Enum=none;static
	// +optional
	CPUManagerPolicy string `json:"cpuManagerPolicy,omitempty"`
	// TopologyManagerPolicy aligns CPUs and GPUs on one NUMA node when set to
	// single-numa-node or restricted.
	// +kubebuilder:validation:Enum=none;best-effort;restricted;single-numa-node
	// +optional
	TopologyManagerPolicy string `json:"topologyManagerPolicy,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	ImageGCHighThresholdPercent *int32 `json:"imageGCHighThresholdPercent,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=99
	// +optional
	ImageGCLowThresholdPercent *int32 `json:"imageGCLowThresholdPercent,omitempty"`
	// ContainerLogMaxSize such as 50Mi.
	// +kubebuilder:validation:Pattern=`^[0-9]+(Ki|Mi|Gi)$`
	// +optional
	ContainerLogMaxSize string `json:"containerLogMaxSize,omitempty"`
	// +kubebuilder:validation:Minimum=2
	// +optional
	ContainerLogMaxFiles *int32 `json:"containerLogMaxFiles,omitempty"`
	// +kubebuilder:validation:Minimum=-1
	// +optional
	PodPidsLimit *int64 `json:"podPidsLimit,omitempty"`
	// +kubebuilder:validation:MaxItems=50
	// +optional
	AllowedUnsafeSysctls []string `json:"allowedUnsafeSysctls,omitempty"`
}

// Security features of a VM.
type Security struct {
	// EncryptionAtHost encrypts the OS disk, temp disk and caches on the
	// host. The subscription must have the EncryptionAtHost feature.
	// +optional
	EncryptionAtHost *bool `json:"encryptionAtHost,omitempty"`
	// TrustedLaunch boots with Secure Boot and a virtual TPM. GPU sizes
	// whose driver is not signed for Secure Boot need it off.
	// +optional
	TrustedLaunch *bool `json:"trustedLaunch,omitempty"`
}

// GPUSettings say who installs the NVIDIA driver.
type GPUSettings struct {
	// Driver is Image (the node image brings it, and GPU Operators are told
	// not to install one) or Operator (left to the NVIDIA GPU Operator).
	// +kubebuilder:validation:Enum=Image;Operator
	// +kubebuilder:default=Image
	// +optional
	Driver string `json:"driver,omitempty"`
}

// AKSNodeClassStatus is what the spec resolved to.
type AKSNodeClassStatus struct {
	// Images are the resolved node image versions, one per architecture.
	// +optional
	Images []NodeImage `json:"images,omitempty"`
	// KubernetesVersion is the kubelet version nodes are launched with.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeImage is one resolved image version.
type NodeImage struct {
	// ID is the community gallery image version's ID.
	// +required
	ID string `json:"id"`
	// Arch is amd64 or arm64.
	// +required
	Arch string `json:"arch"`
	// Version such as 202511.03.0.
	// +optional
	Version string `json:"version,omitempty"`
}

// AKSNodeClass condition types.
const (
	ConditionImageReady                    = "ImageReady"
	ConditionSubnetReady                   = "SubnetReady"
	ConditionCapacityReservationGroupReady = "CapacityReservationGroupReady"
	ConditionProximityPlacementGroupReady  = "ProximityPlacementGroupReady"
	ConditionKubernetesVersionReady        = "KubernetesVersionReady"
	ConditionReady                         = "Ready"
)

// AKSNodeClassList is a list of AKSNodeClasses.
//
// +kubebuilder:object:root=true
type AKSNodeClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AKSNodeClass `json:"items"`
}
