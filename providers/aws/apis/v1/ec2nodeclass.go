package v1

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// EC2NodeClass says how Stowage launches EC2 instances for the NodePools that
// reference it: which image, network, IAM identity, disks and user data.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=ec2nodeclasses,scope=Cluster,categories=stowage,shortName=ec2nc
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=".status.conditions[?(@.type==\"Ready\")].status"
// +kubebuilder:printcolumn:name="Role",type=string,JSONPath=".spec.role",priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
type EC2NodeClass struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   EC2NodeClassSpec   `json:"spec"`
	Status EC2NodeClassStatus `json:"status,omitempty"`
}

// EC2NodeClassSpec is the desired launch configuration.
//
// +kubebuilder:validation:XValidation:message="exactly one of role or instanceProfile must be set",rule="has(self.role) != has(self.instanceProfile)"
// +kubebuilder:validation:XValidation:message="amiFamily is set only with id, name or tags terms: an alias names its family",rule="!has(self.amiFamily) || !self.amiSelectorTerms.exists(t, has(t.alias))"
// +kubebuilder:validation:XValidation:message="amiFamily Custom needs userData: Stowage writes no bootstrap for custom images",rule="!has(self.amiFamily) || self.amiFamily != 'Custom' || has(self.userData)"
type EC2NodeClassSpec struct {
	// AMIFamily is the bootstrap format of images picked by id, name or tags
	// terms: AL2023 (nodeadm NodeConfig, the default), Bottlerocket (TOML
	// settings) or Custom (userData is passed to the instance unchanged and
	// must join the node itself). An alias term names its family instead.
	// +kubebuilder:validation:Enum=AL2023;Bottlerocket;Custom
	// +optional
	AMIFamily string `json:"amiFamily,omitempty"`
	// AMISelectorTerms pick the node image. An alias resolves Amazon's EKS
	// images for the cluster's Kubernetes version through public SSM
	// parameters, with the NVIDIA and Neuron variants for accelerated types.
	// Other terms are ORed; the newest image matching any term wins for each
	// architecture and variant.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=30
	// +kubebuilder:validation:XValidation:message="an alias term cannot be combined with other terms",rule="!self.exists(t, has(t.alias)) || size(self) == 1"
	// +required
	AMISelectorTerms []AMISelectorTerm `json:"amiSelectorTerms"`
	// SubnetSelectorTerms pick the subnets instances launch into; one per zone is used.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=30
	// +required
	SubnetSelectorTerms []SelectorTerm `json:"subnetSelectorTerms"`
	// SecurityGroupSelectorTerms pick the security groups every instance gets.
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=30
	// +required
	SecurityGroupSelectorTerms []SelectorTerm `json:"securityGroupSelectorTerms"`
	// CapacityReservationSelectorTerms pick the On-Demand Capacity
	// Reservations and Capacity Blocks this class may launch into. Without
	// terms no reservation is used, and on-demand launches never consume an
	// open reservation by accident.
	// +kubebuilder:validation:MaxItems=30
	// +optional
	CapacityReservationSelectorTerms []CapacityReservationSelectorTerm `json:"capacityReservationSelectorTerms,omitempty"`
	// Role is the IAM role nodes assume; Stowage creates and tags an instance
	// profile holding it (stowage_<cluster>_<hash>).
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +optional
	Role string `json:"role,omitempty"`
	// InstanceProfile is an existing IAM instance profile to launch with.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +optional
	InstanceProfile string `json:"instanceProfile,omitempty"`
	// Kubelet settings for nodes of this class. Stowage plans with the
	// allocatable they leave, so the solver and the kubelet agree.
	// +optional
	Kubelet *KubeletConfiguration `json:"kubelet,omitempty"`
	// EFA attaches Elastic Fabric Adapter interfaces (as many as the type
	// supports) to machines of EFA-capable types that join a placement group
	// or whose pods request vpc.amazonaws.com/efa. Disabled never attaches them.
	// +kubebuilder:validation:Enum=Auto;Disabled
	// +kubebuilder:default=Auto
	// +optional
	EFA string `json:"efa,omitempty"`
	// BlockDeviceMappings are the instance's volumes. Empty means the AMI's
	// root volume grown to 100 GiB gp3: GPU images and model weights are large.
	// +kubebuilder:validation:MaxItems=50
	// +optional
	BlockDeviceMappings []BlockDeviceMapping `json:"blockDeviceMappings,omitempty"`
	// UserData runs before the bootstrap the node needs to join the cluster:
	// for AL2023 a shell script, a NodeConfig or a MIME multi-part document
	// whose parts are placed before Stowage's NodeConfig part; for
	// Bottlerocket TOML merged with the settings.kubernetes keys Stowage
	// writes, which it must not set itself; for Custom the whole user data.
	// See docs/aws.md.
	// +kubebuilder:validation:MaxLength=16384
	// +optional
	UserData *string `json:"userData,omitempty"`
	// Tags are added to every instance, volume and launch template. EC2's
	// limits apply: keys of 1 to 128 characters not starting with aws: in
	// any case, values of at most 256. EC2 allows 50 tags per resource and
	// Stowage adds 5 to each instance (Name, stowage.dev/cluster,
	// stowage.dev/nodepool, stowage.dev/nodeclaim,
	// aws.stowage.dev/ec2nodeclass): 40 of yours keep within it with room.
	// +kubebuilder:validation:XValidation:message="tags in the stowage.dev domain are reserved",rule="self.all(k, !k.startsWith('stowage.dev/'))"
	// +kubebuilder:validation:XValidation:message="tag keys must not start with aws: (in any case): EC2 reserves them",rule="self.all(k, !k.lowerAscii().startsWith('aws:'))"
	// +kubebuilder:validation:XValidation:message="tag keys must be 1 to 128 characters",rule="self.all(k, size(k) >= 1 && size(k) <= 128)"
	// +kubebuilder:validation:XValidation:message="tag values must be at most 256 characters",rule="self.all(k, size(self[k]) <= 256)"
	// +kubebuilder:validation:MaxProperties=40
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// MetadataOptions configure the instance metadata service. IMDSv2 (tokens
	// required) with a hop limit of 1 keeps pods from reading node credentials.
	// +kubebuilder:default={httpEndpoint: enabled, httpTokens: required, httpPutResponseHopLimit: 1}
	// +optional
	MetadataOptions *MetadataOptions `json:"metadataOptions,omitempty"`
}

