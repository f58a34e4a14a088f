package cost

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pricing"
)

// Placeholders for claims missing a nodepool label or a status.capacityType,
// so such machines still show up in totals instead of under an empty label.
const (
	NoNodePool          = "(none)"
	UnknownCapacityType = "unknown"
)

// OnDemandPricer answers what an instance type costs on-demand, for the
// on-demand equivalent of spot and reserved machines.
type OnDemandPricer interface {
	OnDemandPrice(instanceType, zone string) (float64, bool)
}

// State is the part of the cluster cost attribution reads.
type State struct {
	NodeClaims []v1.NodeClaim
	Nodes      []corev1.Node
	Pods       []corev1.Pod
	// Commitments are the cluster's Commitments; those ended by Now are ignored.
	Commitments []v1.Commitment
	// ResourceClaims and ResourceSlices say which GPUs pods hold through DRA
	// (no nvidia.com/gpu in the node's allocatable); empty without DRA.
	ResourceClaims []resourceapi.ResourceClaim
	ResourceSlices []resourceapi.ResourceSlice
	Now            time.Time
}

// Report is the cluster's running cost in US dollars per hour.
type Report struct {
	// Total is the effective price of every launched machine.
	Total float64 `json:"totalPerHour"`
	// OnDemandEquivalent is what the same machines would cost on-demand.
	OnDemandEquivalent float64 `json:"onDemandEquivalentPerHour"`
	// Machines counts the launched machines priced.
	Machines int `json:"machines"`

	NodePools     []NodePoolCost     `json:"nodePools"`
	CapacityTypes []CapacityTypeCost `json:"capacityTypes"`
	Namespaces    []NamespaceCost    `json:"namespaces"`
	Idle          IdleCost           `json:"idle"`
	// Commitments says how much of each active commitment the launched
	// machines use, and what it saves against list price.
	Commitments []pricing.CommitmentUse `json:"commitments,omitempty"`
	Warnings    []string                `json:"warnings,omitempty"`
}

// NodePoolCost is one pool's running cost.
type NodePoolCost struct {
	NodePool           string  `json:"nodePool"`
	Machines           int     `json:"machines"`
	PerHour            float64 `json:"perHour"`
	OnDemandEquivalent float64 `json:"onDemandEquivalentPerHour"`
	IdleGPU            float64 `json:"idleGPUPerHour"`
	// ByCapacityType splits PerHour by reserved, spot and on-demand.
	ByCapacityType map[string]float64 `json:"byCapacityType"`
}

// CapacityTypeCost is the running cost of one capacity type.
type CapacityTypeCost struct {
	CapacityType string  `json:"capacityType"`
	Machines     int     `json:"machines"`
	PerHour      float64 `json:"perHour"`
}

// NamespaceCost is the share of machine prices a namespace's pods request.
type NamespaceCost struct {
	Namespace string  `json:"namespace"`
	PerHour   float64 `json:"perHour"`
	// GPU is the part of PerHour paid for GPUs.
	GPU float64 `json:"gpuPerHour"`
}

// IdleCost is the price of capacity no pod requests.
type IdleCost struct {
	GPU       float64 `json:"gpuPerHour"`
	CPUMemory float64 `json:"cpuMemoryPerHour"`
}

// machine is one launched NodeClaim with what it costs and what it holds.
type machine struct {
	claim       *v1.NodeClaim
	pool        string
	price       float64
	onDemand    float64
	parts       parts
	allocatable corev1.ResourceList
	// requested sums each namespace's pod requests on the machine.
	requested map[string]corev1.ResourceList
}

