package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodePool is what a platform team allows Stowage to buy for a set of
// workloads: which machines (requirements), how they look (labels, taints),
// how many (limits), which pool wins when several fit (weight), and how they
// may be disrupted.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=nodepools,scope=Cluster,categories=stowage,shortName=np
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="NodeClass",type=string,JSONPath=".spec.template.spec.nodeClassRef.name"
// +kubebuilder:printcolumn:name="Nodes",type=string,JSONPath=".status.resources.nodes"
// +kubebuilder:printcolumn:name="Valid",type=string,JSONPath=".status.conditions[?(@.type==\"ValidationSucceeded\")].status"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=".metadata.creationTimestamp"
// +kubebuilder:printcolumn:name="Weight",type=integer,JSONPath=".spec.weight",priority=1
type NodePool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec   NodePoolSpec   `json:"spec"`
	Status NodePoolStatus `json:"status,omitempty"`

	// decodeErr is set when a stored spec did not decode (see DecodeError).
	decodeErr *DecodeError `json:"-"`
}

// NodePoolSpec is the desired shape of the pool's nodes.
type NodePoolSpec struct {
	// Template describes every NodeClaim made for this pool.
	// +required
	Template NodeClaimTemplate `json:"template"`
	// Disruption says when Stowage may remove or replace this pool's nodes.
	// +kubebuilder:default={consolidationPolicy: WhenEmptyOrUnderutilized, consolidateAfter: "0s", budgets: {{nodes: "10%"}}}
	// +optional
	Disruption Disruption `json:"disruption"`
	// Limits caps the total capacity of the pool's nodes, e.g. cpu, memory, nvidia.com/gpu.
	// Each limit is at least 0 and at most 9P (9T for cpu).
	// +kubebuilder:validation:XValidation:message="limits must be quantities from 0 to 9P (9T for cpu)",rule="self.all(k, isQuantity(string(self[k])) && !quantity(string(self[k])).isLessThan(quantity('0')) && quantity(string(self[k])).compareTo(quantity(k == 'cpu' ? '9T' : '9P')) <= 0)"
	// +kubebuilder:validation:MaxProperties=50
	// +optional
	Limits Limits `json:"limits,omitempty"`
	// Weight orders pools: when several pools can hold a pod, the highest weight is tried first.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	// +optional
	Weight *int32 `json:"weight,omitempty"`
}

// Limits caps the sum of each resource over a pool's nodes.
type Limits corev1.ResourceList

// NodeClaimTemplate is the template every NodeClaim of a pool is made from.
type NodeClaimTemplate struct {
	// +optional
	ObjectMeta ObjectMeta `json:"metadata,omitempty"`
	// +required
	Spec NodeClaimTemplateSpec `json:"spec"`
}