// AMISelectorTerm selects images by alias, ID, or tags and/or name (with an
// optional owner).
//
// +kubebuilder:validation:XValidation:message="set exactly one of alias, id, or tags/name",rule="[has(self.alias), has(self.id), has(self.tags) || has(self.name)].filter(x, x).size() == 1"
// +kubebuilder:validation:XValidation:message="owner only refines a tags or name term",rule="!(has(self.alias) || has(self.id)) || !has(self.owner)"
type AMISelectorTerm struct {
	// Alias names a family and version: al2023@latest, al2023@v20261101,
	// bottlerocket@latest, bottlerocket@v1.50.0. The images match the
	// cluster's Kubernetes version. al2023-nvidia and bottlerocket-nvidia
	// resolve only the NVIDIA variant. The version defaults to latest.
	// +kubebuilder:validation:Pattern=`^(al2023|al2023-nvidia|bottlerocket|bottlerocket-nvidia)(@(latest|v[0-9]+(\.[0-9]+)*))?$`
	// +optional
	Alias string `json:"alias,omitempty"`
	// ID is an image ID such as ami-0123456789abcdef0.
	// +kubebuilder:validation:Pattern=`^ami-[0-9a-f]+$`
	// +optional
	ID string `json:"id,omitempty"`
	// Tags match images carrying every key with the value; "*" matches any value.
	// +kubebuilder:validation:MinProperties=1
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// Name selects images by name (wildcards allowed), alone or with tags.
	// +kubebuilder:validation:MinLength=1
	// +optional
	Name string `json:"name,omitempty"`
	// Owner filters tags or name terms by owner account or alias ("self", "amazon").
	// +optional
	Owner string `json:"owner,omitempty"`
}

// SelectorTerm selects subnets or security groups by ID or by tags.
//
// +kubebuilder:validation:XValidation:message="set exactly one of id or tags",rule="has(self.id) != has(self.tags)"
type SelectorTerm struct {
	// ID is a subnet (subnet-...) or security group (sg-...) ID.
	// +kubebuilder:validation:Pattern=`^(subnet|sg)-[0-9a-f]+$`
	// +optional
	ID string `json:"id,omitempty"`
	// Tags match resources carrying every key with the value; "*" matches any value.
	// +kubebuilder:validation:MinProperties=1
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
}

