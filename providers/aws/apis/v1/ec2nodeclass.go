package v1

import (
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
type EC2NodeClassSpec struct {
	// AMISelectorTerms pick the node image. Terms are ORed; the newest image
	// matching any term wins for each architecture.
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
	// BlockDeviceMappings are the instance's volumes. Empty means the AMI's
	// root volume grown to 100 GiB gp3: GPU images and model weights are large.
	// +kubebuilder:validation:MaxItems=50
	// +optional
	BlockDeviceMappings []BlockDeviceMapping `json:"blockDeviceMappings,omitempty"`
	// UserData runs before the bootstrap the node needs to join the cluster:
	// for AL2023 it is one part (a shell script or a NodeConfig) placed before
	// Stowage's NodeConfig part; for Bottlerocket it is TOML placed before
	// Stowage's [settings.kubernetes] table, which it must not set itself.
	// See docs/aws.md.
	// +kubebuilder:validation:MaxLength=16384
	// +optional
	UserData *string `json:"userData,omitempty"`
	// Tags are added to every instance, volume and launch template.
	// +kubebuilder:validation:XValidation:message="tags in the stowage.dev domain are reserved",rule="self.all(k, !k.startsWith('stowage.dev/'))"
	// +kubebuilder:validation:XValidation:message="tag keys must not start with aws:",rule="self.all(k, !k.startsWith('aws:'))"
	// +kubebuilder:validation:MaxProperties=40
	// +optional
	Tags map[string]string `json:"tags,omitempty"`
	// MetadataOptions configure the instance metadata service. IMDSv2 (tokens
	// required) with a hop limit of 1 keeps pods from reading node credentials.
	// +kubebuilder:default={httpEndpoint: enabled, httpTokens: required, httpPutResponseHopLimit: 1}
	// +optional
	MetadataOptions *MetadataOptions `json:"metadataOptions,omitempty"`
}

// AMISelectorTerm selects images by alias, ID, or tags (and optional name/owner).
//
// +kubebuilder:validation:XValidation:message="set exactly one of alias, id, or tags",rule="[has(self.alias), has(self.id), has(self.tags)].filter(x, x).size() == 1"
// +kubebuilder:validation:XValidation:message="owner and name only refine a tags term",rule="!(has(self.alias) || has(self.id)) || !(has(self.owner) || has(self.name))"
type AMISelectorTerm struct {
	// Alias names a family and version: al2023@latest, al2023-nvidia@v20261101,
	// bottlerocket@latest, bottlerocket-nvidia@latest. The version defaults to latest.
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
	// Name filters tag-selected images by name (wildcards allowed).
	// +optional
	Name string `json:"name,omitempty"`
	// Owner filters tag-selected images by owner account or alias ("self", "amazon").
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
	// NVIDIA is true for images with the NVIDIA driver, used for GPU types.
	// +optional
	NVIDIA bool `json:"nvidia,omitempty"`
}

// EC2NodeClass condition types.
const (
	ConditionSubnetsReady        = "SubnetsReady"
	ConditionSecurityGroupsReady = "SecurityGroupsReady"
	ConditionAMIsReady           = "AMIsReady"
	// ConditionInstanceProfileReady is True once the instance profile for
	// spec.role exists and holds the role (or spec.instanceProfile is set).
	ConditionInstanceProfileReady = "InstanceProfileReady"
	ConditionReady                = "Ready"
)

// EC2NodeClassList is a list of EC2NodeClasses.
//
// +kubebuilder:object:root=true
type EC2NodeClassList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []EC2NodeClass `json:"items"`
}