// Attribute prices every launched machine and splits the prices between
// namespaces by their pods' requests. pricer may be nil. It never fails:
// objects it cannot price are skipped and named in Report.Warnings.
func Attribute(s State, model PriceModel, pricer OnDemandPricer) Report {
	var r Report
	var charges map[string]pricing.Charge
	r.Commitments, charges = commitmentUse(s, pricer)
	dra := newDRAGPUs(s.ResourceSlices)
	machines, byNode := r.machines(s, model, pricer, charges, dra)
	dra.claimed(s.ResourceClaims, byNode)
	for i := range s.Pods {
		pod := &s.Pods[i]
		if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		m, ok := byNode[pod.Spec.NodeName]
		if !ok {
			continue // a node Stowage does not manage
		}
		req := m.requested[pod.Namespace]
		if req == nil {
			req = corev1.ResourceList{}
			m.requested[pod.Namespace] = req
		}
		addTo(req, PodRequests(pod))
	}

	pools := map[string]*NodePoolCost{}
	capTypes := map[string]*CapacityTypeCost{}
	namespaces := map[string]*NamespaceCost{}
	for _, m := range machines {
		r.Total += m.price
		r.OnDemandEquivalent += m.onDemand
		r.Machines++
		p := pools[m.pool]
		if p == nil {
			p = &NodePoolCost{NodePool: m.pool, ByCapacityType: map[string]float64{}}
			pools[m.pool] = p
		}
		p.Machines++
		p.PerHour += m.price
		p.OnDemandEquivalent += m.onDemand
		ct := cmp.Or(m.claim.Status.CapacityType, UnknownCapacityType)
		p.ByCapacityType[ct] += m.price
		c := capTypes[ct]
		if c == nil {
			c = &CapacityTypeCost{CapacityType: ct}
			capTypes[ct] = c
		}
		c.Machines++
		c.PerHour += m.price

		idleGPU, idleCPUMem := m.attribute(namespaces)
		p.IdleGPU += idleGPU
		r.Idle.GPU += idleGPU
		r.Idle.CPUMemory += idleCPUMem
	}
	r.NodePools = sortedValues(pools, func(a, b NodePoolCost) int { return cmp.Compare(a.NodePool, b.NodePool) })
	r.CapacityTypes = sortedValues(capTypes, func(a, b CapacityTypeCost) int { return cmp.Compare(a.CapacityType, b.CapacityType) })
	// Most expensive namespace first: that is the line people read.
	r.Namespaces = sortedValues(namespaces, func(a, b NamespaceCost) int {
		return cmp.Or(cmp.Compare(b.PerHour, a.PerHour), cmp.Compare(a.Namespace, b.Namespace))
	})
	return r
}

// machines collects the launched NodeClaims and indexes them by node name.
func (r *Report) machines(s State, model PriceModel, pricer OnDemandPricer, charges map[string]pricing.Charge, dra draGPUs) ([]*machine, map[string]*machine) {
	nodesByName := make(map[string]*corev1.Node, len(s.Nodes))
	nodesByProviderID := make(map[string]*corev1.Node, len(s.Nodes))
	for i := range s.Nodes {
		n := &s.Nodes[i]
		nodesByName[n.Name] = n
		if n.Spec.ProviderID != "" {
			nodesByProviderID[n.Spec.ProviderID] = n
		}
	}
	claims := make([]*v1.NodeClaim, 0, len(s.NodeClaims))
	for i := range s.NodeClaims {
		claims = append(claims, &s.NodeClaims[i])
	}
	slices.SortFunc(claims, func(a, b *v1.NodeClaim) int { return cmp.Compare(a.Name, b.Name) })

	var out []*machine
	byNode := map[string]*machine{}
	for _, claim := range claims {
		// A claim without a provider ID has not bought anything yet.
		if claim.Status.ProviderID == "" {
			continue
		}
		price, err := parsePrice(claim.Status.PricePerHour)
		if err != nil {
			r.Warnings = append(r.Warnings, fmt.Sprintf("nodeclaim %s: status.pricePerHour: %v; not counted", claim.Name, err))
			continue
		}
		m := &machine{
			claim:     claim,
			pool:      cmp.Or(claim.Labels[v1.LabelNodePool], NoNodePool),
			price:     price,
			requested: map[string]corev1.ResourceList{},
		}
		m.onDemand = r.onDemandPrice(claim, price, pricer)
		m.price = billedPrice(claim, price, m.onDemand, charges[claim.Name])
		capacity, allocatable := claim.Status.Capacity, claim.Status.Allocatable
		node := nodesByName[claim.Status.NodeName]
		if node == nil {
			node = nodesByProviderID[claim.Status.ProviderID]
		}
		if node != nil {
			// The kubelet's view wins: it reflects time-slicing and MIG.
			capacity, allocatable = node.Status.Capacity, node.Status.Allocatable
			byNode[node.Name] = m
		}
		if allocatable == nil {
			allocatable = capacity
		}
		if node != nil && dra.perNode[node.Name] != nil {
			// GPUs a DRA driver publishes are not in the kubelet's lists.
			capacity, allocatable = capacity.DeepCopy(), allocatable.DeepCopy()
			if capacity == nil {
				capacity = corev1.ResourceList{}
			}
			if allocatable == nil {
				allocatable = corev1.ResourceList{}
			}
			addTo(capacity, dra.perNode[node.Name])
			addTo(allocatable, dra.perNode[node.Name])
		}
		m.allocatable = allocatable
		m.parts = model.splitAt(m.price, m.onDemand, capacity, hasGPU(allocatable))
		out = append(out, m)
	}
	return out, byNode
}

