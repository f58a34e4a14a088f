package validation

import (
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// maxCommitmentAmount is the largest amountPerHour the CRD accepts.
var maxCommitmentAmount = resource.MustParse("1000000")

// Commitment validates a Commitment as its CRD does.
func Commitment(c *v1.Commitment) field.ErrorList {
	errs := objectName(c.Name)
	spec := field.NewPath("spec")
	s := c.Spec
	switch s.Type {
	case v1.CommitmentDiscount:
		if s.Count != nil || s.AmountPerHour != nil {
			errs = append(errs, field.Invalid(spec, "", "a Discount takes neither count nor amountPerHour (exactly one of count and amountPerHour, except for type Discount)"))
		}
		if s.DiscountPercent == nil || *s.DiscountPercent <= 0 {
			errs = append(errs, field.Invalid(spec.Child("discountPercent"), s.DiscountPercent, "a Discount needs discountPercent above 0"))
		}
	case v1.CommitmentSavingsPlan, v1.CommitmentReservedInstances, v1.CommitmentCommittedUse:
		switch {
		case (s.Count != nil) == (s.AmountPerHour != nil):
			errs = append(errs, field.Invalid(spec, "", "exactly one of count and amountPerHour is required"))
		case s.Type == v1.CommitmentSavingsPlan && s.AmountPerHour == nil:
			errs = append(errs, field.Invalid(spec.Child("amountPerHour"), nil, "a SavingsPlan is an amount per hour"))
		case s.Type == v1.CommitmentReservedInstances && s.Count == nil:
			errs = append(errs, field.Invalid(spec.Child("count"), nil, "ReservedInstances are a count of machines"))
		}
	default:
		errs = append(errs, field.NotSupported(spec.Child("type"), s.Type, []v1.CommitmentType{
			v1.CommitmentSavingsPlan, v1.CommitmentReservedInstances, v1.CommitmentCommittedUse, v1.CommitmentDiscount}))
	}
	if s.Count != nil && (*s.Count < 1 || *s.Count > 1000000) {
		errs = append(errs, field.Invalid(spec.Child("count"), *s.Count, "must be from 1 to 1000000"))
	}
	if a := s.AmountPerHour; a != nil && (a.Sign() <= 0 || a.Cmp(maxCommitmentAmount) > 0) {
		errs = append(errs, field.Invalid(spec.Child("amountPerHour"), a.String(), "amountPerHour must be above 0 and at most 1000000"))
	}
	if p := s.DiscountPercent; p != nil && (*p < 0 || *p > 99) {
		errs = append(errs, field.Invalid(spec.Child("discountPercent"), *p, "must be from 0 to 99"))
	}
	if len(s.Requirements) > 30 {
		errs = append(errs, field.TooMany(spec.Child("requirements"), len(s.Requirements), 30))
	}
	for i, r := range s.Requirements {
		p := spec.Child("requirements").Index(i)
		errs = append(errs, Requirement(p, r)...)
		if r.MinValues != nil {
			errs = append(errs, field.Invalid(p.Child("minValues"), *r.MinValues, "minValues has no meaning in a commitment"))
		}
	}
	return errs
}