// ObjectMeta is the subset of metadata a template may set on nodes.
type ObjectMeta struct {
	// Labels are applied to every node. Keys in the stowage.dev domain are
	// reserved, and so are the labels each node gets from its machine
	// (hostname, zone, region, instance type, architecture, OS).
	// +kubebuilder:validation:XValidation:message="label keys must be qualified names: an optional DNS subdomain and '/', then at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="self.all(k, size(k) <= 316 && k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$'))"
	// +kubebuilder:validation:XValidation:message="label values must be at most 63 characters: empty, or alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="self.all(k, self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$'))"
	// +kubebuilder:validation:XValidation:message="labels in the stowage.dev domain are reserved; use requirements to constrain well-known labels",rule="self.all(k, !k.startsWith('stowage.dev/'))"
	// +kubebuilder:validation:XValidation:message="the hostname, zone, region, instance type, architecture and OS labels come from each node's machine; use requirements to constrain them",rule="self.all(k, !(k in ['kubernetes.io/hostname', 'topology.kubernetes.io/zone', 'topology.kubernetes.io/region', 'node.kubernetes.io/instance-type', 'kubernetes.io/arch', 'kubernetes.io/os']))"
	// +kubebuilder:validation:MaxProperties=100
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// NodeClaimTemplateSpec is the part of a NodeClaim's spec that comes from its pool.
// +kubebuilder:validation:XValidation:message="gpu.timeSlicingReplicas and gpu.migProfile cannot both be set: a GPU is either time-sliced or MIG-partitioned",rule="!has(self.gpu) || !(has(self.gpu.timeSlicingReplicas) && has(self.gpu.migProfile))"
type NodeClaimTemplateSpec struct {
	// Requirements constrain the machines the pool may buy, on any node label
	// (instance type, zone, capacity type, GPU model and count, ...).
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:message="requirements contradict each other: a key required In a single value also excludes it with NotIn or DoesNotExist",rule="!self.exists(a, a.operator == 'In' && has(a.values) && size(a.values) == 1 && self.exists(b, b.key == a.key && (b.operator == 'DoesNotExist' || (b.operator == 'NotIn' && has(b.values) && a.values[0] in b.values))))"
	// +optional
	Requirements []NodeSelectorRequirementWithMinValues `json:"requirements,omitempty"`
	// Taints are applied to every node of the pool.
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:XValidation:message="taint key must be a qualified name such as example.com/gpu: an optional DNS subdomain and '/', then at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="self.key.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$')"
	// +kubebuilder:validation:items:XValidation:message="taint value must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="!has(self.value) || self.value.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')"
	// +optional
	Taints []corev1.Taint `json:"taints,omitempty"`
	// StartupTaints are applied at registration and expected to be removed by
	// another controller (e.g. the GPU operator) once the node is ready.
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:validation:items:XValidation:message="taint key must be a qualified name such as example.com/gpu: an optional DNS subdomain and '/', then at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="self.key.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$')"
	// +kubebuilder:validation:items:XValidation:message="taint value must be at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="!has(self.value) || self.value.matches('^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$')"
	// +optional
	StartupTaints []corev1.Taint `json:"startupTaints,omitempty"`
	// NodeClassRef points to the cloud-specific node class (AMI, subnets, ...).
	// +optional
	NodeClassRef *NodeClassReference `json:"nodeClassRef,omitempty"`
	// ExpireAfter is how long a node may live before it is replaced; "Never" disables expiry.
	// +kubebuilder:default="720h"
	// +optional
	ExpireAfter NillableDuration `json:"expireAfter"`
	// TerminationGracePeriod bounds how long a draining node waits for pods
	// that block eviction (PDBs, do-not-disrupt) before it is deleted anyway.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="must be a duration in hours, minutes and seconds such as 15m or 1h30m (at most 999999h)",rule="size(self) > 0 && self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$') && duration(self) <= duration('999999h')"
	// +optional
	TerminationGracePeriod *metav1.Duration `json:"terminationGracePeriod,omitempty"`
	// RegistrationTimeout is how long a launched machine may take to join the
	// cluster before it is deleted and its pods re-planned. GPU images boot slowly.
	// +kubebuilder:default="15m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="must be a duration in hours, minutes and seconds such as 15m or 1h30m (at most 999999h)",rule="size(self) > 0 && self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$') && duration(self) <= duration('999999h')"
	// +optional
	RegistrationTimeout *metav1.Duration `json:"registrationTimeout,omitempty"`
	// GPU configures how the pool's GPUs are advertised to the scheduler.
	// +optional
	GPU *GPUSharing `json:"gpu,omitempty"`
}

// GPUSharing turns whole GPUs into shares the scheduler can hand out.
type GPUSharing struct {
	// TimeSlicingReplicas advertises each physical GPU as this many nvidia.com/gpu
	// (the NVIDIA device plugin's time-slicing). Pods share the GPU's memory.
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=64
	// +optional
	TimeSlicingReplicas *int32 `json:"timeSlicingReplicas,omitempty"`
	// MIGProfile partitions every MIG-capable GPU into instances of this profile
	// (e.g. "1g.10gb"), advertised as nvidia.com/mig-<profile>.
	// +kubebuilder:validation:Pattern=`^[1-7]g\.[0-9]+gb$`
	// +optional
	MIGProfile string `json:"migProfile,omitempty"`
}

// NodeClassReference names a cloud-specific node class object.
// +kubebuilder:validation:XValidation:message="nodeClassRef must name a node class a provider serves: aws.stowage.dev EC2NodeClass, gcp.stowage.dev GCENodeClass or azure.stowage.dev AKSNodeClass",rule="(self.group == 'aws.stowage.dev' && self.kind == 'EC2NodeClass') || (self.group == 'gcp.stowage.dev' && self.kind == 'GCENodeClass') || (self.group == 'azure.stowage.dev' && self.kind == 'AKSNodeClass')"
type NodeClassReference struct {
	// +kubebuilder:validation:MinLength=1
	// +required
	Group string `json:"group"`
	// +kubebuilder:validation:MinLength=1
	// +required
	Kind string `json:"kind"`
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// NodeSelectorRequirementWithMinValues is a node selector requirement that may
// also demand a minimum number of distinct values (e.g. at least 3 instance
// types, so spot has room to fall back).
// +kubebuilder:validation:XValidation:message="operator In requires at least one value",rule="self.operator != 'In' || (has(self.values) && size(self.values) > 0)"
// +kubebuilder:validation:XValidation:message="operators Exists and DoesNotExist take no values",rule="!(self.operator in ['Exists', 'DoesNotExist']) || !has(self.values) || size(self.values) == 0"
// +kubebuilder:validation:XValidation:message="operators Gt and Lt take exactly one integer value of at most 18 digits",rule="!(self.operator in ['Gt', 'Lt']) || (has(self.values) && size(self.values) == 1 && self.values[0].matches('^-?[0-9]{1,18}$'))"
// +kubebuilder:validation:XValidation:message="key must be a qualified name such as example.com/team: an optional DNS subdomain and '/', then at most 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric",rule="self.key.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$')"
// +kubebuilder:validation:XValidation:message="minValues must not exceed the number of values given with operator In",rule="!has(self.minValues) || self.operator != 'In' || (has(self.values) && self.minValues <= size(self.values))"
// +kubebuilder:validation:XValidation:message="capacity type must be one of reserved, spot, on-demand",rule="self.key != 'stowage.dev/capacity-type' || self.operator != 'In' || !has(self.values) || self.values.all(v, v in ['reserved', 'spot', 'on-demand'])"
// +kubebuilder:validation:XValidation:message="stowage.dev/nodepool is set by Stowage and cannot be required",rule="self.key != 'stowage.dev/nodepool'"
type NodeSelectorRequirementWithMinValues struct {
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=316
	// +required
	Key string `json:"key"`
	// +kubebuilder:validation:Enum=In;NotIn;Exists;DoesNotExist;Gt;Lt
	// +required
	Operator corev1.NodeSelectorOperator `json:"operator"`
	// Values are label values (or, for Gt and Lt, an integer), at most 63 characters each.
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=63
	// +kubebuilder:validation:items:Pattern=`^(-?[0-9]+|([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$`
	// +optional
	Values []string `json:"values,omitempty"`
	// MinValues is the minimum number of distinct values of Key the pool's candidate machines must span.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=50
	// +optional
	MinValues *int `json:"minValues,omitempty"`
}

// ConsolidationPolicy says which nodes consolidation may remove.
// +kubebuilder:validation:Enum=WhenEmpty;WhenEmptyOrUnderutilized
type ConsolidationPolicy string

// Consolidation policies.
const (
	ConsolidationPolicyWhenEmpty                ConsolidationPolicy = "WhenEmpty"
	ConsolidationPolicyWhenEmptyOrUnderutilized ConsolidationPolicy = "WhenEmptyOrUnderutilized"
)

// Disruption bounds voluntary disruption of a pool's nodes.
type Disruption struct {
	// +kubebuilder:default=WhenEmptyOrUnderutilized
	// +optional
	ConsolidationPolicy ConsolidationPolicy `json:"consolidationPolicy,omitempty"`
	// ConsolidateAfter is how long a node must stay empty or underused before
	// it is consolidated; "Never" turns consolidation off.
	// +kubebuilder:default="0s"
	// +optional
	ConsolidateAfter NillableDuration `json:"consolidateAfter"`
	// Budgets cap how many nodes may be disrupted at once, optionally per reason and time window.
	// +kubebuilder:validation:MaxItems=50
	// +kubebuilder:default={{nodes: "10%"}}
	// +optional
	Budgets []Budget `json:"budgets,omitempty"`
	// MinNodeLifetime keeps a node from being consolidated before it is this old,
	// so a model that takes minutes to load is not thrashed. Defaults to 10m for GPU nodes.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="must be a duration in hours, minutes and seconds such as 15m or 1h30m (at most 999999h)",rule="size(self) > 0 && self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$') && duration(self) <= duration('999999h')"
	// +optional
	MinNodeLifetime *metav1.Duration `json:"minNodeLifetime,omitempty"`
	// EvictRunningJobs lets voluntary disruption evict pods of running Jobs.
	// Off by default: a training step lost to consolidation costs more than it saves.
	// +optional
	EvictRunningJobs bool `json:"evictRunningJobs,omitempty"`
	// RepairAfter is how long a node's Ready condition may stay False or
	// Unknown (its kubelet stopped reporting) before the node is replaced,
	// within the Unhealthy budgets; "Never" turns repair off.
	// +kubebuilder:default="15m"
	// +optional
	RepairAfter NillableDuration `json:"repairAfter"`
}

// DisruptionReason is why a node is voluntarily disrupted.
// +kubebuilder:validation:Enum=Underutilized;Empty;Drifted;Expired;Unhealthy
type DisruptionReason string

// Disruption reasons a budget can name.
const (
	DisruptionReasonUnderutilized DisruptionReason = "Underutilized"
	DisruptionReasonEmpty         DisruptionReason = "Empty"
	DisruptionReasonDrifted       DisruptionReason = "Drifted"
	DisruptionReasonExpired       DisruptionReason = "Expired"
	// DisruptionReasonUnhealthy: the node stayed NotReady for repairAfter.
	DisruptionReasonUnhealthy DisruptionReason = "Unhealthy"
)

// Budget caps concurrent disruptions.
// +kubebuilder:validation:XValidation:message="schedule and duration must be set together",rule="has(self.schedule) == has(self.duration)"
type Budget struct {
	// Reasons limits the budget to these reasons; empty means all.
	// +optional
	Reasons []DisruptionReason `json:"reasons,omitempty"`
	// Nodes is a count ("5") or a percentage of the pool's nodes ("10%").
	// +kubebuilder:validation:Pattern=`^((100|[0-9]{1,2})%|[0-9]+)$`
	// +kubebuilder:default="10%"
	// +optional
	Nodes string `json:"nodes"`
	// Schedule is a cron expression (UTC) for when the budget starts being active:
	// five fields (minute hour day-of-month month day-of-week) or one of @yearly,
	// @annually, @monthly, @weekly, @daily, @midnight, @hourly.
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:XValidation:message="schedule must be a cron expression of five fields (minute 0-59, hour 0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-6 or sun-sat) separated by single spaces, or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",rule="self.matches('^(@(annually|yearly|monthly|weekly|daily|midnight|hourly)|(([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]?)?)(,(([*]|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]?)?))* (([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]?)?)(,(([*]|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]?)?))* (([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]?)?)(,(([*]|[?]|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]?)?))* (([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[1-9][0-9]?)?)(,(([*]|(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec))(-(0?[1-9]|1[0-2]|(?i:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)))?)(/[1-9][0-9]?)?))* (([*]|[?]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[1-9][0-9]?)?)(,(([*]|[?]|([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat))(-([0-6]|(?i:sun|mon|tue|wed|thu|fri|sat)))?)(/[1-9][0-9]?)?))*)$')"
	// +optional
	Schedule *string `json:"schedule,omitempty"`
	// Duration is how long the budget is active after each scheduled start.
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:XValidation:message="must be a duration in hours, minutes and seconds such as 15m or 1h30m (at most 999999h)",rule="size(self) > 0 && self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$') && duration(self) <= duration('999999h')"
	// +optional
	Duration *metav1.Duration `json:"duration,omitempty"`
}

// NodePoolStatus reports the pool's current size.
type NodePoolStatus struct {
	// Resources is the capacity of the pool's launched machines, plus "nodes",
	// the number of its NodeClaims (written at most every few seconds).
	// +optional
	Resources corev1.ResourceList `json:"resources,omitempty"`
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodePoolList is a list of NodePools.
//
// +kubebuilder:object:root=true
type NodePoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodePool `json:"items"`
}