// onDemandPrice finds the on-demand price of the claim's machine, never
// below what it costs: its own price when it is on-demand at a price of its
// own, else the on-demand offering of its type the solver saw (in its zone
// first), else the pricer's. A commitment's covered choice
// (pricing.CoveredPricePerHour) is what the commitment makes a machine cost,
// not its on-demand price, so it never counts. Else its own price, with a
// warning.
func (r *Report) onDemandPrice(claim *v1.NodeClaim, price float64, pricer OnDemandPricer) float64 {
	if claim.Status.CapacityType == v1.CapacityTypeOnDemand && !pricing.IsCovered(price) {
		return price
	}
	if p := pricing.ClaimListPrice(claim, claim.Status.InstanceType, claim.Status.Zone); p > 0 {
		return max(p, price)
	}
	if pricer != nil {
		if p, ok := pricer.OnDemandPrice(claim.Status.InstanceType, claim.Status.Zone); ok {
			return max(p, price)
		}
	}
	r.Warnings = append(r.Warnings, fmt.Sprintf("nodeclaim %s: no on-demand price known for instance type %q; its on-demand equivalent is its own price",
		claim.Name, claim.Status.InstanceType))
	return price
}

// billedPrice is what the bill charges for a machine whose claim records
// price. The solver's marginal prices are not that: reserved capacity is
// recorded near zero (it is paid for whether used or not) and is billed at its
// on-demand rate; on-demand usage is billed at the rate of the commitment that
// covers it now (pricing.Charges), which may differ from the one it was
// launched under, and a covered placeholder ($0.0001/h) whose commitment no
// longer covers it costs its list price again.
func billedPrice(claim *v1.NodeClaim, price, onDemand float64, charge pricing.Charge) float64 {
	switch claim.Status.CapacityType {
	case v1.CapacityTypeReserved:
		return max(price, onDemand)
	case v1.CapacityTypeOnDemand:
		if charge.Commitment != "" && charge.PricePerHour > 0 {
			return charge.PricePerHour
		}
		if pricing.IsCovered(price) {
			// No commitment covers it now: it is billed at list price.
			return onDemand
		}
	}
	return price
}

