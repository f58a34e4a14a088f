package scheduling

import (
	"cmp"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// PodRequests is what the scheduler reserves for a pod, by the kubelet's
// rules: the larger of (regular containers + restartable "sidecar" init
// containers) and the peak of the init phase (each init container plus the
// sidecars started before it), plus the pod overhead, plus one "pods" slot.
// Pod-level resources, when set, replace the container sum for the
// resources they name.
func PodRequests(pod *corev1.Pod) Resources {
	var running, sidecars, initPeak Resources
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		req := containerRequests(c)
		if isSidecar(c) {
			sidecars = sidecars.Add(req)
			initPeak = initPeak.Max(sidecars)
			continue
		}
		initPeak = initPeak.Max(sidecars.Add(req))
	}
	for i := range pod.Spec.Containers {
		running = running.Add(containerRequests(&pod.Spec.Containers[i]))
	}
	out := running.Add(sidecars).Max(initPeak)
	if r := pod.Spec.Resources; r != nil {
		for name, q := range r.Limits {
			if _, ok := r.Requests[name]; !ok {
				out.set(name, q)
			}
		}
		for name, q := range r.Requests {
			out.set(name, q)
		}
	}
	out = out.Add(FromList(pod.Spec.Overhead))
	out.Fixed[SlotPods]++
	return out
}

// isSidecar reports whether an init container keeps running beside the
// pod's containers (restartPolicy Always).
func isSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// Finished reports whether a pod succeeded or failed: it takes no room on
// its node, will not run again, and needs no new place.
func Finished(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

// DaemonSetPod reports whether a DaemonSet controls the pod: it runs on
// its node for as long as the node does, and never needs a place elsewhere.
func DaemonSetPod(pod *corev1.Pod) bool {
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "DaemonSet" && ref.Controller != nil && *ref.Controller {
			return true
		}
	}
	return false
}

// containerRequests is a container's requests, with its limit standing in
// for a request it does not set: the API server defaults them so for Pods,
// but pods built from templates (DaemonSets, ProvisioningRequests, manifests
// given to simulate) are not defaulted, and GPUs are often asked for by
// limit alone.
func containerRequests(c *corev1.Container) Resources {
	req := FromList(c.Resources.Requests)
	for name, q := range c.Resources.Limits {
		if _, ok := c.Resources.Requests[name]; !ok {
			req.set(name, q)
		}
	}
	return req
}

// TopologyConstraint is one hard or soft topology spread constraint.
type TopologyConstraint struct {
	Key      string
	MaxSkew  int32
	Selector labels.Selector
	// Hard is whenUnsatisfiable: DoNotSchedule.
	Hard bool
	// MinDomains, when set, counts missing domains as zero until there are this many.
	MinDomains int32
}

// AffinityTerm is one required pod (anti-)affinity term.
type AffinityTerm struct {
	Key      string
	Selector labels.Selector
	// Namespaces the term looks in; empty means every namespace.
	Namespaces []string
}

// Matches reports whether a pod with these labels in namespace ns is selected by the term.
func (t *AffinityTerm) Matches(ns string, l map[string]string) bool {
	if len(t.Namespaces) > 0 && !slices.Contains(t.Namespaces, ns) {
		return false
	}
	return t.Selector.Matches(labels.Set(l))
}

// PreferredTerm is a preferred node affinity term with its weight.
type PreferredTerm struct {
	Weight       int32
	Requirements Requirements
}

// PodConstraints is everything about a pod that limits where it may run.
type PodConstraints struct {
	// NodeRequirements are the alternatives (ORed) from required node affinity,
	// each already intersected with the nodeSelector. Never empty.
	NodeRequirements []Requirements
	// Preferred node affinity terms, heaviest first; relaxed from the end.
	Preferred    []PreferredTerm
	Tolerations  []corev1.Toleration
	Spread       []TopologyConstraint
	Affinity     []AffinityTerm
	AntiAffinity []AffinityTerm
	// PreferredAffinity and PreferredAntiAffinity are the preferred pod
	// (anti-)affinity terms; their weights are dropped (the solver honours
	// them all or not at all, where that costs nothing).
	PreferredAffinity     []AffinityTerm
	PreferredAntiAffinity []AffinityTerm
}

