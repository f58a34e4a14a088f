package disruption

import (
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// PoolDrift says how a claim's node no longer matches its pool: a reason
// (e.g. RequirementsDrifted) and a message, or "" when it matches.
// Provisioning stamps no template hash on claims, so the node's labels and
// the claim's spec are compared with the pool directly; that also catches
// drift a hash would miss (a node relabelled by hand).
func PoolDrift(pool *v1.NodePool, claim *v1.NodeClaim, node *corev1.Node) (reason, message string) {
	tmpl := pool.Spec.Template
	for _, r := range tmpl.Spec.Requirements {
		val, has := node.Labels[r.Key]
		if !has && v1.WellKnownLabels[r.Key] {
			// Not every provider's kubelet registers with the instance
			// type's labels; what the claim was bought as decides.
			if !claimAllows(r, claim) {
				return ReasonRequirementsDrifted, fmt.Sprintf("nodeclaim's %s no longer meets requirement %s %s %v", r.Key, r.Key, r.Operator, r.Values)
			}
			continue
		}
		if !requirementAllows(r, val, has) {
			return ReasonRequirementsDrifted, fmt.Sprintf("label %s=%q no longer meets requirement %s %s %v", r.Key, val, r.Key, r.Operator, r.Values)
		}
	}
	for k, want := range tmpl.ObjectMeta.Labels {
		if got, ok := node.Labels[k]; !ok || got != want {
			return ReasonLabelsDrifted, fmt.Sprintf("template label %s=%s is not on the node", k, want)
		}
	}
	if !sameTaints(tmpl.Spec.Taints, claim.Spec.Taints) {
		return ReasonTaintsDrifted, "the pool's taints changed"
	}
	if !sameTaints(tmpl.Spec.StartupTaints, claim.Spec.StartupTaints) {
		return ReasonStartupTaintsDrifted, "the pool's startup taints changed"
	}
	if !equality.Semantic.DeepEqual(tmpl.Spec.NodeClassRef, claim.Spec.NodeClassRef) {
		return ReasonNodeClassRefDrifted, "the pool's nodeClassRef changed"
	}
	return "", ""
}

// claimAllows reports whether a claim whose node lacks a well-known label
// may still meet r: some value its own In requirement on the key allows
// meets r. A claim without one says nothing, and is not taken to drift.
func claimAllows(r v1.NodeSelectorRequirementWithMinValues, claim *v1.NodeClaim) bool {
	for _, c := range claim.Spec.Requirements {
		if c.Key != r.Key || c.Operator != corev1.NodeSelectorOpIn {
			continue
		}
		return slices.ContainsFunc(c.Values, func(v string) bool { return requirementAllows(r, v, true) })
	}
	return true
}

// requirementAllows evaluates a node selector requirement against a label.
func requirementAllows(r v1.NodeSelectorRequirementWithMinValues, val string, has bool) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return has && slices.Contains(r.Values, val)
	case corev1.NodeSelectorOpNotIn:
		return !has || !slices.Contains(r.Values, val)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(r.Values) != 1 {
			return false
		}
		got, err1 := strconv.ParseInt(val, 10, 64)
		bound, err2 := strconv.ParseInt(r.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return got > bound
		}
		return got < bound
	}
	// An operator the API would have rejected: do not act on it.
	return true
}

// sameTaints compares taints as sets by key, value and effect.
func sameTaints(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		found := false
		for j := range b {
			if a[i].Key == b[j].Key && a[i].Value == b[j].Value && a[i].Effect == b[j].Effect {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
