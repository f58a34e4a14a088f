// Package validation is the one place that says what a valid NodePool,
// NodeClaim and workload pod is. The CRDs' CEL rules check the same things
// where CEL can (test/crds runs every case through both); `stowage simulate`,
// `stowage import karpenter` and the controllers call this package, so the
// four never disagree about what Stowage accepts.
//
// Errors are field.ErrorLists: each names the field by its JSON path, with
// the same wording the API server uses.
package validation

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/robfig/cron/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Limits the CRDs enforce with maxItems and friends.
const (
	MaxRequirements = 100
	MaxValues       = 500
	MaxTaints       = 50
	MaxBudgets      = 50
	MaxLabels       = 100
	MaxLimits       = 50
	MaxOfferings    = 60
	// MaxIntegerDigits bounds the value of a Gt or Lt requirement, so it
	// always fits an int64.
	MaxIntegerDigits = 18
)

// MaxQuantity is the largest resource quantity Stowage accepts (9P, in
// bytes, counts or devices), and MaxCPU the largest CPU quantity (9T cores):
// both are 9e15 in the units the solver counts in, so its int64 arithmetic
// never overflows.
var (
	MaxQuantity = resource.MustParse("9P")
	MaxCPU      = resource.MustParse("9T")
)

// NodeClassKinds are the node classes providers serve; a nodeClassRef must name one.
var NodeClassKinds = []schema.GroupKind{
	{Group: "aws.stowage.dev", Kind: "EC2NodeClass"},
	{Group: "gcp.stowage.dev", Kind: "GCENodeClass"},
	{Group: "azure.stowage.dev", Kind: "AKSNodeClass"},
}

var (
	budgetNodesRE = regexp.MustCompile(`^((100|[0-9]{1,2})%|[0-9]+)$`)
	migProfileRE  = regexp.MustCompile(`^[1-7]g\.[0-9]+gb$`)
	integerRE     = regexp.MustCompile(`^-?[0-9]{1,18}$`)
	priceRE       = regexp.MustCompile(`^[0-9]{1,9}(\.[0-9]{1,12})?$`)
	placementRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// cronParser is the disruption controller's: five fields and descriptors.
	cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
)

var cronDescriptors = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

// NodePool validates a NodePool as the CRD does, plus what CEL cannot check
// exactly (cron ranges, contradicting requirements, values an older CRD let through).
func NodePool(np *v1.NodePool) field.ErrorList {
	var errs field.ErrorList
	if err := np.DecodeError(); err != nil {
		return append(errs, decodeError(err))
	}
	errs = append(errs, objectName(np.Name)...)
	spec := field.NewPath("spec")
	if w := np.Spec.Weight; w != nil && (*w < 1 || *w > 100) {
		errs = append(errs, field.Invalid(spec.Child("weight"), *w, "must be from 1 to 100"))
	}
	errs = append(errs, resourceList(spec.Child("limits"), corev1.ResourceList(np.Spec.Limits), MaxLimits, "limits")...)

	tmpl := spec.Child("template")
	errs = append(errs, templateLabels(tmpl.Child("metadata", "labels"), np.Spec.Template.ObjectMeta.Labels)...)
	ts := np.Spec.Template.Spec
	tspec := tmpl.Child("spec")
	errs = append(errs, Requirements(tspec.Child("requirements"), ts.Requirements)...)
	errs = append(errs, Taints(tspec.Child("taints"), ts.Taints)...)
	errs = append(errs, Taints(tspec.Child("startupTaints"), ts.StartupTaints)...)
	errs = append(errs, nodeClassRef(tspec.Child("nodeClassRef"), ts.NodeClassRef)...)
	errs = append(errs, nillableDuration(tspec.Child("expireAfter"), ts.ExpireAfter)...)
	errs = append(errs, duration(tspec.Child("terminationGracePeriod"), ts.TerminationGracePeriod)...)
	errs = append(errs, duration(tspec.Child("registrationTimeout"), ts.RegistrationTimeout)...)
	errs = append(errs, gpu(tspec, ts.GPU)...)

	d := np.Spec.Disruption
	dp := spec.Child("disruption")
	switch d.ConsolidationPolicy {
	case "", v1.ConsolidationPolicyWhenEmpty, v1.ConsolidationPolicyWhenEmptyOrUnderutilized:
	default:
		errs = append(errs, field.NotSupported(dp.Child("consolidationPolicy"), d.ConsolidationPolicy,
			[]v1.ConsolidationPolicy{v1.ConsolidationPolicyWhenEmpty, v1.ConsolidationPolicyWhenEmptyOrUnderutilized}))
	}
	errs = append(errs, nillableDuration(dp.Child("consolidateAfter"), d.ConsolidateAfter)...)
	errs = append(errs, duration(dp.Child("minNodeLifetime"), d.MinNodeLifetime)...)
	if len(d.Budgets) > MaxBudgets {
		errs = append(errs, field.TooMany(dp.Child("budgets"), len(d.Budgets), MaxBudgets))
	}
	for i, b := range d.Budgets {
		errs = append(errs, Budget(dp.Child("budgets").Index(i), b)...)
	}
	return errs
}

