package disruption

import (
	"fmt"
	"time"

	"github.com/stowage-k8s/stowage/pkg/solver"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Annotations the disruption controller sets on the NodeClaims it launches.
const (
	// AnnotationLineage names the first NodeClaim of a chain of replacements,
	// so the churn guard can see that a node has been replaced recently.
	AnnotationLineage = v1.Group + "/lineage"
	// AnnotationReplacedAt is when the claim was launched to replace another (RFC 3339).
	AnnotationReplacedAt = v1.Group + "/replaced-at"
)

// Defaults for ChurnGuard.
const (
	DefaultMinSavingsFraction = 0.05
	DefaultMinSavingsPerHour  = 0.05
	DefaultLineageWindow      = time.Hour
)

// ChurnGuard decides whether a consolidation replacement is worth its
// disruption. GPU spot prices move in small steps all day; without a floor on
// the saving and a limit per lineage, a pool would chase every cent and
// restart training jobs each time. It stands in for a fixed "N cheaper
// instance types" rule, which says nothing about how much is saved.
type ChurnGuard struct {
	// MinSavingsFraction of the candidates' price the replacement must save.
	MinSavingsFraction float64
	// MinSavingsPerHour the replacement must save, in dollars.
	MinSavingsPerHour float64
	// LineageWindow: a node launched as a replacement is not replaced again
	// until this long after.
	LineageWindow time.Duration
}

// DefaultChurnGuard returns the guard with the package defaults.
func DefaultChurnGuard() ChurnGuard {
	return ChurnGuard{
		MinSavingsFraction: DefaultMinSavingsFraction,
		MinSavingsPerHour:  DefaultMinSavingsPerHour,
		LineageWindow:      DefaultLineageWindow,
	}
}

// savingsEpsilon absorbs float error in a saving: $0.60 - $0.55 is
// 0.04999999999999993, which must still meet a five-cent minimum.
const savingsEpsilon = 1e-9

// saves reports whether savings out of old meets both minimums.
func (g ChurnGuard) saves(old, savings float64) bool {
	return savings+savingsEpsilon >= g.MinSavingsPerHour && savings+savingsEpsilon >= g.MinSavingsFraction*old
}

// Affordable is n with only the choices that still save enough against
// old: the claim's fallbacks are launched when the first choice has no
// capacity, and one that costs as much as the node it replaces would be
// launched, and the node drained, for nothing. Choices are cheapest first,
// so the first (which the guard allowed) always stays.
func (g ChurnGuard) Affordable(old float64, n *solver.NewNode) *solver.NewNode {
	keep := 0
	for keep < len(n.Choices) && (keep == 0 || g.saves(old, old-n.Choices[keep].Offering.PricePerHour)) {
		keep++
	}
	if keep == len(n.Choices) {
		return n
	}
	out := *n
	out.Choices = n.Choices[:keep:keep]
	return &out
}

// AllowsReplace returns the hourly saving of replacing cands with
// replacements, and why the guard refuses it ("" when it allows it).
func (g ChurnGuard) AllowsReplace(now time.Time, cands []*Candidate, replacements []*solver.NewNode) (float64, string) {
	old := priceOf(cands)
	savings := old - replacementCost(replacements)
	if savings <= 0 {
		return savings, fmt.Sprintf("no cheaper machine holds its pods (the cheapest costs $%.4f/h, the node $%.4f/h)",
			old-savings, old)
	}
	if !g.saves(old, savings) {
		return savings, fmt.Sprintf("saving $%.4f/h of $%.4f/h is below the minimum ($%.2f/h and %.0f%%)",
			savings, old, g.MinSavingsPerHour, 100*g.MinSavingsFraction)
	}
	for _, c := range cands {
		at, ok := c.Claim.Annotations[AnnotationReplacedAt]
		if !ok {
			continue
		}
		t, err := time.Parse(time.RFC3339, at)
		if err != nil {
			// Unreadable: be conservative only for the window after creation.
			t = c.Claim.CreationTimestamp.Time
		}
		if since := now.Sub(t); since < g.LineageWindow {
			return savings, fmt.Sprintf("nodeclaim %s replaced another node %s ago, less than the lineage window %s",
				c.Name(), since.Round(time.Second), g.LineageWindow)
		}
	}
	return savings, ""
}
