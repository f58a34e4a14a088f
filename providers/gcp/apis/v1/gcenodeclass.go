package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GCENodeClass says how Stowage launches Compute Engine VMs that join a GKE
// cluster for the NodePools that reference it: which node image, service
// account, network, disk, kubelet settings, GPU driver, reservations and
// placement.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=gcenodeclasses,scope=Cluster,categories=stowage,shortName=gcenc
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Image",type=string,JSONPath=".status.imageName",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type GCENodeClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   GCENodeClassSpec   `json:"spec"`
	Status GCENodeClassStatus `json:"status,omitempty"`
}

// GCENodeClassSpec is the desired launch configuration.
type GCENodeClassSpec struct {
	// Image is the node image. Empty means GKE's Container-Optimized OS image
	// for the cluster's node version.
	// +kubebuilder:default={type: COS_CONTAINERD}
	// +optional
	Image Image `json:"image,omitempty"`
	// ServiceAccount is the Google service account email the VMs run as, for
	// example stowage-nodes@my-project.iam.gserviceaccount.com. The controller
	// needs iam.serviceAccounts.actAs on it.
	// +kubebuilder:validation:Pattern=`^[a-z0-9][-a-z0-9._]*@[-a-z0-9.]+\.(iam\.gserviceaccount\.com|developer\.gserviceaccount\.com)$`
	// +kubebuilder:validation:MaxLength=254
	// +required
	ServiceAccount string `json:"serviceAccount"`
	// Subnetwork the VMs' one network interface is in: a name in the
	// cluster's region, or projects/P/regions/R/subnetworks/S (Shared VPC).
	// Empty means the cluster's own subnetwork.
	// +kubebuilder:validation:Pattern=`^([a-z]([-a-z0-9]{0,61}[a-z0-9])?|projects/[-a-z0-9]+/regions/[-a-z0-9]+/subnetworks/[a-z]([-a-z0-9]{0,61}[a-z0-9])?)$`
	// +optional
	Subnetwork string `json:"subnetwork,omitempty"`
	// PrivateNodes gives the VMs no external IP address (the default, as on a
	// private GKE cluster). Set false for clusters without Cloud NAT.
	// +kubebuilder:default=true
	// +optional
	PrivateNodes *bool `json:"privateNodes,omitempty"`
	// NetworkTags are added to every VM, for firewall rules. GKE's own node
	// tag (gke-<cluster>-<hash>-node) is copied from the cluster's node pools.
	// +kubebuilder:validation:MaxItems=60
	// +kubebuilder:validation:items:Pattern=`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`
	// +optional
	NetworkTags []string `json:"networkTags,omitempty"`
	// Labels are Compute Engine labels added to every VM and boot disk.
	// +kubebuilder:validation:MaxProperties=50
	// +kubebuilder:validation:XValidation:message="label keys starting with stowage- or goog- are reserved",rule="self.all(k, !k.startsWith('stowage-') && !k.startsWith('goog-'))"
	// +kubebuilder:validation:XValidation:message="label keys must be lower case letters, digits, - and _, starting with a letter, at most 63 characters",rule="self.all(k, k.matches('^[a-z][-_a-z0-9]{0,62}$'))"
	// +kubebuilder:validation:XValidation:message="label values must be at most 63 lower case letters, digits, - and _ (Compute Engine refuses the VM otherwise)",rule="self.all(k, self[k].matches(r'^[-_\\p{Ll}\\p{Lo}0-9]{0,63}$'))"
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// Metadata are instance metadata entries added to every VM. The keys GKE's
	// bootstrap reads are Stowage's to write.
	// +kubebuilder:validation:MaxProperties=50
	// +kubebuilder:validation:XValidation:message="metadata keys kube-env, kube-labels, cluster-name, cluster-location, cluster-uid, user-data, configure-sh and stowage-* are set by Stowage",rule="self.all(k, !(k in ['kube-env', 'kube-labels', 'cluster-name', 'cluster-location', 'cluster-uid', 'user-data', 'configure-sh']) && !k.startsWith('stowage-'))"
	// +optional
	Metadata map[string]string `json:"metadata,omitempty"`
	// BootDisk is the VM's boot disk. GPU images, container layers and model
	// weights are large: the default is 100 GiB pd-balanced.
	// +kubebuilder:default={type: pd-balanced, sizeGiB: 100}
	// +optional
	BootDisk BootDisk `json:"bootDisk,omitempty"`
	// ShieldedInstance turns on Shielded VM features. Secure Boot stops
	// unsigned kernel modules, so it requires GKE-installed GPU drivers.
	// +kubebuilder:default={integrityMonitoring: true, vtpm: true}
	// +optional
	ShieldedInstance *ShieldedInstance `json:"shieldedInstance,omitempty"`
	// Kubelet settings for the VMs.
	// +optional
	Kubelet *Kubelet `json:"kubelet,omitempty"`
	// GPUDriver says who installs the NVIDIA driver on GPU machines. Default
	// and Latest label the node (cloud.google.com/gke-gpu-driver-version) so
	// GKE's driver installer installs that version; None leaves it to you
	// (the NVIDIA GPU operator, or your own DaemonSet).
	// +kubebuilder:validation:Enum=Default;Latest;None
	// +kubebuilder:default=Default
	// +optional
	GPUDriver string `json:"gpuDriver,omitempty"`
	// Reservations says which Compute Engine reservations launches consume.
	// +kubebuilder:default={consume: Any}
	// +optional
	Reservations Reservations `json:"reservations,omitempty"`
	// Placement says how claims with the same spec.placement.group are kept
	// together: a compact placement policy, one per group, on machine types
	// that support it (a2, a3, a4).
	// +kubebuilder:default={type: Compact}
	// +optional
	Placement PlacementPolicy `json:"placement,omitempty"`
	// BootstrapNodePool is the GKE node pool whose bootstrap metadata
	// (kube-env) the VMs copy. Empty means any of the cluster's node pools;
	// they all carry the same join settings.
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$`
	// +optional
	BootstrapNodePool string `json:"bootstrapNodePool,omitempty"`
}

// Image picks the node image.
//
// +kubebuilder:validation:XValidation:message="project only applies with name",rule="!has(self.project) || has(self.name)"
type Image struct {
	// Type is GKE's node image type: COS_CONTAINERD or UBUNTU_CONTAINERD.
	// Without name, the newest GKE image of this type for the cluster's node
	// version is used, and nodes drift when the cluster is upgraded.
	// +kubebuilder:validation:Enum=COS_CONTAINERD;UBUNTU_CONTAINERD
	// +kubebuilder:default=COS_CONTAINERD
	// +optional
	Type string `json:"type,omitempty"`
	// Name pins one image by name, for example
	// gke-1306-gke1029000-cos-113-18244-236-77-c-pre.
	// +kubebuilder:validation:Pattern=`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`
	// +optional
	Name string `json:"name,omitempty"`
	// Project holds the pinned image. Defaults to GKE's image project for the
	// type (gke-node-images for COS, ubuntu-os-gke-cloud for Ubuntu).
	// +kubebuilder:validation:Pattern=`^[a-z][-a-z0-9]{4,28}[a-z0-9]$`
	// +optional
	Project string `json:"project,omitempty"`
}

// BootDisk is the VM's boot disk.
type BootDisk struct {
	// Type is the disk type. Hyperdisk is the only choice on a3-mega, a3-ultra
	// and a4; the provider uses hyperdisk-balanced there whatever is set.
	// +kubebuilder:validation:Enum=pd-balanced;pd-ssd;pd-standard;hyperdisk-balanced
	// +kubebuilder:default=pd-balanced
	// +optional
	Type string `json:"type,omitempty"`
	// SizeGiB is the disk size.
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=65536
	// +kubebuilder:default=100
	// +optional
	SizeGiB int32 `json:"sizeGiB,omitempty"`
	// KMSKey encrypts the disk with a customer-managed key:
	// projects/P/locations/L/keyRings/R/cryptoKeys/K.
	// +kubebuilder:validation:Pattern=`^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$`
	// +optional
	KMSKey string `json:"kmsKey,omitempty"`
}

// ShieldedInstance are Shielded VM settings.
type ShieldedInstance struct {
	// +optional
	SecureBoot bool `json:"secureBoot,omitempty"`
	// +kubebuilder:default=true
	// +optional
	IntegrityMonitoring *bool `json:"integrityMonitoring,omitempty"`
	// +kubebuilder:default=true
	// +optional
	VTPM *bool `json:"vtpm,omitempty"`
}

// Kubelet are the kubelet settings Stowage writes into the VMs' kube-env.
//
// +kubebuilder:validation:XValidation:message="kubeReserved and systemReserved take only cpu, memory and ephemeral-storage",rule="(!has(self.kubeReserved) || self.kubeReserved.all(k, k in ['cpu', 'memory', 'ephemeral-storage'])) && (!has(self.systemReserved) || self.systemReserved.all(k, k in ['cpu', 'memory', 'ephemeral-storage']))"
type Kubelet struct {
	// MaxPods per node. GKE's default is 110; a lower value makes the node's
	// pod range smaller.
	// +kubebuilder:validation:Minimum=8
	// +kubebuilder:validation:Maximum=256
	// +optional
	MaxPods *int32 `json:"maxPods,omitempty"`
	// KubeReserved overrides GKE's reservation for Kubernetes daemons, e.g.
	// {cpu: 100m, memory: 1Gi}.
	// +kubebuilder:validation:MaxProperties=3
	// +optional
	KubeReserved map[string]string `json:"kubeReserved,omitempty"`
	// SystemReserved is reserved for the OS.
	// +kubebuilder:validation:MaxProperties=3
	// +optional
	SystemReserved map[string]string `json:"systemReserved,omitempty"`
}

// Reservations say which reservations launches may consume.
//
// +kubebuilder:validation:XValidation:message="names are required when consume is Specific, and only allowed then",rule="(self.consume == 'Specific') == (has(self.names) && size(self.names) > 0)"
type Reservations struct {
	// Consume is Specific (only the named reservations, offered as reserved
	// capacity), Any (reservations that any VM may consume, offered as
	// reserved capacity; other launches may still land in a matching
	// automatic reservation) or None (never consume a reservation).
	// +kubebuilder:validation:Enum=Specific;Any;None
	// +kubebuilder:default=Any
	// +optional
	Consume string `json:"consume,omitempty"`
	// Names of reservations in the cluster's project, with Specific.
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:Pattern=`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`
	// +optional
	Names []string `json:"names,omitempty"`
}

// PlacementPolicy is how a placement group is kept together.
type PlacementPolicy struct {
	// Type is Compact (one compact placement resource policy per placement
	// group, created on demand and deleted when no VM uses it) or None.
	// +kubebuilder:validation:Enum=Compact;None
	// +kubebuilder:default=Compact
	// +optional
	Type string `json:"type,omitempty"`
}

// Reservation consumption modes.
const (
	ReservationsSpecific = "Specific"
	ReservationsAny      = "Any"
	ReservationsNone     = "None"
)

// GPU driver modes.
const (
	GPUDriverDefault = "Default"
	GPUDriverLatest  = "Latest"
	GPUDriverNone    = "None"
)

// Image types.
const (
	ImageCOS    = "COS_CONTAINERD"
	ImageUbuntu = "UBUNTU_CONTAINERD"
)

// PlacementCompact is the compact placement type.
const PlacementCompact = "Compact"

// GCENodeClassStatus is what the spec resolved to.
type GCENodeClassStatus struct {
	// Image is the resolved image's URL.
	// +optional
	Image string `json:"image,omitempty"`
	// ImageName is the resolved image's name.
	// +optional
	ImageName string `json:"imageName,omitempty"`
	// Subnetwork is the resolved subnetwork's URL.
	// +optional
	Subnetwork string `json:"subnetwork,omitempty"`
	// Network is the subnetwork's network URL.
	// +optional
	Network string `json:"network,omitempty"`
	// ClusterVersion is the GKE cluster's node version the image was chosen for.
	// +optional
	ClusterVersion string `json:"clusterVersion,omitempty"`
	// BootstrapTemplate is the URL of the GKE node pool instance template
	// whose bootstrap metadata the VMs copy.
	// +optional
	BootstrapTemplate string `json:"bootstrapTemplate,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// GCENodeClass condition types.
const (
	ConditionImageReady      = "ImageReady"
	ConditionSubnetworkReady = "SubnetworkReady"
	// ConditionBootstrapReady is True once the cluster and a node pool
	// template with GKE's bootstrap metadata were read.
	ConditionBootstrapReady = "BootstrapReady"
	ConditionReady          = "Ready"
)

// GCENodeClassList is a list of GCENodeClasses.
//
// +kubebuilder:object:root=true
type GCENodeClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GCENodeClass `json:"items"`
}
