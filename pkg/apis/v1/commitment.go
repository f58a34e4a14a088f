package v1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Commitment declares a discount the cloud bill already carries: a Savings
// Plan, Reserved Instances, a committed-use discount, or a negotiated
// discount. The solver prices a machine at its marginal cost to the bill:
// on-demand usage the commitment still covers first (already paid for), then
// the discounted rate, then list price. Commitments cover on-demand usage
// only; spot and capacity reservations are priced as they are.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:path=commitments,scope=Cluster,categories=stowage
// +kubebuilder:printcolumn:name="Type",type=string,JSONPath=".spec.type"
// +kubebuilder:printcolumn:name="Count",type=integer,JSONPath=".spec.count"
// +kubebuilder:printcolumn:name="$/h",type=string,JSONPath=".spec.amountPerHour"
// +kubebuilder:printcolumn:name="Discount",type=integer,JSONPath=".spec.discountPercent"
// +kubebuilder:printcolumn:name="Ends",type=date,JSONPath=".spec.endTime"
type Commitment struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec CommitmentSpec `json:"spec"`
}

// CommitmentType is the kind of commitment.
// +kubebuilder:validation:Enum=SavingsPlan;ReservedInstances;CommittedUse;Discount
type CommitmentType string

const (
	// CommitmentSavingsPlan commits to spend amountPerHour (at the
	// discounted rate) on covered usage, e.g. an AWS Compute or EC2 Instance
	// Savings Plan, or a spend-based GCP committed-use discount.
	CommitmentSavingsPlan CommitmentType = "SavingsPlan"
	// CommitmentReservedInstances pays for count machines of the covered
	// types whether they run or not, e.g. AWS Reserved Instances or Azure
	// reservations.
	CommitmentReservedInstances CommitmentType = "ReservedInstances"
	// CommitmentCommittedUse is a resource-based committed-use discount: a
	// count of machines, or an amount per hour.
	CommitmentCommittedUse CommitmentType = "CommittedUse"
	// CommitmentDiscount is a rate off list price on all covered usage with
	// no commitment to use it, e.g. a private pricing agreement.
	CommitmentDiscount CommitmentType = "Discount"
)

// CommitmentSpec says what is committed and what it covers.
//
// +kubebuilder:validation:XValidation:message="exactly one of count and amountPerHour is required, except for type Discount which takes neither",rule="self.type == 'Discount' ? !has(self.count) && !has(self.amountPerHour) : has(self.count) != has(self.amountPerHour)"
// +kubebuilder:validation:XValidation:message="a Discount needs discountPercent above 0",rule="self.type != 'Discount' || (has(self.discountPercent) && self.discountPercent > 0)"
// +kubebuilder:validation:XValidation:message="ReservedInstances are a count of machines",rule="self.type != 'ReservedInstances' || has(self.count)"
// +kubebuilder:validation:XValidation:message="a SavingsPlan is an amount per hour",rule="self.type != 'SavingsPlan' || has(self.amountPerHour)"
type CommitmentSpec struct {
	// +required
	Type CommitmentType `json:"type"`
	// Requirements select the machines the commitment covers, by node labels
	// (node.kubernetes.io/instance-type, stowage.dev/instance-family,
	// topology.kubernetes.io/zone, kubernetes.io/arch, ...). Empty covers
	// every on-demand machine. Same form as a NodePool's requirements,
	// without minValues.
	// +kubebuilder:validation:MaxItems=30
	// +kubebuilder:validation:XValidation:message="minValues has no meaning in a commitment",rule="self.all(r, !has(r.minValues))"
	// +optional
	Requirements []NodeSelectorRequirementWithMinValues `json:"requirements,omitempty"`
	// Count is how many covered machines the commitment pays for.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	Count *int32 `json:"count,omitempty"`
	// AmountPerHour is the committed spend in US dollars per hour, charged
	// at the discounted rate.
	// +kubebuilder:validation:XValidation:message="amountPerHour must be above 0 and at most 1000000",rule="quantity(self).isGreaterThan(quantity('0')) && quantity(self).compareTo(quantity('1000000')) <= 0"
	// +optional
	AmountPerHour *resource.Quantity `json:"amountPerHour,omitempty"`
	// DiscountPercent is how far below the on-demand list price covered usage
	// is charged (for an amount per hour, the rate its dollars buy usage at).
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=99
	// +optional
	DiscountPercent *int32 `json:"discountPercent,omitempty"`
	// EndTime is when the commitment ends; after it the commitment is ignored.
	// +optional
	EndTime *metav1.Time `json:"endTime,omitempty"`
}

// CommitmentList is a list of Commitments.
//
// +kubebuilder:object:root=true
type CommitmentList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Commitment `json:"items"`
}
