// Package commitments prices the solver's input with the cluster's
// Commitments (Savings Plans, Reserved Instances, committed use, discounts):
// it lists them and the running on-demand machines, and lets
// pricing.ApplyCommitments turn what is left of each into marginal offering
// prices. Provisioning and disruption see instance types through it, so both
// plan with the price the bill will show.
package commitments

import (
	"context"
	"fmt"
	"strconv"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

// InstanceTyper is the part of the cloud provider the solver's callers use.
type InstanceTyper interface {
	InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error)
}

// Pricer is an InstanceTyper whose on-demand offerings carry the cluster's
// commitments.
type Pricer struct {
	cloud  InstanceTyper
	client client.Reader
	clock  clock.PassiveClock
}

var _ InstanceTyper = (*Pricer)(nil)

// NewPricer wraps cloud; r lists Commitments and NodeClaims.
func NewPricer(cloud InstanceTyper, r client.Reader, clk clock.PassiveClock) *Pricer {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Pricer{cloud: cloud, client: r, clock: clk}
}

// InstanceTypes returns the pool's instance types priced with what each
// commitment has left after the running machines. Without Commitments (or
// without their CRD installed) the types are returned unchanged.
func (p *Pricer) InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	its, err := p.cloud.InstanceTypes(ctx, pool)
	if err != nil {
		return nil, err
	}
	cs, err := p.commitments(ctx)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return its, nil
	}
	running, err := Running(ctx, p.client, its)
	if err != nil {
		return nil, err
	}
	return pricing.ApplyCommitments(its, cs, running, p.clock.Now()), nil
}

// CoveredClaims names the NodeClaims whose running machines a commitment
// covers now, seen with pool's instance types (their labels are what
// commitments select on); empty without Commitments.
func (p *Pricer) CoveredClaims(ctx context.Context, pool *v1.NodePool) (map[string]bool, error) {
	cs, err := p.commitments(ctx)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return map[string]bool{}, nil
	}
	its, err := p.cloud.InstanceTypes(ctx, pool)
	if err != nil {
		return nil, err
	}
	running, err := Running(ctx, p.client, its)
	if err != nil {
		return nil, err
	}
	return pricing.Covered(cs, running, p.clock.Now()), nil
}

// commitments lists the cluster's Commitments; none without their CRD.
func (p *Pricer) commitments(ctx context.Context) ([]v1.Commitment, error) {
	var cs v1.CommitmentList
	if err := p.client.List(ctx, &cs); err != nil {
		if meta.IsNoMatchError(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing commitments: %w", err)
	}
	return cs.Items, nil
}

// Running lists the machines commitments see: launched ones, and claims
// still launching on a covered offering (their plan spent the commitment
// already; left out, the next pass would be offered the same coverage).
// Each has labels from the instance type (when types knows it), zone and
// capacity type, and its on-demand list price: from types, else the claim's
// own uncovered on-demand choice of its type, else its price.
func Running(ctx context.Context, r client.Reader, types []*cloudprovider.InstanceType) ([]pricing.Machine, error) {
	var claims v1.NodeClaimList
	if err := r.List(ctx, &claims); err != nil {
		return nil, fmt.Errorf("listing nodeclaims: %w", err)
	}
	byName := map[string]*cloudprovider.InstanceType{}
	for _, it := range types {
		byName[it.Name] = it
	}
	var out []pricing.Machine
	for i := range claims.Items {
		c := &claims.Items[i]
		instanceType, zone, capacityType, price, ok := machineOf(c)
		if !ok {
			continue
		}
		m := pricing.Machine{Name: c.Name, InstanceType: instanceType, Labels: map[string]string{}}
		if it := byName[instanceType]; it != nil {
			for k, v := range it.Labels {
				m.Labels[k] = v
			}
			for _, o := range it.Offerings {
				if o.CapacityType == v1.CapacityTypeOnDemand && o.Zone == zone && o.Commitment == "" {
					m.ListPricePerHour = o.PricePerHour
				}
			}
		}
		if m.ListPricePerHour == 0 {
			m.ListPricePerHour = pricing.ClaimListPrice(c, instanceType, zone)
		}
		if m.ListPricePerHour == 0 {
			m.ListPricePerHour = price
		}
		for k, v := range c.Labels {
			m.Labels[k] = v
		}
		m.Labels[v1.LabelInstanceType], m.Labels[v1.LabelZone], m.Labels[v1.LabelCapacityType] = instanceType, zone, capacityType
		out = append(out, m)
	}
	return out, nil
}

// machineOf is what a claim runs (or is about to): its launched type, zone,
// capacity type and price, or, for a claim not launched yet whose first
// choice is a commitment's covered offering, that choice.
func machineOf(c *v1.NodeClaim) (instanceType, zone, capacityType string, price float64, ok bool) {
	s := c.Status
	if s.InstanceType != "" && s.CapacityType != "" {
		price, _ = strconv.ParseFloat(s.PricePerHour, 64)
		return s.InstanceType, s.Zone, s.CapacityType, price, true
	}
	if c.DeletionTimestamp != nil || len(c.Spec.Offerings) == 0 {
		return "", "", "", 0, false
	}
	first := c.Spec.Offerings[0]
	if p, err := strconv.ParseFloat(first.PricePerHour, 64); err != nil || !pricing.IsCovered(p) {
		return "", "", "", 0, false
	}
	return first.InstanceType, first.Zone, first.CapacityType, pricing.CoveredPricePerHour, true
}
