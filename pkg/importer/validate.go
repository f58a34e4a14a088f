package importer

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
	kjson "sigs.k8s.io/json"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/validation"
)

// Rejection is an input object the importer refused to convert, with every
// reason; fields are paths in the input object.
type Rejection struct {
	// Source is the input's name and object number, e.g. "pools.yaml#2".
	Source string
	// Object is kind/name of the input object.
	Object  string
	Reasons []string
}

func (r Rejection) String() string {
	return fmt.Sprintf("%s: %s: rejected: %s", r.Source, r.Object, strings.Join(r.Reasons, "; "))
}

// durationFields are the NodePool fields whose text the CRD checks against
// v1.DurationPattern; decoding into Go types would accept more ("1.5h").
var durationFields = []struct {
	path     []string
	nillable bool
}{
	{[]string{"spec", "template", "spec", "expireAfter"}, true},
	{[]string{"spec", "template", "spec", "terminationGracePeriod"}, false},
	{[]string{"spec", "template", "spec", "registrationTimeout"}, false},
	{[]string{"spec", "disruption", "consolidateAfter"}, true},
	{[]string{"spec", "disruption", "minNodeLifetime"}, false},
}

// validateNodePool checks a converted NodePool as the API server would, with
// pkg/validation, so what import prints always applies.
func validateNodePool(out map[string]any) []string {
	spec, ok := out["spec"].(map[string]any)
	if !ok {
		return []string{"spec: Required value"}
	}
	tmpl, ok := spec["template"].(map[string]any)
	if !ok {
		return []string{"spec.template: Required value: a NodePool needs a template"}
	}
	if _, ok := tmpl["spec"].(map[string]any); !ok {
		return []string{"spec.template.spec: Required value: a NodePool's template needs a spec"}
	}
	var errs field.ErrorList
	for _, f := range durationFields {
		errs = append(errs, checkDuration(out, f.path, f.nillable))
	}
	disruption, _ := spec["disruption"].(map[string]any)
	budgets, _ := disruption["budgets"].([]any)
	for i, b := range budgets {
		if bm, ok := b.(map[string]any); ok {
			errs = append(errs, checkDuration(bm, []string{"duration"}, false, fmt.Sprintf("spec.disruption.budgets[%d]", i)))
		}
	}
	errs = slices.DeleteFunc(errs, func(e *field.Error) bool { return e == nil })
	reported := map[string]bool{}
	for _, e := range errs {
		reported[e.Field] = true
	}

	b, err := json.Marshal(out)
	if err != nil {
		return []string{err.Error()}
	}
	type strictNodePool v1.NodePool // without NodePool's tolerant decoding
	var np v1.NodePool
	strict, err := kjson.UnmarshalStrict(b, (*strictNodePool)(&np))
	if err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			errs = append(errs, field.Invalid(field.NewPath(te.Field), te.Value, "want "+te.Type.String()))
		} else if len(errs) == 0 {
			errs = append(errs, field.Invalid(field.NewPath("spec"), "", err.Error()))
		}
		return messages(errs)
	}
	var reasons []string
	for _, e := range strict {
		reasons = append(reasons, e.Error())
	}
	for _, e := range validation.NodePool(&np) {
		if !reported[e.Field] {
			errs = append(errs, e)
		}
	}
	return append(reasons, messages(errs)...)
}

func messages(errs field.ErrorList) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

// checkDuration checks the text of a duration field at path in obj.
func checkDuration(obj map[string]any, path []string, nillable bool, prefix ...string) *field.Error {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[p]; !ok {
			return nil
		}
	}
	name := field.NewPath(strings.Join(append(prefix, path...), "."))
	s, ok := cur.(string)
	if !ok {
		return field.Invalid(name, cur, "must be a duration string such as 30m")
	}
	if nillable && s == "Never" {
		return nil
	}
	if _, err := v1.ParseDuration(s); err != nil {
		return field.Invalid(name, s, err.Error())
	}
	return nil
}

// requiredEC2NodeClassFields checks what aws.stowage.dev/v1 requires of a
// converted EC2NodeClass and the conversion may have dropped (every term of
// a list, the IAM identity). pkg never imports a provider, so the CRD's own
// checks cannot run here; these are the ones a conversion can break.
func requiredEC2NodeClassFields(out map[string]any) []string {
	spec, _ := out["spec"].(map[string]any)
	var reasons []string
	for _, f := range []string{"amiSelectorTerms", "subnetSelectorTerms", "securityGroupSelectorTerms"} {
		if terms, _ := spec[f].([]any); len(terms) == 0 {
			reasons = append(reasons, "spec."+f+": Required value: no term could be converted")
		}
	}
	_, role := spec["role"]
	_, profile := spec["instanceProfile"]
	if role == profile {
		reasons = append(reasons, "spec: Invalid value: exactly one of role or instanceProfile must be set")
	}
	return reasons
}