// Budget validates one disruption budget.
func Budget(path *field.Path, b v1.Budget) field.ErrorList {
	var errs field.ErrorList
	if b.Nodes != "" && !budgetNodesRE.MatchString(b.Nodes) {
		errs = append(errs, field.Invalid(path.Child("nodes"), b.Nodes, `must be a count such as "5" or a percentage from 0% to 100% such as "10%"`))
	}
	reasons := []v1.DisruptionReason{v1.DisruptionReasonUnderutilized, v1.DisruptionReasonEmpty, v1.DisruptionReasonDrifted,
		v1.DisruptionReasonExpired, v1.DisruptionReasonUnhealthy}
	for i, r := range b.Reasons {
		if !slices.Contains(reasons, r) {
			errs = append(errs, field.NotSupported(path.Child("reasons").Index(i), r, reasons))
		}
	}
	if (b.Schedule == nil) != (b.Duration == nil) {
		errs = append(errs, field.Invalid(path, budgetSummary(b), "schedule and duration must be set together"))
	}
	if b.Schedule != nil {
		if err := Schedule(*b.Schedule); err != nil {
			errs = append(errs, field.Invalid(path.Child("schedule"), *b.Schedule, err.Error()))
		}
	}
	errs = append(errs, duration(path.Child("duration"), b.Duration)...)
	return errs
}

func budgetSummary(b v1.Budget) string {
	switch {
	case b.Schedule != nil:
		return "schedule " + *b.Schedule + " without a duration"
	case b.Duration != nil:
		return "duration " + b.Duration.Duration.String() + " without a schedule"
	}
	return ""
}

// Schedule checks a budget's cron expression: five single-space separated
// fields in range, or one of the descriptors; always UTC.
func Schedule(s string) error {
	if strings.HasPrefix(s, "@") {
		if !slices.Contains(cronDescriptors, s) {
			return fmt.Errorf("unknown descriptor; use one of %s", strings.Join(cronDescriptors, ", "))
		}
		return nil
	}
	if strings.Join(strings.Fields(s), " ") != s || len(strings.Fields(s)) != 5 {
		return fmt.Errorf("must be five fields (minute hour day-of-month month day-of-week) separated by single spaces")
	}
	if strings.Contains(s, "TZ=") {
		return fmt.Errorf("schedules are in UTC; a time zone cannot be given")
	}
	if _, err := cronParser.Parse(s); err != nil {
		return fmt.Errorf("not a valid cron expression: %v", err)
	}
	return nil
}

// Requirements validates node selector requirements, each alone and together.
func Requirements(path *field.Path, reqs []v1.NodeSelectorRequirementWithMinValues) field.ErrorList {
	var errs field.ErrorList
	if len(reqs) > MaxRequirements {
		errs = append(errs, field.TooMany(path, len(reqs), MaxRequirements))
	}
	for i, r := range reqs {
		errs = append(errs, Requirement(path.Index(i), r)...)
	}
	if len(errs) == 0 {
		errs = append(errs, contradictions(path, reqs)...)
	}
	return errs
}

var operators = []corev1.NodeSelectorOperator{
	corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn, corev1.NodeSelectorOpExists,
	corev1.NodeSelectorOpDoesNotExist, corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt,
}

