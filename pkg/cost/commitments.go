package cost

import (
	"maps"
	"strconv"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pricing"
)

// commitmentUse charges the launched machines to the active commitments, as
// the bill does (see pricing.Charges), and returns each commitment's use and
// what the bill charges each on-demand machine, by claim name. Machines are priced at the on-demand
// list price as pkg/commitments.Running prices them for the solver: the
// claim's own uncovered on-demand choice of its type (the price the provider
// quoted for its region), else the pricer's, else the claim's own price
// unless that is a commitment's covered placeholder; a price from the claim
// has the Discount it was planned under taken back off (plannedDiscount).
func commitmentUse(s State, pricer OnDemandPricer) ([]pricing.CommitmentUse, map[string]pricing.Charge) {
	nodeLabels := map[string]map[string]string{}
	for i := range s.Nodes {
		nodeLabels[s.Nodes[i].Name] = s.Nodes[i].Labels
	}
	var running []pricing.Machine
	for _, c := range s.NodeClaims {
		st := c.Status
		if st.InstanceType == "" || st.CapacityType == "" {
			continue
		}
		m := pricing.Machine{Name: c.Name, InstanceType: st.InstanceType, Labels: map[string]string{}}
		for k, v := range nodeLabels[st.NodeName] {
			m.Labels[k] = v
		}
		for k, v := range c.Labels {
			m.Labels[k] = v
		}
		m.Labels[v1.LabelInstanceType], m.Labels[v1.LabelZone], m.Labels[v1.LabelCapacityType] = st.InstanceType, st.Zone, st.CapacityType
		m.ListPricePerHour = pricing.ClaimListPrice(&c, st.InstanceType, st.Zone) / plannedDiscount(&c, m.Labels, s.Commitments)
		if m.ListPricePerHour == 0 && pricer != nil {
			m.ListPricePerHour, _ = pricer.OnDemandPrice(st.InstanceType, st.Zone)
		}
		if m.ListPricePerHour == 0 {
			if p, err := strconv.ParseFloat(st.PricePerHour, 64); err == nil && !pricing.IsCovered(p) {
				m.ListPricePerHour = p / plannedDiscount(&c, m.Labels, s.Commitments)
			}
		}
		running = append(running, m)
	}
	charges, use := pricing.Charges(s.Commitments, running, s.Now)
	return use, charges
}

// plannedDiscount is the factor (1 less the best discount) the solver priced
// the claim's on-demand choices at: pricing.ApplyCommitments lowers them by
// the best Discount that covered the machine when the claim was planned (one
// created before the claim and not ended by then). Dividing by it gives back
// the list price, which the bill discounts only once.
func plannedDiscount(claim *v1.NodeClaim, labels map[string]string, commitments []v1.Commitment) float64 {
	planned := claim.CreationTimestamp.Time
	onDemand := maps.Clone(labels)
	onDemand[v1.LabelCapacityType] = v1.CapacityTypeOnDemand
	best := 0.0
	for i := range commitments {
		c := &commitments[i]
		if c.Spec.Type != v1.CommitmentDiscount || c.Spec.DiscountPercent == nil || c.CreationTimestamp.After(planned) ||
			(c.Spec.EndTime != nil && !planned.Before(c.Spec.EndTime.Time)) || !pricing.Covers(c, onDemand) {
			continue
		}
		if d := float64(*c.Spec.DiscountPercent) / 100; d > best && d < 1 {
			best = d
		}
	}
	return 1 - best
}
