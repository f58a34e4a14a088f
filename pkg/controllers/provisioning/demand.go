package provisioning

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// Demand is capacity asked for pods that do not exist yet: a
// ProvisioningRequest's pod sets. Provisioning plans a demand's pods in the
// same pass and with the same solver as pending pods, so the two never buy
// the same capacity twice.
type Demand struct {
	// Key identifies the demand (the request's namespace/name); it is what
	// bookings and AnnotationBookedBy name.
	Key string
	// Pods stand for the pods to come, each declaring the demand's gang.
	Pods []*corev1.Pod
	// CheckOnly plans without buying: capacity found on existing nodes is
	// booked, capacity that would have to be bought is only reported.
	CheckOnly bool
}

// Outcome is what a pass did for a demand.
type Outcome struct {
	// Placed: every pod got capacity (booked, bought, or for CheckOnly,
	// found buyable).
	Placed bool
	// Reason says why not, when not Placed.
	Reason string
	// Claims are the NodeClaims bought for the demand; none when it fit on
	// capacity that exists or, for CheckOnly, would have to be bought.
	Claims []string
	// NewNodes and CostPerHour are what a CheckOnly demand would buy.
	NewNodes    int
	CostPerHour float64
}

// DemandSource supplies demands and hears what became of them.
type DemandSource interface {
	Demands() []Demand
	// Planned records the outcome. book, when not nil, books the capacity
	// the pass found; the source calls it only while the demand still
	// stands, under the same lock as its release, so a demand deleted
	// during the pass leaves no booking behind.
	Planned(ctx context.Context, key string, o Outcome, book func())
}

// Trigger opens a batch, e.g. because a demand appeared.
func (c *Controller) Trigger() { c.batcher.Trigger() }

func (c *Controller) demandsNow() (buy, check []Demand) {
	if c.demands == nil {
		return nil, nil
	}
	for _, d := range c.demands.Demands() {
		if d.CheckOnly {
			check = append(check, d)
		} else {
			buy = append(buy, d)
		}
	}
	return buy, check
}

// settleDemands books what the plan gave each demand and tells the source.
// A demand is placed only if every one of its pods got a binding or a claim
// that was written; otherwise nothing is booked and it is planned again.
func (c *Controller) settleDemands(ctx context.Context, buy []Demand, phantoms map[*corev1.Pod]string, plan *solver.Plan, claimOf map[*solver.NewNode]*v1.NodeClaim) {
	if len(buy) == 0 {
		return
	}
	type placement struct{ target string }
	placed := map[*corev1.Pod]placement{}
	claims := map[string][]string{}
	why := map[string]string{}
	if plan != nil {
		for _, b := range plan.Bindings {
			if _, ok := phantoms[b.Pod]; ok {
				placed[b.Pod] = placement{b.NodeName}
			}
		}
		for _, n := range plan.NewNodes {
			claim := claimOf[n]
			for _, p := range n.Pods {
				key, ok := phantoms[p]
				if !ok {
					continue
				}
				if claim == nil {
					why[key] = "its nodeclaims could not all be written; planning again"
					continue
				}
				placed[p] = placement{claim.Name}
				if len(claims[key]) == 0 || claims[key][len(claims[key])-1] != claim.Name {
					claims[key] = append(claims[key], claim.Name)
				}
			}
		}
		for _, u := range plan.Unschedulable {
			if key, ok := phantoms[u.Pod]; ok && why[key] == "" {
				why[key] = u.Reason
			}
		}
	}
	for _, d := range buy {
		o := Outcome{Placed: true}
		for _, p := range d.Pods {
			if _, ok := placed[p]; !ok {
				o = Outcome{Reason: why[d.Key]}
				if o.Reason == "" {
					o.Reason = "no plan placed its pods"
				}
				break
			}
		}
		var book func()
		if o.Placed {
			book = func() {
				for _, p := range d.Pods {
					c.cluster.Book(d.Key, placed[p].target, p)
				}
			}
			o.Claims = claims[d.Key]
		}
		c.demands.Planned(ctx, d.Key, o, book)
	}
}

// checkDemands answers check-only demands one by one against the cluster as
// this pass left it: capacity that exists is booked; capacity that would
// have to be bought is reported, not bought.
func (c *Controller) checkDemands(ctx context.Context, check []Demand, snapshotFor func(pods []*corev1.Pod) (*solver.Snapshot, error)) error {
	for _, d := range check {
		snap, err := snapshotFor(d.Pods)
		if err != nil {
			return err
		}
		plan, err := c.solver.Solve(ctx, snap)
		if err != nil {
			return fmt.Errorf("checking capacity for %s: %w", d.Key, err)
		}
		var o Outcome
		var book func()
		switch {
		case len(plan.Unschedulable) > 0:
			reasons := map[string]bool{}
			var list []string
			for _, u := range plan.Unschedulable {
				if !reasons[u.Reason] {
					reasons[u.Reason] = true
					list = append(list, u.Reason)
				}
			}
			o.Reason = strings.Join(list, "; ")
		case len(plan.NewNodes) == 0:
			o.Placed = true
			book = func() {
				for _, b := range plan.Bindings {
					c.cluster.Book(d.Key, b.NodeName, b.Pod)
				}
			}
		default:
			o = Outcome{Placed: true, NewNodes: len(plan.NewNodes), CostPerHour: plan.CostPerHour}
		}
		c.demands.Planned(ctx, d.Key, o, book)
	}
	return nil
}