// NewPodConstraints extracts the constraints of a pod. Errors name the field.
func NewPodConstraints(pod *corev1.Pod) (*PodConstraints, error) {
	pc := &PodConstraints{Tolerations: pod.Spec.Tolerations}
	base := FromLabels(pod.Spec.NodeSelector)
	aff := pod.Spec.Affinity
	if aff != nil && aff.NodeAffinity != nil {
		na := aff.NodeAffinity
		if r := na.RequiredDuringSchedulingIgnoredDuringExecution; r != nil {
			for i, term := range r.NodeSelectorTerms {
				reqs, err := FromNodeSelector(term.MatchExpressions)
				if err != nil {
					return nil, fmt.Errorf("spec.affinity.nodeAffinity.required.nodeSelectorTerms[%d].%w", i, err)
				}
				if err := addNodeNameFields(reqs, term.MatchFields); err != nil {
					return nil, fmt.Errorf("spec.affinity.nodeAffinity.required.nodeSelectorTerms[%d].%w", i, err)
				}
				pc.NodeRequirements = append(pc.NodeRequirements, base.Intersect(reqs))
			}
			if len(pc.NodeRequirements) == 0 {
				return nil, fmt.Errorf("spec.affinity.nodeAffinity.required: no nodeSelectorTerms, so no node matches")
			}
		}
		for i, p := range na.PreferredDuringSchedulingIgnoredDuringExecution {
			reqs, err := FromNodeSelector(p.Preference.MatchExpressions)
			if err != nil {
				return nil, fmt.Errorf("spec.affinity.nodeAffinity.preferred[%d].preference.%w", i, err)
			}
			pc.Preferred = append(pc.Preferred, PreferredTerm{Weight: p.Weight, Requirements: reqs})
		}
		// Stable so equal weights keep the order the user wrote.
		slices.SortStableFunc(pc.Preferred, func(a, b PreferredTerm) int { return cmp.Compare(b.Weight, a.Weight) })
	}
	if len(pc.NodeRequirements) == 0 {
		pc.NodeRequirements = []Requirements{base}
	}
	for i, tsc := range pod.Spec.TopologySpreadConstraints {
		sel, err := selectorWithMatchLabelKeys(tsc.LabelSelector, tsc.MatchLabelKeys, pod.Labels)
		if err != nil {
			return nil, fmt.Errorf("spec.topologySpreadConstraints[%d].labelSelector: %w", i, err)
		}
		tc := TopologyConstraint{Key: tsc.TopologyKey, MaxSkew: tsc.MaxSkew, Selector: sel,
			Hard: tsc.WhenUnsatisfiable == corev1.DoNotSchedule}
		if tsc.MinDomains != nil {
			tc.MinDomains = *tsc.MinDomains
		}
		pc.Spread = append(pc.Spread, tc)
	}
	if aff != nil && aff.PodAffinity != nil {
		terms, err := affinityTerms(pod, aff.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution, false, "spec.affinity.podAffinity")
		if err != nil {
			return nil, err
		}
		pc.Affinity = terms
		if pc.PreferredAffinity, err = affinityTermsAt(pod, weightedTerms(aff.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution), false, "spec.affinity.podAffinity.preferred[%d].podAffinityTerm.labelSelector"); err != nil {
			return nil, err
		}
	}
	if aff != nil && aff.PodAntiAffinity != nil {
		terms, err := affinityTerms(pod, aff.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution, true, "spec.affinity.podAntiAffinity")
		if err != nil {
			return nil, err
		}
		pc.AntiAffinity = terms
		if pc.PreferredAntiAffinity, err = affinityTermsAt(pod, weightedTerms(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution), true, "spec.affinity.podAntiAffinity.preferred[%d].podAffinityTerm.labelSelector"); err != nil {
			return nil, err
		}
	}
	return pc, nil
}

// addNodeNameFields adds a term's matchFields (the API allows only
// metadata.name) to reqs as requirements on the node's hostname label, the
// name the solver can read: a machine not bought yet has no name, so a pod
// pinned to named nodes is never planned onto a new one.
func addNodeNameFields(reqs Requirements, fields []corev1.NodeSelectorRequirement) error {
	for i, f := range fields {
		if f.Key != "metadata.name" {
			return fmt.Errorf("matchFields[%d]: field %s is not supported (only metadata.name)", i, f.Key)
		}
		r, err := NewRequirement(v1.LabelHostname, f.Operator, f.Values...)
		if err != nil {
			return fmt.Errorf("matchFields[%d]: %w", i, err)
		}
		reqs.Add(r)
	}
	return nil
}

