// Package scheduling is the constraint model the solver plans with: label
// requirements and their algebra, taints and tolerations, resource vectors
// (including GPUs, time-slicing and MIG), and the scheduling constraints a pod
// carries. It is pure Go with no client, so it is cheap to call in hot loops.
package scheduling

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Requirement is the set of values one label key may take, plus whether a
// node without the key at all is acceptable. Every operator maps onto this one
// shape, which keeps intersection closed:
//
//	In vs         -> values vs,                  absent not allowed
//	NotIn vs      -> every value except vs,       absent allowed
//	Exists        -> every value,                 absent not allowed
//	DoesNotExist  -> no value,                    absent allowed
//	Gt n / Lt n   -> every integer above/below n, absent not allowed
type Requirement struct {
	Key string
	// complement means the set is "all values except values" rather than "values".
	complement bool
	values     []string // sorted, unique
	// gt and lt bound integer values (exclusive); only set on complement sets:
	// finite sets are filtered eagerly.
	gt, lt *int64
	// allowAbsent says a label set lacking Key satisfies the requirement.
	allowAbsent bool
	// MinValues is the minimum number of distinct values the candidate machines must span.
	MinValues *int
}

// NewRequirement builds a requirement from an operator, as the API spells it.
func NewRequirement(key string, op corev1.NodeSelectorOperator, values ...string) (*Requirement, error) {
	r := &Requirement{Key: key}
	switch op {
	case corev1.NodeSelectorOpIn:
		r.values = uniqueSorted(values)
	case corev1.NodeSelectorOpNotIn:
		r.complement, r.allowAbsent, r.values = true, true, uniqueSorted(values)
	case corev1.NodeSelectorOpExists:
		r.complement = true
	case corev1.NodeSelectorOpDoesNotExist:
		r.allowAbsent = true
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if len(values) != 1 {
			return nil, fmt.Errorf("key %q: operator %s takes exactly one value, got %d", key, op, len(values))
		}
		n, err := strconv.ParseInt(values[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("key %q: operator %s needs an integer, got %q", key, op, values[0])
		}
		r.complement = true
		if op == corev1.NodeSelectorOpGt {
			r.gt = &n
		} else {
			r.lt = &n
		}
	default:
		return nil, fmt.Errorf("key %q: unknown operator %q", key, op)
	}
	return r, nil
}

// MustRequirement is NewRequirement for values known to be valid (tests, constants).
func MustRequirement(key string, op corev1.NodeSelectorOperator, values ...string) *Requirement {
	r, err := NewRequirement(key, op, values...)
	if err != nil {
		panic(err)
	}
	return r
}

func uniqueSorted(values []string) []string {
	out := slices.Clone(values)
	slices.Sort(out)
	return slices.Compact(out)
}

// Allows reports whether value is in the requirement's set.
func (r *Requirement) Allows(value string) bool {
	_, found := slices.BinarySearch(r.values, value)
	if !r.complement {
		return found
	}
	if found {
		return false
	}
	return r.inBounds(value)
}

func (r *Requirement) inBounds(value string) bool {
	if r.gt == nil && r.lt == nil {
		return true
	}
	n, err := strconv.ParseInt(value, 10, 64)
	if err != nil {
		return false
	}
	return (r.gt == nil || n > *r.gt) && (r.lt == nil || n < *r.lt)
}

// AllowsAbsent reports whether a label set without the key satisfies r.
func (r *Requirement) AllowsAbsent() bool { return r.allowAbsent }

// Values returns the allowed values of a finite (In) requirement, sorted; nil
// for complement sets.
func (r *Requirement) Values() []string {
	if r.complement {
		return nil
	}
	return r.values
}

// Any returns one allowed value, preferring the smallest, and false when the
// set of values is empty or infinite.
func (r *Requirement) Any() (string, bool) {
	if r.complement || len(r.values) == 0 {
		return "", false
	}
	return r.values[0], true
}

// Len is the number of allowed values, math.MaxInt for complement sets.
func (r *Requirement) Len() int {
	if r.complement {
		return math.MaxInt
	}
	return len(r.values)
}

// hasValue reports whether at least one label value satisfies r.
func (r *Requirement) hasValue() bool {
	if !r.complement {
		return len(r.values) > 0
	}
	return boundsHold(r.gt, r.lt)
}

// boundsHold reports whether a complement set with exclusive integer bounds
// gt and lt has a value. Every integer has infinitely many spellings ("5",
// "05", "+5"), so a finite exclusion list cannot empty a non-empty range.
func boundsHold(gt, lt *int64) bool {
	if gt != nil && *gt == math.MaxInt64 {
		return false
	}
	if lt != nil && *lt == math.MinInt64 {
		return false
	}
	if gt != nil && lt != nil {
		return *lt-*gt > 1 || (*gt < 0 && *lt > 0) // second term guards overflow
	}
	return true
}

// overlaps is r.Intersect(o).Satisfiable() without building the
// intersection: the solver asks it for every node a pod is tried on.
func (r *Requirement) overlaps(o *Requirement) bool {
	if r.allowAbsent && o.allowAbsent {
		return true
	}
	switch {
	case !r.complement && !o.complement:
		for i, j := 0, 0; i < len(r.values) && j < len(o.values); {
			switch c := strings.Compare(r.values[i], o.values[j]); {
			case c == 0:
				return true
			case c < 0:
				i++
			default:
				j++
			}
		}
		return false
	case !r.complement: // finite sets carry no bounds
		return slices.ContainsFunc(r.values, o.Allows)
	case !o.complement:
		return slices.ContainsFunc(o.values, r.Allows)
	default:
		return boundsHold(maxPtr64(r.gt, o.gt), minPtr64(r.lt, o.lt))
	}
}

// Satisfiable reports whether some label set (with or without the key) satisfies r.
func (r *Requirement) Satisfiable() bool { return r.allowAbsent || r.hasValue() }

// Intersect returns the requirement both r and o impose.
func (r *Requirement) Intersect(o *Requirement) *Requirement {
	out := &Requirement{Key: r.Key, allowAbsent: r.allowAbsent && o.allowAbsent, MinValues: maxPtr(r.MinValues, o.MinValues)}
	out.gt, out.lt = maxPtr64(r.gt, o.gt), minPtr64(r.lt, o.lt)
	switch {
	case !r.complement && !o.complement:
		out.values = intersectSorted(r.values, o.values)
	case !r.complement:
		out.values = filter(r.values, func(v string) bool { _, ex := slices.BinarySearch(o.values, v); return !ex })
	case !o.complement:
		out.values = filter(o.values, func(v string) bool { _, ex := slices.BinarySearch(r.values, v); return !ex })
	default:
		out.complement = true
		out.values = uniqueSorted(append(slices.Clone(r.values), o.values...))
	}
	if !out.complement {
		if out.gt != nil || out.lt != nil {
			out.values = filter(out.values, out.inBounds)
		}
		out.gt, out.lt = nil, nil
	}
	return out
}

func filter(values []string, keep func(string) bool) []string {
	out := make([]string, 0, len(values))
	for _, v := range values {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

func intersectSorted(a, b []string) []string {
	out := make([]string, 0, min(len(a), len(b)))
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch c := strings.Compare(a[i], b[j]); {
		case c == 0:
			out = append(out, a[i])
			i++
			j++
		case c < 0:
			i++
		default:
			j++
		}
	}
	return out
}

func maxPtr(a, b *int) *int {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}

func maxPtr64(a, b *int64) *int64 {
	if a == nil || (b != nil && *b > *a) {
		return b
	}
	return a
}

func minPtr64(a, b *int64) *int64 {
	if a == nil || (b != nil && *b < *a) {
		return b
	}
	return a
}

// String renders the requirement for humans, e.g. "zone In [a b]".
func (r *Requirement) String() string {
	parts := make([]string, 0, 3)
	for _, req := range r.toAPI() {
		s := fmt.Sprintf("%s %s", req.Key, req.Operator)
		if len(req.Values) > 0 {
			s += " [" + strings.Join(req.Values, " ") + "]"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// toAPI expresses r as API requirements on its key (ANDed).
func (r *Requirement) toAPI() []v1.NodeSelectorRequirementWithMinValues {
	return r.appendAPI(nil)
}

// appendAPI appends r's API requirements to out: ToAPI renders a plan's
// every node, so it builds one slice rather than one per key.
func (r *Requirement) appendAPI(out []v1.NodeSelectorRequirementWithMinValues) []v1.NodeSelectorRequirementWithMinValues {
	mk := func(op corev1.NodeSelectorOperator, values ...string) v1.NodeSelectorRequirementWithMinValues {
		return v1.NodeSelectorRequirementWithMinValues{Key: r.Key, Operator: op, Values: values, MinValues: r.MinValues}
	}
	if !r.complement {
		if r.allowAbsent { // only DoesNotExist yields a finite set that allows absence
			return append(out, mk(corev1.NodeSelectorOpDoesNotExist))
		}
		return append(out, mk(corev1.NodeSelectorOpIn, slices.Clone(r.values)...))
	}
	start := len(out)
	if len(r.values) > 0 {
		out = append(out, mk(corev1.NodeSelectorOpNotIn, slices.Clone(r.values)...))
	}
	if r.gt != nil {
		out = append(out, mk(corev1.NodeSelectorOpGt, strconv.FormatInt(*r.gt, 10)))
	}
	if r.lt != nil {
		out = append(out, mk(corev1.NodeSelectorOpLt, strconv.FormatInt(*r.lt, 10)))
	}
	if !r.allowAbsent && len(out) == start || !r.allowAbsent && len(r.values) > 0 && r.gt == nil && r.lt == nil {
		out = append(out, mk(corev1.NodeSelectorOpExists))
	}
	return out
}

// Requirements are requirements on several keys, ANDed. The zero value (nil)
// is usable and allows everything.
type Requirements map[string]*Requirement

// NewRequirements ANDs the given requirements.
func NewRequirements(reqs ...*Requirement) Requirements {
	out := Requirements{}
	for _, r := range reqs {
		out.Add(r)
	}
	return out
}

// FromLabels is the requirement "key In [value]" for each label.
func FromLabels(labels map[string]string) Requirements {
	out := make(Requirements, len(labels))
	for k, v := range labels {
		out[k] = &Requirement{Key: k, values: []string{v}}
	}
	return out
}

// FromNodeSelector converts core node selector requirements (one term).
func FromNodeSelector(reqs []corev1.NodeSelectorRequirement) (Requirements, error) {
	out := Requirements{}
	for i, r := range reqs {
		req, err := NewRequirement(r.Key, r.Operator, r.Values...)
		if err != nil {
			return nil, fmt.Errorf("matchExpressions[%d]: %w", i, err)
		}
		out.Add(req)
	}
	return out, nil
}

// FromAPI converts NodePool/NodeClaim requirements, keeping minValues.
func FromAPI(reqs []v1.NodeSelectorRequirementWithMinValues) (Requirements, error) {
	out := Requirements{}
	for i, r := range reqs {
		req, err := NewRequirement(r.Key, r.Operator, r.Values...)
		if err != nil {
			return nil, fmt.Errorf("requirements[%d]: %w", i, err)
		}
		req.MinValues = r.MinValues
		out.Add(req)
	}
	return out, nil
}

// Add intersects r into rs in place.
func (rs Requirements) Add(r *Requirement) {
	if cur, ok := rs[r.Key]; ok {
		rs[r.Key] = cur.Intersect(r)
		return
	}
	rs[r.Key] = r
}

// Copy returns a shallow copy; Requirement values are immutable once built.
func (rs Requirements) Copy() Requirements {
	out := make(Requirements, len(rs))
	for k, v := range rs {
		out[k] = v
	}
	return out
}

// Intersect returns the requirements of both rs and o.
func (rs Requirements) Intersect(o Requirements) Requirements {
	out := rs.Copy()
	for _, r := range o {
		out.Add(r)
	}
	return out
}

// Get returns the requirement on key, or nil when key is unconstrained.
func (rs Requirements) Get(key string) *Requirement { return rs[key] }

// Keys returns the constrained keys, sorted.
func (rs Requirements) Keys() []string {
	keys := make([]string, 0, len(rs))
	for k := range rs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Satisfiable returns nil when some label set satisfies every requirement,
// or an error naming the first (by key) that cannot be met.
func (rs Requirements) Satisfiable() error {
	for _, k := range rs.Keys() {
		if !rs[k].Satisfiable() {
			return fmt.Errorf("no value of %s satisfies %s", k, rs[k])
		}
	}
	return nil
}

// Compatible returns nil when some label set satisfies both rs and o. Keys
// only one side constrains are free on the other; it is symmetric.
func (rs Requirements) Compatible(o Requirements) error {
	if rs.CompatibleWith(o) {
		return nil
	}
	// Slow path, for a deterministic message: first offending key by name.
	for _, k := range rs.Intersect(o).Keys() {
		a, b := rs[k], o[k]
		switch {
		case a != nil && b != nil && !a.overlaps(b):
			return fmt.Errorf("%s conflicts with %s", a, b)
		case a != nil && !a.Satisfiable():
			return fmt.Errorf("no value of %s satisfies %s", k, a)
		case b != nil && !b.Satisfiable():
			return fmt.Errorf("no value of %s satisfies %s", k, b)
		}
	}
	return nil
}

// CompatibleWith is Compatible without the reason, and allocates nothing:
// hot loops that only branch on the answer call it.
func (rs Requirements) CompatibleWith(o Requirements) bool {
	for k, a := range rs {
		if b, ok := o[k]; ok {
			if !a.overlaps(b) {
				return false
			}
		} else if !a.Satisfiable() {
			return false
		}
	}
	for k, b := range o {
		if _, ok := rs[k]; !ok && !b.Satisfiable() {
			return false
		}
	}
	return true
}

// Admits returns nil when a node described by rs (its known labels and the
// ranges its pool allows) can satisfy the pod requirements pod. Unlike
// Compatible, a key the node side does not define is treated as absent from
// the node, unless it is a well-known label Stowage sets on every node.
func (rs Requirements) Admits(pod Requirements) error {
	for _, k := range pod.Keys() {
		p := pod[k]
		n, ok := rs[k]
		if !ok {
			if v1.WellKnownLabels[k] || p.allowAbsent {
				continue
			}
			return fmt.Errorf("requires label %s which the node will not have", p)
		}
		if !n.overlaps(p) {
			return fmt.Errorf("requires %s but the node offers %s", p, n)
		}
	}
	return nil
}

// Matches reports whether labels satisfy every requirement.
func (rs Requirements) Matches(labels map[string]string) bool {
	for k, r := range rs {
		v, ok := labels[k]
		if !ok {
			if !r.allowAbsent {
				return false
			}
			continue
		}
		if !r.Allows(v) {
			return false
		}
	}
	return true
}

// ToAPI renders rs as NodeClaim requirements, sorted by key, keeping minValues.
func (rs Requirements) ToAPI() []v1.NodeSelectorRequirementWithMinValues {
	if len(rs) == 0 {
		return nil
	}
	out := make([]v1.NodeSelectorRequirementWithMinValues, 0, len(rs)+1)
	for _, k := range rs.Keys() {
		out = rs[k].appendAPI(out)
	}
	return out
}

// String renders rs sorted by key.
func (rs Requirements) String() string {
	parts := make([]string, 0, len(rs))
	for _, k := range rs.Keys() {
		parts = append(parts, rs[k].String())
	}
	return strings.Join(parts, ", ")
}
