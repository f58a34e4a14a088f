package pricing

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// CoveredPricePerHour is the marginal price of a machine a commitment still
// covers: already paid for, but not free, so the solver still prefers fewer
// machines (the same as a simulated reservation).
const CoveredPricePerHour = 0.0001

// IsCovered reports whether a price, as a claim records it, is
// CoveredPricePerHour (within rounding): what a commitment makes a machine
// cost, not its list price.
func IsCovered(pricePerHour float64) bool { return pricePerHour <= CoveredPricePerHour*1.5 }

// ClaimListPrice is the on-demand list price of instanceType as the claim's
// own choices carry it: its first uncovered on-demand choice of the type in
// zone, else in any zone; 0 when it has none.
func ClaimListPrice(claim *v1.NodeClaim, instanceType, zone string) float64 {
	other := 0.0
	for _, o := range claim.Spec.Offerings {
		if o.InstanceType != instanceType || o.CapacityType != v1.CapacityTypeOnDemand {
			continue
		}
		p, err := strconv.ParseFloat(o.PricePerHour, 64)
		switch {
		case err != nil || !(p > 0) || math.IsInf(p, 1) || IsCovered(p): // unparsable, not a price, or covered
		case o.Zone == zone:
			return p
		case other == 0:
			other = p
		}
	}
	return other
}

// Machine is one running on-demand machine, as commitments see it: what the
// bill charges it at list price, and the labels commitments select on.
type Machine struct {
	// Name is the NodeClaim's, when the machine has one.
	Name         string
	InstanceType string
	// Labels of the node: at least instance type, zone and capacity type.
	Labels map[string]string
	// ListPricePerHour is the on-demand list price.
	ListPricePerHour float64
}

// CommitmentUse is how much of one commitment the running machines use.
// Its JSON names match stowage simulate's commitment report.
type CommitmentUse struct {
	Name string            `json:"name"`
	Type v1.CommitmentType `json:"type"`
	// Committed and Used are machines for a count, dollars per hour at the
	// discounted rate for an amount; zero for a Discount.
	Committed float64 `json:"committed"`
	Used      float64 `json:"used"`
	// Unit is "machines" or "$/h".
	Unit string `json:"unit,omitempty"`
	// Machines counts the running machines it covers (for a Discount: those
	// its rate applies to).
	Machines int `json:"machines"`
	// Savings is what the covered machines would cost at list price less
	// what the commitment charges for them, per hour.
	Savings float64 `json:"savingsPerHour"`
}

// Utilization is Used / Committed in [0, 1]; 1 for a Discount.
func (u CommitmentUse) Utilization() float64 {
	if u.Committed <= 0 {
		return 1
	}
	return math.Min(1, u.Used/u.Committed)
}

// ledger is the coverage left of one commitment after the running machines.
type ledger struct {
	c        *v1.Commitment
	discount float64 // fraction off list price
	count    bool    // counted in machines, else dollars
	left     float64
	use      CommitmentUse
}