// CapacityReservationSelectorTerm selects reservations by ID, or by tags
// (optionally of one owner account).
//
// +kubebuilder:validation:XValidation:message="set exactly one of id or tags",rule="has(self.id) != has(self.tags)"
// +kubebuilder:validation:XValidation:message="ownerID only refines a tags term",rule="!has(self.id) || !has(self.ownerID)"
type CapacityReservationSelectorTerm struct {
	// ID is a reservation ID such as cr-0123456789abcdef0.
	// +kubebuilder:validation:Pattern=`^cr-[0-9a-f]+$`
	// +optional
	ID string `json:"id,omitempty"`
	// Tags match reservations carrying every key with the value; "*" matches any value.
	// +kubebuilder:validation:MinProperties=1
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// OwnerID is the account that owns the reservation (shared reservations).
	// +kubebuilder:validation:Pattern=`^[0-9]{12}$`
	// +optional
	OwnerID string `json:"ownerID,omitempty"`
}

// KubeletConfiguration is the part of the kubelet's configuration Stowage
// writes into user data and plans with. Unset fields keep the EKS defaults:
// max pods from the VPC CNI limit, kube-reserved from the EKS formula,
// memory.available<100Mi and nodefs.available<10%.
//
// +kubebuilder:validation:XValidation:message="imageGCLowThresholdPercent must be lower than imageGCHighThresholdPercent",rule="!has(self.imageGCHighThresholdPercent) || !has(self.imageGCLowThresholdPercent) || self.imageGCLowThresholdPercent < self.imageGCHighThresholdPercent"
// +kubebuilder:validation:XValidation:message="every evictionSoft signal needs an evictionSoftGracePeriod",rule="!has(self.evictionSoft) || self.evictionSoft.all(k, has(self.evictionSoftGracePeriod) && k in self.evictionSoftGracePeriod)"
// +kubebuilder:validation:XValidation:message="every evictionSoftGracePeriod signal needs an evictionSoft threshold",rule="!has(self.evictionSoftGracePeriod) || self.evictionSoftGracePeriod.all(k, has(self.evictionSoft) && k in self.evictionSoft)"
type KubeletConfiguration struct {
	// MaxPods caps the pods per node, below the VPC CNI's per-type limit.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=737
	// +optional
	MaxPods *int32 `json:"maxPods,omitempty"`
	// SystemReserved is kept back for the OS: cpu, memory, ephemeral-storage, pid.
	// +kubebuilder:validation:MaxProperties=4
	// +kubebuilder:validation:XValidation:message="keys must be cpu, memory, ephemeral-storage or pid",rule="self.all(k, k in ['cpu', 'memory', 'ephemeral-storage', 'pid'])"
	// +optional
	SystemReserved map[string]Quantity `json:"systemReserved,omitempty"`
	// KubeReserved is kept back for the kubelet and container runtime; it
	// replaces the EKS formula for the keys it sets.
	// +kubebuilder:validation:MaxProperties=4
	// +kubebuilder:validation:XValidation:message="keys must be cpu, memory, ephemeral-storage or pid",rule="self.all(k, k in ['cpu', 'memory', 'ephemeral-storage', 'pid'])"
	// +optional
	KubeReserved map[string]Quantity `json:"kubeReserved,omitempty"`
	// EvictionHard thresholds by signal, as quantities or percentages.
	// +kubebuilder:validation:MaxProperties=6
	// +kubebuilder:validation:XValidation:message="keys must be memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree or pid.available",rule="self.all(k, k in ['memory.available', 'nodefs.available', 'nodefs.inodesFree', 'imagefs.available', 'imagefs.inodesFree', 'pid.available'])"
	// +optional
	EvictionHard map[string]Threshold `json:"evictionHard,omitempty"`
	// EvictionSoft thresholds by signal; each needs a grace period.
	// +kubebuilder:validation:MaxProperties=6
	// +kubebuilder:validation:XValidation:message="keys must be memory.available, nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree or pid.available",rule="self.all(k, k in ['memory.available', 'nodefs.available', 'nodefs.inodesFree', 'imagefs.available', 'imagefs.inodesFree', 'pid.available'])"
	// +optional
	EvictionSoft map[string]Threshold `json:"evictionSoft,omitempty"`
	// EvictionSoftGracePeriod per evictionSoft signal.
	// +kubebuilder:validation:MaxProperties=6
	// +optional
	EvictionSoftGracePeriod map[string]metav1.Duration `json:"evictionSoftGracePeriod,omitempty"`
	// ImageGCHighThresholdPercent of disk use starts image garbage collection.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	ImageGCHighThresholdPercent *int32 `json:"imageGCHighThresholdPercent,omitempty"`
	// ImageGCLowThresholdPercent is where image garbage collection stops.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +optional
	ImageGCLowThresholdPercent *int32 `json:"imageGCLowThresholdPercent,omitempty"`
}

