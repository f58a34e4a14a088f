package provisioning

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// mirrorPodAnnotation marks static pods the kubelet mirrors into the API.
const mirrorPodAnnotation = "kubernetes.io/config.mirror"

// isUnschedulable reports whether the kube-scheduler tried the pod and found
// no node for it: only then can buying a node help.
func isUnschedulable(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled {
			return c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable
		}
	}
	return false
}

// provisionable reports whether the provisioner should consider pod at all.
// Pods it skips here are not Stowage's to place, so they get no event.
func provisionable(pod *corev1.Pod) bool {
	switch {
	case pod.Spec.NodeName != "",
		pod.DeletionTimestamp != nil,
		scheduling.Finished(pod),
		pod.Annotations[mirrorPodAnnotation] != "",
		scheduling.DaemonSetPod(pod):
		return false
	}
	return isUnschedulable(pod)
}

// poolIncompatibility returns why pod can never run on a node of pool, or ""
// when it might. It is a cheap, conservative pre-check so pods no pool can
// help get a clear event; the solver makes the real decision.
func poolIncompatibility(pod *corev1.Pod, pool *v1.NodePool) string {
	for i := range pool.Spec.Template.Spec.Taints {
		taint := &pool.Spec.Template.Spec.Taints[i]
		if taint.Effect == corev1.TaintEffectPreferNoSchedule {
			continue
		}
		if !tolerated(pod.Spec.Tolerations, taint) {
			return fmt.Sprintf("taint %s not tolerated", taintString(taint))
		}
	}
	view := newPoolLabels(pool)
	for key, value := range pod.Spec.NodeSelector {
		req := corev1.NodeSelectorRequirement{Key: key, Operator: corev1.NodeSelectorOpIn, Values: []string{value}}
		if why := view.incompatible(req); why != "" {
			return "node selector " + why
		}
	}
	terms := requiredTerms(pod)
	if len(terms) == 0 {
		return ""
	}
	var whys []string
	for _, term := range terms {
		why := ""
		for _, req := range term.MatchExpressions {
			if why = view.incompatible(req); why != "" {
				break
			}
		}
		if why == "" {
			return ""
		}
		whys = append(whys, why)
	}
	return "node affinity " + strings.Join(whys, " or ")
}

// tolerated is the solver's check (scheduling.Tolerates), comparison
// operators included, so the pre-check never turns away a pod it would plan.
func tolerated(tolerations []corev1.Toleration, taint *corev1.Taint) bool {
	return scheduling.Tolerates(tolerations, []corev1.Taint{*taint}) == nil
}

func taintString(t *corev1.Taint) string {
	if t.Value == "" {
		return fmt.Sprintf("%s:%s", t.Key, t.Effect)
	}
	return fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect)
}

func requiredTerms(pod *corev1.Pod) []corev1.NodeSelectorTerm {
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return nil
	}
	return a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
}

// poolLabels is what a pool says about each label key of its future nodes:
// fixed template labels and requirements.
type poolLabels struct {
	fixed map[string]string
	reqs  map[string][]v1.NodeSelectorRequirementWithMinValues
}

func newPoolLabels(pool *v1.NodePool) poolLabels {
	p := poolLabels{fixed: map[string]string{v1.LabelNodePool: pool.Name}, reqs: map[string][]v1.NodeSelectorRequirementWithMinValues{}}
	for k, v := range pool.Spec.Template.ObjectMeta.Labels {
		p.fixed[k] = v
	}
	for _, r := range pool.Spec.Template.Spec.Requirements {
		p.reqs[r.Key] = append(p.reqs[r.Key], r)
	}
	return p
}

