package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// CostSubsystem groups the cost gauges: stowage_cost_*.
const CostSubsystem = "cost"

// CostGauges are the $/h gauges pkg/cost keeps up to date. They are built by
// NewCostGauges rather than at package init so that tests use their own
// registry and no global state is shared between them.
type CostGauges struct {
	// PerHour is the effective price of running capacity, by pool and capacity type.
	PerHour *prometheus.GaugeVec
	// OnDemandEquivalentPerHour is what the same machines would cost on-demand.
	OnDemandEquivalentPerHour *prometheus.GaugeVec
	// IdleGPUPerHour is the price share of GPUs no pod requests.
	IdleGPUPerHour *prometheus.GaugeVec
	// CommitmentUtilization is the share of each commitment the running
	// machines use; CommitmentSavingsPerHour what it saves against list price.
	CommitmentUtilization    *prometheus.GaugeVec
	CommitmentSavingsPerHour *prometheus.GaugeVec
}

// NewCostGauges makes the cost gauges, unregistered.
func NewCostGauges() *CostGauges {
	return &CostGauges{
		PerHour: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace,
			Subsystem: CostSubsystem,
			Name:      "per_hour",
			Help:      "Effective price in US dollars per hour of the running machines Stowage launched, by NodePool and capacity type.",
		}, []string{LabelNodePool, LabelCapacityType}),
		OnDemandEquivalentPerHour: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace,
			Subsystem: CostSubsystem,
			Name:      "on_demand_equivalent_per_hour",
			Help:      "What the running machines of a NodePool would cost per hour at on-demand prices, in US dollars.",
		}, []string{LabelNodePool}),
		IdleGPUPerHour: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace,
			Subsystem: CostSubsystem,
			Name:      "idle_gpu_per_hour",
			Help:      "Price share in US dollars per hour of the GPUs of a NodePool that no pod requests.",
		}, []string{LabelNodePool}),
		CommitmentUtilization: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace,
			Subsystem: "commitment",
			Name:      "utilization_ratio",
			Help:      "Share (0-1) of a Commitment the running machines use: machines of a count, dollars of an amount per hour; 1 for a Discount.",
		}, []string{LabelCommitment}),
		CommitmentSavingsPerHour: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace,
			Subsystem: "commitment",
			Name:      "savings_per_hour",
			Help:      "What the machines a Commitment covers would cost at list price less what the commitment charges for them, in US dollars per hour.",
		}, []string{LabelCommitment}),
	}
}

// Collectors lists the gauges for registration.
func (g *CostGauges) Collectors() []prometheus.Collector {
	return []prometheus.Collector{g.PerHour, g.OnDemandEquivalentPerHour, g.IdleGPUPerHour, g.CommitmentUtilization, g.CommitmentSavingsPerHour}
}

// Reset clears every series, so pools and capacity types that no longer have
// machines disappear instead of reporting a stale price.
func (g *CostGauges) Reset() {
	g.PerHour.Reset()
	g.OnDemandEquivalentPerHour.Reset()
	g.IdleGPUPerHour.Reset()
	g.CommitmentUtilization.Reset()
	g.CommitmentSavingsPerHour.Reset()
}
