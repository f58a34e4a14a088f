package simulate

import (
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// FilterInstanceTypes returns the instance types np may buy, each with only
// the offerings np's zone and capacity-type requirements allow (all capacity
// types when anyCapacityType is set, for the naive on-demand baseline). Types
// left without offerings are dropped. The solver applies the requirements
// again; filtering here keeps its input small and the naive cost honest.
func FilterInstanceTypes(np *v1.NodePool, types []*cloudprovider.InstanceType, anyCapacityType bool) []*cloudprovider.InstanceType {
	reqs := np.Spec.Template.Spec.Requirements
	out := make([]*cloudprovider.InstanceType, 0, len(types))
	for _, it := range types {
		if !typeMatches(reqs, it.Labels) {
			continue
		}
		var offerings []cloudprovider.Offering
		for _, o := range it.Offerings {
			if offeringMatches(reqs, o, anyCapacityType) {
				offerings = append(offerings, o)
			}
		}
		if len(offerings) == 0 {
			continue
		}
		cp := *it
		cp.Offerings = offerings
		out = append(out, &cp)
	}
	return out
}

// offeringKeys are labels that vary per offering rather than per type.
var offeringKeys = map[string]bool{v1.LabelZone: true, v1.LabelCapacityType: true}

// unknowableKeys are well-known labels no catalog entry carries; the solver
// decides them.
var unknowableKeys = map[string]bool{v1.LabelNodePool: true, v1.LabelHostname: true, v1.LabelRegion: true}

func typeMatches(reqs []v1.NodeSelectorRequirementWithMinValues, labels map[string]string) bool {
	for _, r := range reqs {
		if offeringKeys[r.Key] || unknowableKeys[r.Key] {
			continue
		}
		_, has := labels[r.Key]
		if !has && !v1.WellKnownLabels[r.Key] {
			continue // a custom label the pool's template may set
		}
		if !requirementMatches(r.Key, r.Operator, r.Values, labels) {
			return false
		}
	}
	return true
}

func offeringMatches(reqs []v1.NodeSelectorRequirementWithMinValues, o cloudprovider.Offering, anyCapacityType bool) bool {
	labels := map[string]string{v1.LabelZone: o.Zone, v1.LabelCapacityType: o.CapacityType}
	for _, r := range reqs {
		if r.Key == v1.LabelZone || r.Key == v1.LabelCapacityType && !anyCapacityType {
			if !requirementMatches(r.Key, r.Operator, r.Values, labels) {
				return false
			}
		}
	}
	return true
}

// requirementMatches evaluates one node selector requirement against labels,
// with the Kubernetes semantics (NotIn and DoesNotExist match a missing key).
func requirementMatches(key string, op corev1.NodeSelectorOperator, values []string, labels map[string]string) bool {
	v, has := labels[key]
	switch op {
	case corev1.NodeSelectorOpIn:
		return has && slices.Contains(values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !slices.Contains(values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(values) != 1 {
			return false
		}
		got, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if op == corev1.NodeSelectorOpGt {
			return got > want
		}
		return got < want
	}
	return false
}

// podSelects reports whether a node with labels satisfies the pod's node
// selector and required node affinity.
func podSelects(p *corev1.Pod, labels map[string]string) bool {
	for k, v := range p.Spec.NodeSelector {
		if labels[k] != v {
			return false
		}
	}
	a := p.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	terms := a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) == 0 {
		return true
	}
	for _, t := range terms {
		ok := true
		for _, e := range t.MatchExpressions {
			if !requirementMatches(e.Key, e.Operator, e.Values, labels) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// tolerates reports whether the pod tolerates every NoSchedule and NoExecute taint.
func tolerates(p *corev1.Pod, taints []corev1.Taint) bool {
	for i := range taints {
		t := &taints[i]
		if t.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		ok := false
		for j := range p.Spec.Tolerations {
			if p.Spec.Tolerations[j].ToleratesTaint(klog.Background(), t, false) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}