// incompatible returns why no node of the pool can satisfy req, or "".
func (p poolLabels) incompatible(req corev1.NodeSelectorRequirement) string {
	if value, ok := p.fixed[req.Key]; ok {
		if !matches(req, &value) {
			return fmt.Sprintf("%s: the pool's nodes have %s=%s", reqString(req), req.Key, value)
		}
		return ""
	}
	poolReqs, constrained := p.reqs[req.Key]
	if !constrained && !v1.WellKnownLabels[req.Key] {
		// Nothing will set the label on the pool's nodes.
		if req.Operator == corev1.NodeSelectorOpNotIn || req.Operator == corev1.NodeSelectorOpDoesNotExist {
			return ""
		}
		return fmt.Sprintf("%s: the pool's nodes do not have label %s", reqString(req), req.Key)
	}
	for _, pr := range poolReqs {
		if pr.Operator == corev1.NodeSelectorOpDoesNotExist {
			if req.Operator == corev1.NodeSelectorOpIn || req.Operator == corev1.NodeSelectorOpExists ||
				req.Operator == corev1.NodeSelectorOpGt || req.Operator == corev1.NodeSelectorOpLt {
				return fmt.Sprintf("%s: the pool requires %s to be absent", reqString(req), req.Key)
			}
		}
	}
	allowed, finite := allowedValues(poolReqs)
	switch req.Operator {
	case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		candidates := req.Values
		if finite {
			candidates = allowed
		}
		for i := range candidates {
			if matches(req, &candidates[i]) && allowedByPool(poolReqs, candidates[i]) {
				return ""
			}
		}
		if !finite && req.Operator != corev1.NodeSelectorOpIn {
			return "" // an open range on both sides: the solver decides
		}
		return fmt.Sprintf("%s: the pool allows %s", reqString(req), describe(poolReqs))
	case corev1.NodeSelectorOpNotIn:
		if finite && len(allowed) > 0 && !slices.ContainsFunc(allowed, func(v string) bool { return !slices.Contains(req.Values, v) }) {
			return fmt.Sprintf("%s: the pool allows %s", reqString(req), describe(poolReqs))
		}
	case corev1.NodeSelectorOpDoesNotExist:
		if finite || hasOp(poolReqs, corev1.NodeSelectorOpExists) {
			return fmt.Sprintf("%s: the pool's nodes always have %s", reqString(req), req.Key)
		}
		if v1.WellKnownLabels[req.Key] && !constrained {
			return fmt.Sprintf("%s: every node has %s", reqString(req), req.Key)
		}
	}
	return ""
}

// allowedValues intersects the pool's In requirements on one key; finite is
// false when none restricts the key to a list.
func allowedValues(reqs []v1.NodeSelectorRequirementWithMinValues) (values []string, finite bool) {
	for _, r := range reqs {
		if r.Operator != corev1.NodeSelectorOpIn {
			continue
		}
		if !finite {
			values, finite = append([]string(nil), r.Values...), true
			continue
		}
		values = slices.DeleteFunc(values, func(v string) bool { return !slices.Contains(r.Values, v) })
	}
	return values, finite
}

func allowedByPool(reqs []v1.NodeSelectorRequirementWithMinValues, value string) bool {
	for _, r := range reqs {
		req := corev1.NodeSelectorRequirement{Key: r.Key, Operator: r.Operator, Values: r.Values}
		if r.Operator == corev1.NodeSelectorOpExists || r.Operator == corev1.NodeSelectorOpDoesNotExist {
			continue
		}
		if !matches(req, &value) {
			return false
		}
	}
	return true
}

func hasOp(reqs []v1.NodeSelectorRequirementWithMinValues, op corev1.NodeSelectorOperator) bool {
	return slices.ContainsFunc(reqs, func(r v1.NodeSelectorRequirementWithMinValues) bool { return r.Operator == op })
}

// matches reports whether a label value (nil: label absent) satisfies req.
func matches(req corev1.NodeSelectorRequirement, value *string) bool {
	switch req.Operator {
	case corev1.NodeSelectorOpIn:
		return value != nil && slices.Contains(req.Values, *value)
	case corev1.NodeSelectorOpNotIn:
		return value == nil || !slices.Contains(req.Values, *value)
	case corev1.NodeSelectorOpExists:
		return value != nil
	case corev1.NodeSelectorOpDoesNotExist:
		return value == nil
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if value == nil || len(req.Values) != 1 {
			return false
		}
		got, err1 := strconv.ParseInt(*value, 10, 64)
		bound, err2 := strconv.ParseInt(req.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if req.Operator == corev1.NodeSelectorOpGt {
			return got > bound
		}
		return got < bound
	}
	return false
}

func reqString(r corev1.NodeSelectorRequirement) string {
	switch r.Operator {
	case corev1.NodeSelectorOpExists, corev1.NodeSelectorOpDoesNotExist:
		return fmt.Sprintf("%s %s", r.Key, r.Operator)
	}
	return fmt.Sprintf("%s %s [%s]", r.Key, r.Operator, strings.Join(r.Values, ","))
}

func describe(reqs []v1.NodeSelectorRequirementWithMinValues) string {
	parts := make([]string, 0, len(reqs))
	for _, r := range reqs {
		parts = append(parts, reqString(corev1.NodeSelectorRequirement{Key: r.Key, Operator: r.Operator, Values: r.Values}))
	}
	return strings.Join(parts, " and ")
}