// Requirement validates one node selector requirement.
func Requirement(path *field.Path, r v1.NodeSelectorRequirementWithMinValues) field.ErrorList {
	var errs field.ErrorList
	if msgs := utilvalidation.IsQualifiedName(r.Key); len(msgs) > 0 {
		errs = append(errs, field.Invalid(path.Child("key"), r.Key, "must be a qualified name such as example.com/team: "+strings.Join(msgs, "; ")))
	}
	if r.Key == v1.LabelNodePool {
		errs = append(errs, field.Invalid(path.Child("key"), r.Key, "stowage.dev/nodepool is set by Stowage and cannot be required"))
	}
	if !slices.Contains(operators, r.Operator) {
		return append(errs, field.NotSupported(path.Child("operator"), r.Operator, operators))
	}
	if len(r.Values) > MaxValues {
		errs = append(errs, field.TooMany(path.Child("values"), len(r.Values), MaxValues))
	}
	switch r.Operator {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
		if r.Operator == corev1.NodeSelectorOpIn && len(r.Values) == 0 {
			errs = append(errs, field.Required(path.Child("values"), "operator In requires at least one value"))
		}
		for i, v := range r.Values {
			if msgs := utilvalidation.IsValidLabelValue(v); len(msgs) > 0 {
				errs = append(errs, field.Invalid(path.Child("values").Index(i), v, strings.Join(msgs, "; ")))
			}
		}
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		if len(r.Values) > 0 {
			errs = append(errs, field.Invalid(path.Child("values"), r.Values, "operators Exists and DoesNotExist take no values"))
		}
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if len(r.Values) != 1 || !integerRE.MatchString(r.Values[0]) {
			errs = append(errs, field.Invalid(path.Child("values"), r.Values,
				fmt.Sprintf("operators Gt and Lt take exactly one integer value of at most %d digits", MaxIntegerDigits)))
		}
	}
	if r.Key == v1.LabelCapacityType && r.Operator == corev1.NodeSelectorOpIn {
		for i, v := range r.Values {
			if v != v1.CapacityTypeReserved && v != v1.CapacityTypeSpot && v != v1.CapacityTypeOnDemand {
				errs = append(errs, field.NotSupported(path.Child("values").Index(i), v,
					[]string{v1.CapacityTypeReserved, v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}))
			}
		}
	}
	if m := r.MinValues; m != nil {
		switch {
		case *m < 1 || *m > 50:
			errs = append(errs, field.Invalid(path.Child("minValues"), *m, "must be from 1 to 50"))
		case r.Operator == corev1.NodeSelectorOpIn && *m > len(r.Values):
			errs = append(errs, field.Invalid(path.Child("minValues"), *m, "minValues must not exceed the number of values given with operator In"))
		}
	}
	return errs
}

// contradictions finds keys no node could satisfy: In requirements whose
// values the other requirements on the key (In, NotIn, DoesNotExist) all rule
// out, and Exists with DoesNotExist.
func contradictions(path *field.Path, reqs []v1.NodeSelectorRequirementWithMinValues) field.ErrorList {
	var errs field.ErrorList
	for i, a := range reqs {
		switch a.Operator {
		case corev1.NodeSelectorOpIn:
			left := slices.DeleteFunc(slices.Clone(a.Values), func(v string) bool {
				for _, b := range reqs {
					if b.Key != a.Key {
						continue
					}
					switch b.Operator {
					case corev1.NodeSelectorOpIn:
						if !slices.Contains(b.Values, v) {
							return true
						}
					case corev1.NodeSelectorOpNotIn:
						if slices.Contains(b.Values, v) {
							return true
						}
					case corev1.NodeSelectorOpDoesNotExist:
						return true
					case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
						if !compares(v, b) {
							return true
						}
					}
				}
				return false
			})
			if len(left) == 0 {
				errs = append(errs, field.Invalid(path.Index(i), a.Key,
					"requirements contradict each other: no value of this In requirement is left once the other requirements on "+a.Key+" are applied"))
			}
		case corev1.NodeSelectorOpExists:
			for _, b := range reqs {
				if b.Key == a.Key && b.Operator == corev1.NodeSelectorOpDoesNotExist {
					errs = append(errs, field.Invalid(path.Index(i), a.Key, "requirements contradict each other: "+a.Key+" is required to exist and not to exist"))
					break
				}
			}
		}
	}
	return errs
}