func weightedTerms(w []corev1.WeightedPodAffinityTerm) []corev1.PodAffinityTerm {
	out := make([]corev1.PodAffinityTerm, len(w))
	for i := range w {
		out[i] = w[i].PodAffinityTerm
	}
	return out
}

func affinityTerms(pod *corev1.Pod, terms []corev1.PodAffinityTerm, anti bool, field string) ([]AffinityTerm, error) {
	return affinityTermsAt(pod, terms, anti, field+".required[%d].labelSelector")
}

// affinityTermsAt reads terms; format names the i-th term's selector in
// errors, and anti says they are anti-affinity terms.
func affinityTermsAt(pod *corev1.Pod, terms []corev1.PodAffinityTerm, anti bool, format string) ([]AffinityTerm, error) {
	out := make([]AffinityTerm, 0, len(terms))
	for i, t := range terms {
		sel, err := selectorWithMatchLabelKeys(t.LabelSelector, t.MatchLabelKeys, pod.Labels)
		if err != nil {
			return nil, fmt.Errorf(format+": %w", i, err)
		}
		at := AffinityTerm{Key: t.TopologyKey, Selector: sel, Namespaces: t.Namespaces}
		// An empty namespaceSelector ({}) means all namespaces, whatever
		// namespaces lists (the scheduler takes the union); otherwise the
		// term applies to the listed namespaces or, when none, the pod's own.
		// The solver does not see namespace labels, so an anti-affinity term
		// with any other namespaceSelector looks in every namespace: planning
		// beside a pod of a namespace the selector matches would leave the
		// pod pending on a node the scheduler refuses.
		allNamespaces := t.NamespaceSelector != nil && (anti ||
			len(t.NamespaceSelector.MatchLabels) == 0 && len(t.NamespaceSelector.MatchExpressions) == 0)
		switch {
		case allNamespaces:
			at.Namespaces = nil
		case len(at.Namespaces) == 0:
			at.Namespaces = []string{pod.Namespace}
		}
		out = append(out, at)
	}
	return out, nil
}

// selectorWithMatchLabelKeys builds a selector, narrowing it with
// matchLabelKeys from the pod's own labels as the scheduler does. A nil
// selector matches nothing.
func selectorWithMatchLabelKeys(ls *metav1.LabelSelector, keys []string, podLabels map[string]string) (labels.Selector, error) {
	if ls == nil {
		return labels.Nothing(), nil
	}
	ls = ls.DeepCopy()
	for _, k := range keys {
		if v, ok := podLabels[k]; ok {
			if ls.MatchLabels == nil {
				ls.MatchLabels = map[string]string{}
			}
			ls.MatchLabels[k] = v
		}
	}
	return metav1.LabelSelectorAsSelector(ls)
}

// Relax drops the weakest soft constraint: the lightest preferred node
// affinity term first, then soft topology spread. It reports false when
// nothing is left to relax.
func (pc *PodConstraints) Relax() bool {
	if n := len(pc.Preferred); n > 0 {
		pc.Preferred = pc.Preferred[:n-1]
		return true
	}
	for i, s := range pc.Spread {
		if !s.Hard {
			pc.Spread = slices.Delete(slices.Clone(pc.Spread), i, i+1)
			return true
		}
	}
	return false
}

// EffectiveNodeRequirements are the required alternatives, each narrowed by
// every remaining preferred term (alternatives a preferred term makes
// unsatisfiable keep the required form so the pod still has a home).
func (pc *PodConstraints) EffectiveNodeRequirements() []Requirements {
	if len(pc.Preferred) == 0 {
		return pc.NodeRequirements
	}
	out := make([]Requirements, 0, len(pc.NodeRequirements))
	for _, alt := range pc.NodeRequirements {
		r := alt
		for _, p := range pc.Preferred {
			r = r.Intersect(p.Requirements)
		}
		out = append(out, r)
	}
	return out
}
