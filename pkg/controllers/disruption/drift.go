package disruption

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Drift replaces nodes that no longer match their NodePool: its
// requirements, template labels, taints or nodeClassRef changed since the
// node was bought. Provisioning stamps no template hash on claims, so the
// node's labels and the claim's spec are compared with the pool directly;
// that also catches drift a hash would miss (a node relabelled by hand).
type Drift struct{}

var _ Method = Drift{}

// Name implements Method.
func (Drift) Name() string { return "drift" }

// Reason implements Method.
func (Drift) Reason() v1.DisruptionReason { return v1.DisruptionReasonDrifted }

// ShouldDisrupt implements Method.
func (Drift) ShouldDisrupt(_ *Evaluation, c *Candidate) bool {
	return c.Blocked == "" && DriftReason(c.Pool, c.Claim, c.Node) != ""
}

// ComputeCommand replaces the first drifted candidate within budget whose
// pods all have a place; one per pass.
func (m Drift) ComputeCommand(ctx context.Context, e *Evaluation, cands []*Candidate) (Command, error) {
	sorted := append([]*Candidate(nil), cands...)
	byDisruptionCost(sorted)
	for _, c := range e.withinBudgets(m.Reason(), sorted) {
		sim, err := e.Simulator.Simulate(ctx, e.State, []*Candidate{c})
		if err != nil {
			return Command{}, err
		}
		if !sim.Feasible() {
			log.FromContext(ctx).V(1).Info("drifted node's pods have no place; keeping it", "nodeclaim", c.Name(),
				"drift", DriftReason(c.Pool, c.Claim, c.Node), "unschedulable", len(sim.Plan.Unschedulable))
			continue
		}
		return Command{
			Method:         m.Name(),
			Reason:         m.Reason(),
			Candidates:     []*Candidate{c},
			Replacements:   sim.Plan.NewNodes,
			Bindings:       sim.Plan.Bindings,
			SavingsPerHour: c.PricePerHour - sim.Plan.CostPerHour,
		}, nil
	}
	return Command{}, nil
}

// DriftReason says how the node differs from its pool, or "" when it does not.
func DriftReason(pool *v1.NodePool, claim *v1.NodeClaim, node *corev1.Node) string {
	tmpl := pool.Spec.Template
	for _, r := range tmpl.Spec.Requirements {
		val, has := node.Labels[r.Key]
		if !requirementAllows(r, val, has) {
			return fmt.Sprintf("label %s=%q no longer meets requirement %s %s %v", r.Key, val, r.Key, r.Operator, r.Values)
		}
	}
	for k, want := range tmpl.ObjectMeta.Labels {
		if got, ok := node.Labels[k]; !ok || got != want {
			return fmt.Sprintf("template label %s=%s is not on the node", k, want)
		}
	}
	if !sameTaints(tmpl.Spec.Taints, claim.Spec.Taints) {
		return "taints changed"
	}
	if !sameTaints(tmpl.Spec.StartupTaints, claim.Spec.StartupTaints) {
		return "startup taints changed"
	}
	if !equality.Semantic.DeepEqual(tmpl.Spec.NodeClassRef, claim.Spec.NodeClassRef) {
		return "nodeClassRef changed"
	}
	return ""
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