// compares reports whether label value v satisfies a Gt or Lt requirement.
func compares(v string, r v1.NodeSelectorRequirementWithMinValues) bool {
	got, err1 := strconv.ParseInt(v, 10, 64)
	want, err2 := strconv.ParseInt(r.Values[0], 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	if r.Operator == corev1.NodeSelectorOpGt {
		return got > want
	}
	return got < want
}

var effects = []corev1.TaintEffect{corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute}

// Taints validates taints as the API server validates a Node's.
func Taints(path *field.Path, taints []corev1.Taint) field.ErrorList {
	var errs field.ErrorList
	if len(taints) > MaxTaints {
		errs = append(errs, field.TooMany(path, len(taints), MaxTaints))
	}
	for i, t := range taints {
		p := path.Index(i)
		if msgs := utilvalidation.IsQualifiedName(t.Key); len(msgs) > 0 {
			errs = append(errs, field.Invalid(p.Child("key"), t.Key, "taint key must be a qualified name such as example.com/gpu: "+strings.Join(msgs, "; ")))
		}
		if t.Value != "" {
			if msgs := utilvalidation.IsValidLabelValue(t.Value); len(msgs) > 0 {
				errs = append(errs, field.Invalid(p.Child("value"), t.Value, strings.Join(msgs, "; ")))
			}
		}
		if !slices.Contains(effects, t.Effect) {
			errs = append(errs, field.NotSupported(p.Child("effect"), t.Effect, effects))
		}
	}
	return errs
}

// machineLabels are the well-known labels each node gets from its machine:
// one value for a whole pool would break hostname anti-affinity and zone
// spread, and contradict the node's real zone or type.
var machineLabels = []string{corev1.LabelHostname, corev1.LabelTopologyZone, corev1.LabelTopologyRegion,
	corev1.LabelInstanceTypeStable, corev1.LabelArchStable, corev1.LabelOSStable}

// IsMachineLabel reports whether key is one of the labels each node gets
// from its machine, which a pool's template may not set.
func IsMachineLabel(key string) bool { return slices.Contains(machineLabels, key) }

func templateLabels(path *field.Path, labels map[string]string) field.ErrorList {
	var errs field.ErrorList
	if len(labels) > MaxLabels {
		errs = append(errs, field.TooMany(path, len(labels), MaxLabels))
	}
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		if msgs := utilvalidation.IsQualifiedName(k); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Key(k), k, "label keys must be qualified names: "+strings.Join(msgs, "; ")))
		}
		if strings.HasPrefix(k, v1.Group+"/") {
			errs = append(errs, field.Invalid(path.Key(k), k, "labels in the stowage.dev domain are reserved; use requirements to constrain well-known labels"))
		}
		if IsMachineLabel(k) {
			errs = append(errs, field.Invalid(path.Key(k), k, "the hostname, zone, region, instance type, architecture and OS labels come from each node's machine; use requirements to constrain them"))
		}
		if msgs := utilvalidation.IsValidLabelValue(v); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Key(k), v, strings.Join(msgs, "; ")))
		}
	}
	return errs
}

func nodeClassRef(path *field.Path, ref *v1.NodeClassReference) field.ErrorList {
	if ref == nil {
		return nil
	}
	var errs field.ErrorList
	if ref.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), ""))
	}
	gk := schema.GroupKind{Group: ref.Group, Kind: ref.Kind}
	if !slices.Contains(NodeClassKinds, gk) {
		known := make([]string, 0, len(NodeClassKinds))
		for _, k := range NodeClassKinds {
			known = append(known, k.Group+" "+k.Kind)
		}
		errs = append(errs, field.Invalid(path, ref.Group+" "+ref.Kind,
			"nodeClassRef must name a node class a provider serves: "+strings.Join(known, ", ")))
	}
	return errs
}

func gpu(path *field.Path, g *v1.GPUSharing) field.ErrorList {
	if g == nil {
		return nil
	}
	var errs field.ErrorList
	if r := g.TimeSlicingReplicas; r != nil && (*r < 2 || *r > 64) {
		errs = append(errs, field.Invalid(path.Child("gpu", "timeSlicingReplicas"), *r, "must be from 2 to 64"))
	}
	if g.MIGProfile != "" && !migProfileRE.MatchString(g.MIGProfile) {
		errs = append(errs, field.Invalid(path.Child("gpu", "migProfile"), g.MIGProfile, "must be a MIG profile such as 1g.10gb"))
	}
	if g.TimeSlicingReplicas != nil && g.MIGProfile != "" {
		errs = append(errs, field.Invalid(path, "gpu", "gpu.timeSlicingReplicas and gpu.migProfile cannot both be set: a GPU is either time-sliced or MIG-partitioned"))
	}
	return errs
}

const maxDuration = v1.MaxDuration

func nillableDuration(path *field.Path, d v1.NillableDuration) field.ErrorList {
	if err := d.Err(); err != nil {
		return field.ErrorList{field.Invalid(path, d.String(), err.Error())}
	}
	if d.Duration != nil && *d.Duration > maxDuration {
		return field.ErrorList{field.Invalid(path, d.String(), "must be at most 999999h")}
	}
	return nil
}

func duration(path *field.Path, d *metav1.Duration) field.ErrorList {
	switch {
	case d == nil:
		return nil
	case d.Duration < 0:
		return field.ErrorList{field.Invalid(path, d.Duration.String(), "must not be negative")}
	case d.Duration > maxDuration:
		return field.ErrorList{field.Invalid(path, d.Duration.String(), "must be at most 999999h")}
	}
	return nil
}