// attribute adds each namespace's share of the machine's price to
// namespaces and returns the GPU and CPU/memory price nobody requests.
func (m *machine) attribute(namespaces map[string]*NamespaceCost) (idleGPU, idleCPUMem float64) {
	var gpus []corev1.ResourceName
	for name, q := range m.allocatable {
		if isGPUResource(name) && q.Sign() > 0 {
			gpus = append(gpus, name)
		}
	}
	slices.Sort(gpus)
	// With several GPU resources (mixed MIG profiles) the GPU part is split
	// evenly between them: the node does not say how many GPUs each uses.
	perGPUResource := 0.0
	if len(gpus) > 0 {
		perGPUResource = m.parts.gpu / float64(len(gpus))
	}
	type pricedResource struct {
		name  corev1.ResourceName
		price float64
		gpu   bool
	}
	resources := []pricedResource{
		{corev1.ResourceCPU, m.parts.cpu, false},
		{corev1.ResourceMemory, m.parts.memory, false},
	}
	for _, g := range gpus {
		resources = append(resources, pricedResource{g, perGPUResource, true})
	}
	nsNames := make([]string, 0, len(m.requested))
	for ns := range m.requested {
		nsNames = append(nsNames, ns)
	}
	slices.Sort(nsNames)
	for _, res := range resources {
		alloc := m.allocatable[res.name]
		capacity := alloc.AsApproximateFloat64()
		total := 0.0
		for _, ns := range nsNames {
			q := m.requested[ns][res.name]
			total += q.AsApproximateFloat64()
		}
		// Requests above allocatable (a kubelet that shrank) share the whole price.
		denominator := max(capacity, total)
		if denominator <= 0 {
			if res.gpu {
				idleGPU += res.price
			} else {
				idleCPUMem += res.price
			}
			continue
		}
		for _, ns := range nsNames {
			q := m.requested[ns][res.name]
			share := res.price * q.AsApproximateFloat64() / denominator
			if share == 0 {
				continue
			}
			nc := namespaces[ns]
			if nc == nil {
				nc = &NamespaceCost{Namespace: ns}
				namespaces[ns] = nc
			}
			nc.PerHour += share
			if res.gpu {
				nc.GPU += share
			}
		}
		idle := res.price * (denominator - total) / denominator
		if res.gpu {
			idleGPU += idle
		} else {
			idleCPUMem += idle
		}
	}
	return idleGPU, idleCPUMem
}

// PodRequests is what the scheduler reserves for a pod: the larger of its
// containers' (plus sidecars') summed requests and any init container's
// (plus the sidecars started before it), plus the pod overhead.
func PodRequests(pod *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, c := range pod.Spec.Containers {
		addTo(out, c.Resources.Requests)
	}
	sidecars := corev1.ResourceList{}
	initMax := corev1.ResourceList{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addTo(sidecars, c.Resources.Requests)
			maxInto(initMax, sidecars)
			continue
		}
		step := sidecars.DeepCopy()
		addTo(step, c.Resources.Requests)
		maxInto(initMax, step)
	}
	addTo(out, sidecars)
	maxInto(out, initMax)
	addTo(out, pod.Spec.Overhead)
	return out
}

func addTo(dst, src corev1.ResourceList) {
	for k, v := range src {
		q := dst[k]
		q.Add(v)
		dst[k] = q
	}
}

func maxInto(dst, src corev1.ResourceList) {
	for k, v := range src {
		if q, ok := dst[k]; !ok || v.Cmp(q) > 0 {
			dst[k] = v.DeepCopy()
		}
	}
}

func hasGPU(l corev1.ResourceList) bool {
	for name, q := range l {
		if isGPUResource(name) && q.Sign() > 0 {
			return true
		}
	}
	return false
}

func parsePrice(s string) (float64, error) {
	if s == "" {
		return 0, fmt.Errorf("not set")
	}
	p, err := strconv.ParseFloat(s, 64)
	if err != nil || p < 0 || math.IsNaN(p) || math.IsInf(p, 0) {
		return 0, fmt.Errorf("%q is not a non-negative decimal", s)
	}
	return p, nil
}

func sortedValues[T any](m map[string]*T, less func(a, b T) int) []T {
	out := make([]T, 0, len(m))
	for _, v := range m {
		out = append(out, *v)
	}
	slices.SortFunc(out, less)
	return out
}