// ActiveCommitments are those not yet ended at now, by name.
func ActiveCommitments(cs []v1.Commitment, now time.Time) []*v1.Commitment {
	var out []*v1.Commitment
	for i := range cs {
		c := &cs[i]
		if c.Spec.EndTime != nil && !now.Before(c.Spec.EndTime.Time) {
			continue
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *v1.Commitment) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// newLedgers charges the running machines, priciest first, to the first
// commitment, in compareCoverage order, that covers them and has room;
// Discounts record the machines they apply to.
func newLedgers(active []*v1.Commitment, running []Machine) []*ledger {
	ledgers, _, _ := chargeRunning(active, running)
	return ledgers
}

// chargeRunning is newLedgers, also naming the running machines a count or
// amount commitment covers, and saying what the bill charges each named
// machine once the commitments apply.
func chargeRunning(active []*v1.Commitment, running []Machine) ([]*ledger, map[string]bool, map[string]Charge) {
	coveredNames := map[string]bool{}
	charges := map[string]Charge{}
	active = slices.Clone(active)
	slices.SortStableFunc(active, compareCoverage)
	var out []*ledger
	for _, c := range active {
		l := &ledger{c: c, use: CommitmentUse{Name: c.Name, Type: c.Spec.Type}}
		if c.Spec.DiscountPercent != nil {
			l.discount = float64(*c.Spec.DiscountPercent) / 100
		}
		switch {
		case c.Spec.Count != nil:
			l.count, l.left = true, float64(*c.Spec.Count)
			l.use.Committed, l.use.Unit = l.left, "machines"
		case c.Spec.AmountPerHour != nil:
			l.left = c.Spec.AmountPerHour.AsApproximateFloat64()
			l.use.Committed, l.use.Unit = l.left, "$/h"
		}
		out = append(out, l)
	}
	machines := slices.Clone(running)
	slices.SortStableFunc(machines, func(a, b Machine) int {
		return cmp.Or(cmp.Compare(b.ListPricePerHour, a.ListPricePerHour), cmp.Compare(a.InstanceType, b.InstanceType))
	})
	for _, m := range machines {
		if m.Labels[v1.LabelCapacityType] != v1.CapacityTypeOnDemand {
			continue
		}
		covered := false
		for _, l := range out {
			if l.c.Spec.Type == v1.CommitmentDiscount || !Covers(l.c, m.Labels) {
				continue
			}
			cost := 1.0
			if !l.count {
				cost = m.ListPricePerHour * (1 - l.discount)
			}
			if l.left+1e-9 < cost {
				continue
			}
			l.left -= cost
			l.use.Used += cost
			l.use.Machines++
			if l.count {
				// The machines are paid for whatever runs: a covered one saves its list price.
				l.use.Savings += m.ListPricePerHour
			} else {
				l.use.Savings += m.ListPricePerHour - cost
			}
			covered = true
			if m.Name != "" {
				coveredNames[m.Name] = true
				charges[m.Name] = Charge{Commitment: l.c.Name, PricePerHour: m.ListPricePerHour * (1 - l.discount)}
			}
			break
		}
		if covered {
			continue
		}
		// Usage no commitment covers gets the best discount that applies.
		var best *ledger
		for _, l := range out {
			if l.c.Spec.Type == v1.CommitmentDiscount && Covers(l.c, m.Labels) && (best == nil || l.discount > best.discount) {
				best = l
			}
		}
		if best != nil {
			best.use.Machines++
			best.use.Savings += m.ListPricePerHour * best.discount
			if m.Name != "" {
				charges[m.Name] = Charge{Commitment: best.c.Name, PricePerHour: m.ListPricePerHour * (1 - best.discount)}
			}
		}
	}
	return out, coveredNames, charges
}

// Charge is what the bill charges one running on-demand machine once the
// commitments apply.
type Charge struct {
	// Commitment names the count or amount commitment that covers the
	// machine, else the Discount applied to it.
	Commitment string
	// PricePerHour is the machine's list price less that commitment's
	// discount (for a count, its amortized rate).
	PricePerHour float64
}

// Charges says, by machine name, what the bill charges each running machine
// a commitment applies to; machines without an entry pay list price. It also
// returns the use of each active commitment, as Usage.
func Charges(commitments []v1.Commitment, running []Machine, now time.Time) (map[string]Charge, []CommitmentUse) {
	ledgers, _, charges := chargeRunning(ActiveCommitments(commitments, now), running)
	var use []CommitmentUse
	for _, l := range ledgers {
		use = append(use, l.use)
	}
	return charges, use
}

// Covered names the running machines a Savings Plan, Reserved Instances or
// committed use covers now, charged as Usage charges them: their marginal
// price is CoveredPricePerHour, whatever they launched at.
func Covered(commitments []v1.Commitment, running []Machine, now time.Time) map[string]bool {
	_, covered, _ := chargeRunning(ActiveCommitments(commitments, now), running)
	return covered
}

// Usage reports, per active commitment, how much the running machines use.
func Usage(commitments []v1.Commitment, running []Machine, now time.Time) []CommitmentUse {
	var out []CommitmentUse
	for _, l := range newLedgers(ActiveCommitments(commitments, now), running) {
		out = append(out, l.use)
	}
	return out
}

// ApplyCommitments prices on-demand offerings at their marginal cost to the
// bill. It returns copies of types (the input is not modified) where every
// on-demand offering a commitment covers gains, beside itself:
//
//   - for each count or amount commitment with coverage left after the
//     running machines, a covered offering at CoveredPricePerHour that
//     spends the commitment (one machine, or the machine's discounted price
//     in dollars) while it lasts: Offering.Commitment, CommitmentCost and
//     CommitmentLeft say how much, and the solver charges the commitment
//     across all types and zones it covers;
//
// and the on-demand offering itself is priced at the best Discount's rate.
// Spot and reserved offerings are unchanged. So a machine costs, in order:
// covered usage, the discounted rate, list price.
func ApplyCommitments(types []*cloudprovider.InstanceType, commitments []v1.Commitment, running []Machine, now time.Time) []*cloudprovider.InstanceType {
	active := ActiveCommitments(commitments, now)
	if len(active) == 0 {
		return types
	}
	ledgers := newLedgers(active, running)
	out := make([]*cloudprovider.InstanceType, len(types))
	for i, it := range types {
		cp := *it
		cp.Offerings = nil
		for _, o := range it.Offerings {
			if o.CapacityType != v1.CapacityTypeOnDemand {
				cp.Offerings = append(cp.Offerings, o)
				continue
			}
			labels := make(map[string]string, len(it.Labels)+2)
			for k, v := range it.Labels {
				labels[k] = v
			}
			labels[v1.LabelInstanceType] = it.Name
			labels[v1.LabelZone], labels[v1.LabelCapacityType] = o.Zone, o.CapacityType
			list := o.PricePerHour
			for _, l := range ledgers {
				if !Covers(l.c, labels) {
					continue
				}
				if l.c.Spec.Type == v1.CommitmentDiscount {
					o.PricePerHour = math.Min(o.PricePerHour, list*(1-l.discount))
					continue
				}
				cost := 1.0
				if !l.count {
					cost = list * (1 - l.discount)
				}
				if l.left+1e-9 < cost || cost <= 0 {
					continue
				}
				covered := o
				covered.PricePerHour = CoveredPricePerHour
				covered.Commitment, covered.CommitmentCost, covered.CommitmentLeft = l.c.Name, cost, l.left
				cp.Offerings = append(cp.Offerings, covered)
			}
			cp.Offerings = append(cp.Offerings, o)
		}
		out[i] = &cp
	}
	return out
}

// Covers reports whether a machine with these labels is one the commitment
// covers (on-demand only).
func Covers(c *v1.Commitment, labels map[string]string) bool {
	if labels[v1.LabelCapacityType] != v1.CapacityTypeOnDemand {
		return false
	}
	for _, r := range c.Spec.Requirements {
		if !requirementMatches(r.Operator, labels[r.Key], hasKey(labels, r.Key), r.Values) {
			return false
		}
	}
	return true
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}

// requirementMatches evaluates one node selector requirement with the
// Kubernetes semantics (NotIn and DoesNotExist match a missing label).
func requirementMatches(op corev1.NodeSelectorOperator, v string, has bool, values []string) bool {
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
		a, err1 := strconv.ParseInt(v, 10, 64)
		b, err2 := strconv.ParseInt(values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if op == corev1.NodeSelectorOpGt {
			return a > b
		}
		return a < b
	}
	return false
}

// compareCoverage orders commitments as the bill applies them to usage, most
// specific first, so that coverage, the cost report and the solver's covered
// offerings (ApplyCommitments lists them in this order) all agree with it:
//
//  1. counts of machines (Reserved Instances, Azure reservations, resource
//     CUDs);
//  2. amounts that name instance families or types (an EC2 Instance Savings
//     Plan is one family in one region);
//  3. other amounts (a Compute Savings Plan, a spend-based CUD);
//  4. Discounts, which cover nothing and only lower the rate of what is left.
//
// Within a rank the highest discount goes first (AWS applies Savings Plans to
// the usage with the highest savings percentage first), then by name. Source:
// AWS Savings Plans User Guide, "Understanding how Savings Plans apply to your
// AWS usage" (sp-applying), checked 2026-12: RIs apply before Savings Plans, EC2
// Instance Savings Plans before Compute Savings Plans.
func compareCoverage(a, b *v1.Commitment) int {
	return cmp.Or(cmp.Compare(coverageRank(a), coverageRank(b)),
		cmp.Compare(discountPercent(b), discountPercent(a)), cmp.Compare(a.Name, b.Name))
}

func coverageRank(c *v1.Commitment) int {
	switch {
	case c.Spec.Type == v1.CommitmentDiscount:
		return 3
	case c.Spec.Count != nil:
		return 0
	}
	for _, r := range c.Spec.Requirements {
		if (r.Key == v1.LabelInstanceFamily || r.Key == v1.LabelInstanceType) && r.Operator == corev1.NodeSelectorOpIn {
			return 1
		}
	}
	return 2
}

func discountPercent(c *v1.Commitment) int32 {
	if c.Spec.DiscountPercent == nil {
		return 0
	}
	return *c.Spec.DiscountPercent
}