// NodeClaim validates a NodeClaim as the CRD does.
func NodeClaim(nc *v1.NodeClaim) field.ErrorList {
	var errs field.ErrorList
	if err := nc.DecodeError(); err != nil {
		return append(errs, decodeError(err))
	}
	spec := field.NewPath("spec")
	s := nc.Spec
	errs = append(errs, Requirements(spec.Child("requirements"), s.Requirements)...)
	switch {
	case len(s.Offerings) == 0:
		errs = append(errs, field.Required(spec.Child("offerings"), "at least one offering is required"))
	case len(s.Offerings) > MaxOfferings:
		errs = append(errs, field.TooMany(spec.Child("offerings"), len(s.Offerings), MaxOfferings))
	}
	capacityTypes := []string{v1.CapacityTypeReserved, v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}
	for i, o := range s.Offerings {
		p := spec.Child("offerings").Index(i)
		if o.InstanceType == "" {
			errs = append(errs, field.Required(p.Child("instanceType"), ""))
		}
		if o.Zone == "" {
			errs = append(errs, field.Required(p.Child("zone"), ""))
		}
		if !slices.Contains(capacityTypes, o.CapacityType) {
			errs = append(errs, field.NotSupported(p.Child("capacityType"), o.CapacityType, capacityTypes))
		}
		errs = append(errs, price(p.Child("pricePerHour"), o.PricePerHour)...)
	}
	errs = append(errs, resourceList(spec.Child("resources", "requests"), s.Resources.Requests, MaxLimits, "requests")...)
	errs = append(errs, Taints(spec.Child("taints"), s.Taints)...)
	errs = append(errs, Taints(spec.Child("startupTaints"), s.StartupTaints)...)
	errs = append(errs, nodeClassRef(spec.Child("nodeClassRef"), s.NodeClassRef)...)
	errs = append(errs, nillableDuration(spec.Child("expireAfter"), s.ExpireAfter)...)
	errs = append(errs, duration(spec.Child("terminationGracePeriod"), s.TerminationGracePeriod)...)
	errs = append(errs, duration(spec.Child("registrationTimeout"), s.RegistrationTimeout)...)
	errs = append(errs, gpu(spec, s.GPU)...)
	if s.Placement != nil && (len(s.Placement.Group) > 63 || !placementRE.MatchString(s.Placement.Group)) {
		errs = append(errs, field.Invalid(spec.Child("placement", "group"), s.Placement.Group, "must be a DNS label: at most 63 lowercase alphanumerics or '-'"))
	}
	errs = append(errs, price(field.NewPath("status", "pricePerHour"), nc.Status.PricePerHour)...)
	return errs
}

func price(path *field.Path, p string) field.ErrorList {
	if p == "" || priceRE.MatchString(p) {
		return nil
	}
	return field.ErrorList{field.Invalid(path, p, "price must be a non-negative decimal number of US dollars such as 1.006")}
}

// Quantity checks one resource quantity: not negative, and at most
// MaxQuantity (MaxCPU for cpu).
func Quantity(path *field.Path, name corev1.ResourceName, q resource.Quantity) *field.Error {
	limit := MaxQuantity
	if name == corev1.ResourceCPU {
		limit = MaxCPU
	}
	switch {
	case q.Sign() < 0:
		return field.Invalid(path, q.String(), "must not be negative")
	case q.Cmp(limit) > 0:
		return field.Invalid(path, q.String(), fmt.Sprintf("is more than Stowage can count; at most %s", limit.String()))
	}
	return nil
}

func resourceList(path *field.Path, l corev1.ResourceList, maxItems int, what string) field.ErrorList {
	var errs field.ErrorList
	if len(l) > maxItems {
		errs = append(errs, field.TooMany(path, len(l), maxItems))
	}
	for _, name := range sortedKeys(l) {
		if err := Quantity(path.Key(string(name)), name, l[name]); err != nil {
			err.Detail = what + " must be quantities from 0 to 9P (9T for cpu): " + err.Detail
			errs = append(errs, err)
		}
	}
	return errs
}

func objectName(name string) field.ErrorList {
	p := field.NewPath("metadata", "name")
	if name == "" {
		return field.ErrorList{field.Required(p, "")}
	}
	if msgs := utilvalidation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(p, name, strings.Join(msgs, "; "))}
	}
	return nil
}

func decodeError(err error) *field.Error {
	var path *field.Path
	if de, ok := err.(*v1.DecodeError); ok && de.Field != "" {
		parts := strings.Split(de.Field, ".")
		path = field.NewPath(parts[0], parts[1:]...)
		return field.Invalid(path, "", "the stored value does not decode: "+de.Err.Error())
	}
	return field.Invalid(field.NewPath("spec"), "", "the stored spec does not decode: "+err.Error())
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
