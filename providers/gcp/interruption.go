package gcp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// Interruption defaults.
const (
	DefaultInterruptionPoll = 5 * time.Second
	// SpotNotice is how long a preempted spot VM keeps running.
	SpotNotice = 30 * time.Second
	// preemptionLookback is how old a preemption operation may be and still
	// be reported when the source starts: one missed during a restart.
	preemptionLookback = 2 * time.Minute
	// shuttingDown is what the kubelet's graceful node shutdown puts in the
	// Ready condition's message.
	shuttingDown = "node is shutting down"
	// seenFor is how long a delivered notice is remembered.
	seenFor = time.Hour
)

// InterruptionOptions tune the interruption source.
type InterruptionOptions struct {
	// PollInterval between looks at zone operations, instances and Nodes.
	PollInterval time.Duration
	// Disabled turns the source off (Interruptions then delivers nothing).
	Disabled bool
}

// Interruptions implements cloudprovider.InterruptionSource with no node
// agent: it polls the region's zone operations for
// compute.instances.preempted, this cluster's VMs for announced host
// maintenance (resourceStatus.upcomingMaintenance), and Nodes for the
// kubelet's graceful-shutdown condition. Each notice is sent once.
func (p *Provider) Interruptions(ctx context.Context) (<-chan cloudprovider.InterruptionEvent, error) {
	ch := make(chan cloudprovider.InterruptionEvent)
	if p.opts.Interruption.Disabled {
		go func() { <-ctx.Done(); close(ch) }()
		return ch, nil
	}
	interval := p.opts.Interruption.PollInterval
	if interval <= 0 {
		interval = DefaultInterruptionPoll
	}
	start := p.clock.Now().Add(-preemptionLookback)
	seen := map[string]time.Time{}
	go func() {
		defer close(ch)
		logger := log.FromContext(ctx).WithName(Name).WithName("interruption")
		for {
			// A notice is remembered for seenFor; an operation older than
			// that is past its deadline and would otherwise be delivered
			// again once forgotten (zone operations stay listed for days).
			since := start
			if old := p.clock.Now().Add(-seenFor); old.After(since) {
				since = old
			}
			events, err := p.pollInterruptions(ctx, since)
			if err != nil {
				logger.Error(err, "polling for interruptions")
			}
			now := p.clock.Now()
			for _, ev := range events {
				key := ev.ProviderID + "/" + string(ev.Kind) + "/" + ev.Deadline.String()
				if _, ok := seen[key]; ok {
					continue
				}
				seen[key] = now
				select {
				case ch <- ev:
				case <-ctx.Done():
					return
				}
			}
			for k, t := range seen {
				if now.Sub(t) > seenFor {
					delete(seen, k)
				}
			}
			t := p.clock.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		}
	}()
	return ch, nil
}

// pollInterruptions looks once at every source of notices.
func (p *Provider) pollInterruptions(ctx context.Context, since time.Time) ([]cloudprovider.InterruptionEvent, error) {
	var out []cloudprovider.InterruptionEvent
	var errs []error
	pre, err := p.preemptions(ctx, since)
	out = append(out, pre...)
	errs = append(errs, err)
	maint, err := p.maintenance(ctx)
	out = append(out, maint...)
	errs = append(errs, err)
	shut, err := p.shutdowns(ctx)
	out = append(out, shut...)
	errs = append(errs, err)
	return out, errors.Join(errs...)
}