// Quantity is a resource quantity such as 100m, 1.5Gi or 1000.
// +kubebuilder:validation:Pattern=`^[0-9]+([.][0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$`
// +kubebuilder:validation:MaxLength=32
type Quantity string

// Threshold is an eviction threshold: a quantity such as 500Mi or a
// percentage of capacity such as 10%.
// +kubebuilder:validation:Pattern=`^([0-9]+([.][0-9]+)?(k|M|G|T|Ki|Mi|Gi|Ti)?|[0-9]+([.][0-9]+)?%)$`
// +kubebuilder:validation:MaxLength=32
type Threshold string

// BlockDeviceMapping is one EBS volume.
type BlockDeviceMapping struct {
	// DeviceName such as /dev/xvda.
	// +kubebuilder:validation:MinLength=1
	// +required
	DeviceName string `json:"deviceName"`
	// +required
	EBS BlockDevice `json:"ebs"`
	// RootVolume marks the volume the kubelet uses for ephemeral storage.
	// +optional
	RootVolume bool `json:"rootVolume,omitempty"`
}

// BlockDevice is an EBS volume's settings.
type BlockDevice struct {
	// VolumeSize in Kubernetes quantity form, e.g. 200Gi.
	// +kubebuilder:validation:Pattern=`^[0-9]+(Gi|Ti)$`
	// +required
	VolumeSize string `json:"volumeSize"`
	// +kubebuilder:validation:Enum=gp2;gp3;io1;io2;st1;sc1;standard
	// +kubebuilder:default=gp3
	// +optional
	VolumeType string `json:"volumeType,omitempty"`
	// +kubebuilder:validation:Minimum=100
	// +kubebuilder:validation:Maximum=256000
	// +optional
	IOPS *int32 `json:"iops,omitempty"`
	// Throughput in MiB/s, gp3 only.
	// +kubebuilder:validation:Minimum=125
	// +kubebuilder:validation:Maximum=2000
	// +optional
	Throughput *int32 `json:"throughput,omitempty"`
	// +kubebuilder:default=true
	// +optional
	Encrypted *bool `json:"encrypted,omitempty"`
	// +optional
	KMSKeyID string `json:"kmsKeyID,omitempty"`
	// +kubebuilder:default=true
	// +optional
	DeleteOnTermination *bool `json:"deleteOnTermination,omitempty"`
	// +optional
	SnapshotID string `json:"snapshotID,omitempty"`
}

