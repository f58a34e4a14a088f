package cost

import (
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
// unless that is a commitment's covered placeholder.
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
		m.ListPricePerHour = pricing.ClaimListPrice(&c, st.InstanceType, st.Zone)
		if m.ListPricePerHour == 0 && pricer != nil {
			m.ListPricePerHour, _ = pricer.OnDemandPrice(st.InstanceType, st.Zone)
		}
		if m.ListPricePerHour == 0 {
			if p, err := strconv.ParseFloat(st.PricePerHour, 64); err == nil && !pricing.IsCovered(p) {
				m.ListPricePerHour = p
			}
		}
		running = append(running, m)
	}
	charges, use := pricing.Charges(s.Commitments, running, s.Now)
	return use, charges
}