// preemptions reads compute.instances.preempted operations in the region's
// zones.
func (p *Provider) preemptions(ctx context.Context, since time.Time) ([]cloudprovider.InterruptionEvent, error) {
	zones, err := p.zones(ctx)
	if err != nil {
		return nil, err
	}
	filter := `operationType = "compute.instances.preempted"`
	var out []cloudprovider.InterruptionEvent
	for _, zone := range zones {
		it := p.opts.Clients.ZoneOperations.List(ctx, &computepb.ListZoneOperationsRequest{Project: p.opts.Project, Zone: zone, Filter: &filter})
		for {
			op, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				return out, fmt.Errorf("listing operations in %s: %w", zone, err)
			}
			at, err := time.Parse(time.RFC3339Nano, op.GetInsertTime())
			if err != nil || at.Before(since) || op.GetOperationType() != "compute.instances.preempted" {
				continue
			}
			name := lastSegment(op.GetTargetLink())
			out = append(out, cloudprovider.InterruptionEvent{
				ProviderID: ProviderID(p.opts.Project, zone, name), Kind: cloudprovider.InterruptionSpotReclaim,
				Deadline: at.Add(SpotNotice), Message: "Compute Engine preempted spot VM " + name,
			})
		}
	}
	return out, nil
}

// zones are the zones this cluster's VMs may be in: from the catalog, or
// the built-in one before the first listing.
func (p *Provider) zones(ctx context.Context) ([]string, error) {
	p.refresh(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	set := map[string]bool{}
	for _, s := range p.shapes {
		for _, z := range s.Zones {
			set[z] = true
		}
	}
	if static := p.static.Catalog(); len(set) == 0 && static != nil {
		for _, z := range static.Zones {
			set[z] = true
		}
	}
	out := make([]string, 0, len(set))
	for z := range set {
		out = append(out, z)
	}
	return out, nil
}

// maintenance reports this cluster's VMs with host maintenance announced.
func (p *Provider) maintenance(ctx context.Context) ([]cloudprovider.InterruptionEvent, error) {
	insts, err := p.listInstances(ctx, map[string]string{LabelCluster: p.labelValue})
	if err != nil {
		return nil, fmt.Errorf("listing instances for maintenance: %w", err)
	}
	var out []cloudprovider.InterruptionEvent
	for _, inst := range insts {
		um := inst.GetResourceStatus().GetUpcomingMaintenance()
		if um == nil || um.GetWindowStartTime() == "" {
			continue
		}
		start, err := time.Parse(time.RFC3339Nano, um.GetWindowStartTime())
		if err != nil {
			continue
		}
		out = append(out, cloudprovider.InterruptionEvent{
			ProviderID: ProviderID(p.opts.Project, lastSegment(inst.GetZone()), inst.GetName()),
			Kind:       cloudprovider.InterruptionScheduledMaintenance, Deadline: start,
			Message: fmt.Sprintf("host maintenance (%s) announced for %s, window starts %s", um.GetType(), inst.GetName(), um.GetWindowStartTime()),
		})
	}
	return out, nil
}

// shutdowns reports this cluster's Nodes whose kubelet said it is shutting
// down (GKE's graceful node shutdown on preemption or host events).
func (p *Provider) shutdowns(ctx context.Context) ([]cloudprovider.InterruptionEvent, error) {
	if p.opts.Kube == nil {
		return nil, nil
	}
	nodes := &corev1.NodeList{}
	if err := p.opts.Kube.List(ctx, nodes); err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	var out []cloudprovider.InterruptionEvent
	for _, n := range nodes.Items {
		if !strings.HasPrefix(n.Spec.ProviderID, providerIDPrefix+p.opts.Project+"/") || n.Labels[v1.LabelNodePool] == "" {
			continue
		}
		for _, c := range n.Status.Conditions {
			if c.Type != corev1.NodeReady || c.Status == corev1.ConditionTrue || !strings.Contains(c.Message, shuttingDown) {
				continue
			}
			kind := cloudprovider.InterruptionInstanceStopped
			if n.Labels[v1.LabelCapacityType] == v1.CapacityTypeSpot {
				kind = cloudprovider.InterruptionSpotReclaim
			}
			out = append(out, cloudprovider.InterruptionEvent{
				ProviderID: n.Spec.ProviderID, Kind: kind, Deadline: c.LastTransitionTime.Add(SpotNotice),
				Message: "node " + n.Name + " is shutting down: " + c.Message,
			})
		}
	}
	return out, nil
}
