package validation

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// PodSpec validates what Stowage reads from a pod's spec to plan it: every
// resource quantity (not negative, not beyond what it can count) and the sum
// of them the pod asks for. path is where the spec sits in its object, e.g.
// spec.template.spec for a Deployment.
func PodSpec(path *field.Path, spec *corev1.PodSpec) field.ErrorList {
	var errs field.ErrorList
	total := corev1.ResourceList{}
	add := func(l corev1.ResourceList) {
		for name, q := range l {
			sum := total[name]
			sum.Add(q)
			total[name] = sum
		}
	}
	containers := func(p *field.Path, cs []corev1.Container) {
		for i := range cs {
			r := cs[i].Resources
			cp := p.Index(i).Child("resources")
			errs = append(errs, quantities(cp.Child("requests"), r.Requests)...)
			errs = append(errs, quantities(cp.Child("limits"), r.Limits)...)
			add(r.Requests)
		}
	}
	containers(path.Child("initContainers"), spec.InitContainers)
	containers(path.Child("containers"), spec.Containers)
	errs = append(errs, quantities(path.Child("overhead"), spec.Overhead)...)
	add(spec.Overhead)
	if spec.Resources != nil {
		errs = append(errs, quantities(path.Child("resources", "requests"), spec.Resources.Requests)...)
		errs = append(errs, quantities(path.Child("resources", "limits"), spec.Resources.Limits)...)
		add(spec.Resources.Requests)
	}
	if len(errs) > 0 {
		return errs
	}
	// Each quantity fits, but their sum must too: it is what the solver adds up.
	for _, name := range sortedKeys(total) {
		q := total[name]
		if err := Quantity(path, name, q); err != nil {
			err.BadValue = fmt.Sprintf("%s %s", q.String(), name)
			err.Detail = "the containers' requests add up to more than Stowage can count (at most 9P, 9T for cpu)"
			errs = append(errs, err)
		}
	}
	return errs
}

func quantities(path *field.Path, l corev1.ResourceList) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedKeys(l) {
		if err := Quantity(path.Key(string(name)), name, l[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Gang validates the gang labels of a pod (or pod template): a pod group
// needs a size that is a positive integer, and the group name must be a label value.
func Gang(path *field.Path, labels map[string]string) field.ErrorList {
	name, hasName := labels[v1.LabelPodGroup]
	size, hasSize := labels[v1.LabelPodGroupSize]
	var errs field.ErrorList
	switch {
	case hasName && name == "":
		errs = append(errs, field.Invalid(path.Key(v1.LabelPodGroup), name, "must name the gang"))
	case hasName:
		if msgs := utilvalidation.IsValidLabelValue(name); len(msgs) > 0 {
			errs = append(errs, field.Invalid(path.Key(v1.LabelPodGroup), name, strings.Join(msgs, "; ")))
		}
	}
	switch {
	case hasName && !hasSize:
		errs = append(errs, field.Required(path.Key(v1.LabelPodGroupSize), "a pod group needs its size: the number of pods that must all get capacity"))
	case hasSize && !hasName:
		errs = append(errs, field.Required(path.Key(v1.LabelPodGroup), v1.LabelPodGroupSize+" is set but the gang has no name"))
	case hasSize:
		if n, err := strconv.Atoi(size); err != nil || n < 1 || strconv.Itoa(n) != size {
			errs = append(errs, field.Invalid(path.Key(v1.LabelPodGroupSize), size, "must be a positive integer such as \"8\""))
		}
	}
	return errs
}

// QuantityString parses s as a resource quantity and checks it with Quantity.
func QuantityString(path *field.Path, name corev1.ResourceName, s string) *field.Error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return field.Invalid(path, s, "must be a quantity such as \"500m\" or \"2Gi\"")
	}
	return Quantity(path, name, q)
}
