package cost

import (
	"strconv"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pricing"
)

// commitmentUse charges the launched machines to the active commitments, as
// the bill does (see pricing.Usage). Machines are priced at the on-demand
// list price: the pricer's when it knows the type, else the claim's own.
func commitmentUse(s State, pricer OnDemandPricer) []pricing.CommitmentUse {
	if len(s.Commitments) == 0 {
		return nil
	}
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
		m := pricing.Machine{InstanceType: st.InstanceType, Labels: map[string]string{}}
		for k, v := range nodeLabels[st.NodeName] {
			m.Labels[k] = v
		}
		for k, v := range c.Labels {
			m.Labels[k] = v
		}
		m.Labels[v1.LabelInstanceType], m.Labels[v1.LabelZone], m.Labels[v1.LabelCapacityType] = st.InstanceType, st.Zone, st.CapacityType
		if pricer != nil {
			m.ListPricePerHour, _ = pricer.OnDemandPrice(st.InstanceType, st.Zone)
		}
		if m.ListPricePerHour == 0 {
			m.ListPricePerHour, _ = strconv.ParseFloat(st.PricePerHour, 64)
		}
		running = append(running, m)
	}
	return pricing.Usage(s.Commitments, running, s.Now)
}