// MetadataOptions configure IMDS on launched instances.
type MetadataOptions struct {
	// +kubebuilder:validation:Enum=enabled;disabled
	// +kubebuilder:default=enabled
	// +optional
	HTTPEndpoint string `json:"httpEndpoint,omitempty"`
	// HTTPTokens "required" enforces IMDSv2.
	// +kubebuilder:validation:Enum=required;optional
	// +kubebuilder:default=required
	// +optional
	HTTPTokens string `json:"httpTokens,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=64
	// +kubebuilder:default=1
	// +optional
	HTTPPutResponseHopLimit *int32 `json:"httpPutResponseHopLimit,omitempty"`
}

// EC2NodeClassStatus is what the selectors resolved to.
type EC2NodeClassStatus struct {
	// +optional
	Subnets []Subnet `json:"subnets,omitempty"`
	// +optional
	SecurityGroups []SecurityGroup `json:"securityGroups,omitempty"`
	// +optional
	AMIs []AMI `json:"amis,omitempty"`
	// KubernetesVersion is the API server's minor version (such as 1.33)
	// alias images were resolved for.
	// +optional
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// CapacityReservations are the active reservations the selector terms matched.
	// +optional
	CapacityReservations []CapacityReservation `json:"capacityReservations,omitempty"`
	// InstanceProfile is the profile instances launch with.
	// +optional
	InstanceProfile string `json:"instanceProfile,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// Subnet is one resolved subnet.
type Subnet struct {
	// +required
	ID string `json:"id"`
	// +required
	Zone string `json:"zone"`
	// +optional
	ZoneID string `json:"zoneID,omitempty"`
}

// SecurityGroup is one resolved security group.
type SecurityGroup struct {
	// +required
	ID string `json:"id"`
	// +optional
	Name string `json:"name,omitempty"`
}

// AMI is one resolved image.
type AMI struct {
	// +required
	ID string `json:"id"`
	// +optional
	Name string `json:"name,omitempty"`
	// Arch is the Kubernetes architecture: amd64 or arm64.
	// +optional
	Arch string `json:"arch,omitempty"`
	// Variant is the accelerator support the image carries: standard (none),
	// nvidia (NVIDIA driver, for NVIDIA GPU types) or neuron (the AWS Neuron
	// driver, for Trainium and Inferentia types).
	// +kubebuilder:validation:Enum=standard;nvidia;neuron
	// +optional
	Variant string `json:"variant,omitempty"`
}

// Image variants.
const (
	VariantStandard = "standard"
	VariantNVIDIA   = "nvidia"
	VariantNeuron   = "neuron"
)

// CapacityReservation is one reservation a node class may launch into.
type CapacityReservation struct {
	// +required
	ID string `json:"id"`
	// +required
	InstanceType string `json:"instanceType"`
	// +required
	Zone string `json:"zone"`
	// +optional
	OwnerID string `json:"ownerID,omitempty"`
	// Type is default (an On-Demand Capacity Reservation) or capacity-block.
	// +optional
	Type string `json:"type,omitempty"`
	// InstanceMatchCriteria is open (matching launches use it without
	// asking) or targeted (only launches that name it).
	// +optional
	InstanceMatchCriteria string `json:"instanceMatchCriteria,omitempty"`
	// EndTime is when the reservation ends, if it does.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
}

// EC2NodeClass condition types.
const (
	ConditionSubnetsReady        = "SubnetsReady"
	ConditionSecurityGroupsReady = "SecurityGroupsReady"
	ConditionAMIsReady           = "AMIsReady"
	// ConditionInstanceProfileReady is True once the instance profile for
	// spec.role exists and holds the role (or spec.instanceProfile is set).
	ConditionInstanceProfileReady = "InstanceProfileReady"
	// ConditionJoinSettingsReady is True when the controller has what nodes
	// need to join: cluster endpoint, CA bundle and service CIDR.
	ConditionJoinSettingsReady = "JoinSettingsReady"
	// ConditionCapacityReservationsReady is True when the reservation
	// selector terms could be resolved (matching none is not an error).
	ConditionCapacityReservationsReady = "CapacityReservationsReady"
	// ConditionEFAReady says whether a selected security group allows the
	// all-traffic self-referencing rules EFA needs. It is informational: it
	// does not gate Ready, because only EFA launches need it.
	ConditionEFAReady = "EFAReady"
	ConditionReady    = "Ready"
)

// Finalizer holds an EC2NodeClass until its NodeClaims are gone and the
// launch templates and instance profile Stowage made for it are deleted.
const Finalizer = Group + "/termination"

// EFA modes.
const (
	EFAAuto     = "Auto"
	EFADisabled = "Disabled"
)

// AMI families.
const (
	AMIFamilyAL2023       = "AL2023"
	AMIFamilyBottlerocket = "Bottlerocket"
	AMIFamilyCustom       = "Custom"
)

// EC2NodeClassList is a list of EC2NodeClasses.
//
// +kubebuilder:object:root=true
type EC2NodeClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EC2NodeClass `json:"items"`
}

// Family is the node class's bootstrap format: its alias's family, else
// spec.amiFamily, else AL2023.
func (in *EC2NodeClass) Family() string {
	for _, t := range in.Spec.AMISelectorTerms {
		if strings.HasPrefix(t.Alias, "bottlerocket") {
			return AMIFamilyBottlerocket
		}
		if t.Alias != "" {
			return AMIFamilyAL2023
		}
	}
	if in.Spec.AMIFamily != "" {
		return in.Spec.AMIFamily
	}
	// Images picked by id, name or tags without amiFamily: Bottlerocket when
	// every resolved image is named like Amazon's Bottlerocket images.
	bottlerocket := len(in.Status.AMIs) > 0
	for _, a := range in.Status.AMIs {
		if !strings.Contains(strings.ToLower(a.Name), "bottlerocket") {
			bottlerocket = false
		}
	}
	if bottlerocket {
		return AMIFamilyBottlerocket
	}
	return AMIFamilyAL2023
}

// ReadyCondition is the Ready condition when it describes the current spec
// (observed at the object's generation), else nil: a status resolved for an
// older spec says nothing about this one.
func (in *EC2NodeClass) ReadyCondition() *metav1.Condition {
	for i := range in.Status.Conditions {
		c := &in.Status.Conditions[i]
		if c.Type == ConditionReady && c.ObservedGeneration == in.Generation {
			return c
		}
	}
	return nil
}
