package gcp

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/internal/catalog"
)

const providerIDPrefix = "gce://"

// ErrInvalidProviderID is wrapped when a providerID is not gce://<project>/<zone>/<name>.
var ErrInvalidProviderID = errors.New("invalid gce providerID")

// ProviderID is the Node's spec.providerID of a VM, as GKE writes it.
func ProviderID(project, zone, name string) string {
	return providerIDPrefix + project + "/" + zone + "/" + name
}

// ParseProviderID returns the project, zone and name of gce://<project>/<zone>/<name>.
func ParseProviderID(id string) (project, zone, name string, err error) {
	parts := strings.Split(strings.TrimPrefix(id, providerIDPrefix), "/")
	if !strings.HasPrefix(id, providerIDPrefix) || len(parts) != 3 || parts[0] == "" || parts[1] == "" || parts[2] == "" {
		return "", "", "", fmt.Errorf("%w %q: want %s<project>/<zone>/<name>", ErrInvalidProviderID, id, providerIDPrefix)
	}
	return parts[0], parts[1], parts[2], nil
}

// stopped reports a VM that is stopped (TERMINATED, after a guest shutdown
// or a stop): no machine to Kubernetes, so Get reports it gone and its claim
// is replaced, but it still exists and bills its disks, so List and the
// lookups by name see it, to delete it and never to launch a second VM
// beside it.
func stopped(inst *computepb.Instance) bool {
	switch inst.GetStatus() {
	case "TERMINATED", "STOPPED":
		return true
	}
	return false
}

// Delete implements cloudprovider.CloudProvider. A claim without a
// providerID may still have a VM (launched, then the status write was lost):
// it is found by its name. A VM not labelled with this cluster is never
// deleted, whatever the claim says (a copied Node, a hand-edited status, a
// claim name another cluster also used): it is reported gone.
func (p *Provider) Delete(ctx context.Context, claim *v1.NodeClaim) error {
	var inst *computepb.Instance
	var err error
	if claim.Status.ProviderID != "" {
		project, zone, name, perr := ParseProviderID(claim.Status.ProviderID)
		if perr != nil {
			return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, perr)
		}
		if project != p.opts.Project {
			return cloudprovider.NewNotFoundError(claim.Status.ProviderID) // not this cluster's project
		}
		inst, err = p.opts.Clients.Instances.Get(ctx, &computepb.GetInstanceRequest{Project: project, Zone: zone, Instance: name})
		if isNotFound(err) {
			return cloudprovider.NewNotFoundError(claim.Status.ProviderID)
		}
	} else {
		inst, err = p.findInstance(ctx, InstanceName(claim.Name))
	}
	if err != nil {
		return fmt.Errorf("deleting nodeclaim %s: %w", claim.Name, err)
	}
	if inst == nil || inst.GetLabels()[LabelCluster] != p.labelValue {
		return cloudprovider.NewNotFoundError(cmp.Or(claim.Status.ProviderID, "nodeclaim "+claim.Name))
	}
	zone, name := lastSegment(inst.GetZone()), inst.GetName()
	op, err := p.opts.Clients.Instances.Delete(ctx, &computepb.DeleteInstanceRequest{Project: p.opts.Project, Zone: zone, Instance: name})
	if err == nil {
		err = wait(ctx, op)
	}
	if isNotFound(err) {
		return cloudprovider.NewNotFoundError(ProviderID(p.opts.Project, zone, name))
	}
	if err != nil {
		return fmt.Errorf("deleting instance %s for nodeclaim %s: %w", name, claim.Name, err)
	}
	return nil
}

// Get implements cloudprovider.CloudProvider.
func (p *Provider) Get(ctx context.Context, pid string) (*v1.NodeClaim, error) {
	project, zone, name, err := ParseProviderID(pid)
	if err != nil {
		return nil, err
	}
	inst, err := p.opts.Clients.Instances.Get(ctx, &computepb.GetInstanceRequest{Project: project, Zone: zone, Instance: name})
	if isNotFound(err) {
		return nil, cloudprovider.NewNotFoundError(pid)
	}
	if err != nil {
		return nil, fmt.Errorf("reading instance %s: %w", name, err)
	}
	if stopped(inst) {
		return nil, cloudprovider.NewNotFoundError(pid)
	}
	return p.claimFromInstance(inst, nil), nil
}

// List implements cloudprovider.CloudProvider: every VM labelled with this
// cluster's name, stopped ones too.
func (p *Provider) List(ctx context.Context) ([]*v1.NodeClaim, error) {
	insts, err := p.listInstances(ctx, map[string]string{LabelCluster: p.labelValue})
	if err != nil {
		return nil, fmt.Errorf("listing instances of cluster %s: %w", p.opts.ClusterName, err)
	}
	out := make([]*v1.NodeClaim, 0, len(insts))
	for _, inst := range insts {
		out = append(out, p.claimFromInstance(inst, nil))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Status.ProviderID < out[j].Status.ProviderID })
	return out, nil
}

// listInstances lists the region's VMs carrying every label.
func (p *Provider) listInstances(ctx context.Context, labels map[string]string) ([]*computepb.Instance, error) {
	var terms []string
	for k, v := range labels {
		terms = append(terms, fmt.Sprintf(`labels.%s = "%s"`, k, v))
	}
	return p.aggregated(ctx, strings.Join(terms, " AND "))
}

func (p *Provider) aggregated(ctx context.Context, filter string) ([]*computepb.Instance, error) {
	req := &computepb.AggregatedListInstancesRequest{Project: p.opts.Project}
	if filter != "" {
		req.Filter = &filter
	}
	var out []*computepb.Instance
	it := p.opts.Clients.Instances.AggregatedList(ctx, req)
	for {
		pair, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(strings.TrimPrefix(pair.Key, "zones/"), p.opts.Region+"-") {
			continue
		}
		out = append(out, pair.Value.GetInstances()...)
	}
}

// findInstance returns the VM named name in the region, stopped or not, or nil.
func (p *Provider) findInstance(ctx context.Context, name string) (*computepb.Instance, error) {
	insts, err := p.aggregated(ctx, fmt.Sprintf(`name = "%s"`, name))
	if err != nil {
		return nil, fmt.Errorf("looking for instance %s: %w", name, err)
	}
	for _, inst := range insts {
		if inst.GetName() == name {
			return inst, nil
		}
	}
	return nil, nil
}

func launchRecordOf(inst *computepb.Instance) launchRecord {
	var rec launchRecord
	for _, it := range inst.GetMetadata().GetItems() {
		if it.GetKey() == metaLaunch {
			_ = json.Unmarshal([]byte(it.GetValue()), &rec)
		}
	}
	return rec
}

func capacityTypeOf(inst *computepb.Instance) string {
	switch {
	case inst.GetScheduling().GetProvisioningModel() == "SPOT" || inst.GetScheduling().GetPreemptible():
		return v1.CapacityTypeSpot
	case inst.GetReservationAffinity().GetConsumeReservationType() == "SPECIFIC_RESERVATION":
		return v1.CapacityTypeReserved
	}
	return v1.CapacityTypeOnDemand
}

// claimFromInstance describes a VM as a NodeClaim. With a claim, that claim
// is copied and its status filled; otherwise one is made up from the VM's
// labels and launch record, as List and Get return.
func (p *Provider) claimFromInstance(inst *computepb.Instance, claim *v1.NodeClaim) *v1.NodeClaim {
	rec := launchRecordOf(inst)
	zone := lastSegment(inst.GetZone())
	instanceType := rec.InstanceType
	if instanceType == "" {
		instanceType = lastSegment(inst.GetMachineType())
	}
	var out *v1.NodeClaim
	if claim != nil {
		out = claim.DeepCopy()
	} else {
		name := rec.NodeClaim
		if name == "" {
			name = inst.GetLabels()[LabelNodeClaim]
		}
		out = &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodeClaim: name}}}
		if np := inst.GetLabels()[LabelNodePool]; np != "" {
			out.Labels[v1.LabelNodePool] = np
		}
		if t, err := time.Parse(time.RFC3339Nano, inst.GetCreationTimestamp()); err == nil {
			out.CreationTimestamp = metav1.NewTime(t)
		}
	}
	out.Status.ProviderID = ProviderID(p.opts.Project, zone, inst.GetName())
	out.Status.InstanceType = instanceType
	out.Status.Zone = zone
	out.Status.CapacityType = capacityTypeOf(inst)
	out.Status.ImageID = rec.Image
	out.Status.PricePerHour = catalog.PlannedPrice(claim, instanceType, zone, out.Status.CapacityType)
	if out.Status.PricePerHour == "" {
		if price, ok := p.price(instanceType, zone, out.Status.CapacityType); ok {
			out.Status.PricePerHour = v1.FormatPrice(price)
		}
	}
	catalog.FillCapacity(out, instanceType, p.lookupType(instanceType))
	return out
}

// lookupType finds a type in the live catalog, else the built-in one.
func (p *Provider) lookupType(name string) *cloudprovider.InstanceType {
	p.mu.Lock()
	defer p.mu.Unlock()
	return catalog.Find(name, p.types, p.static.Catalog())
}

// price is the current hourly price of one offering, as InstanceTypes offers it.
func (p *Provider) price(instanceType, zone, capacityType string) (float64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ct := capacityType
	if ct == v1.CapacityTypeReserved {
		ct = v1.CapacityTypeOnDemand
	}
	var price float64
	var ok bool
	if s, found := p.shapes[instanceType]; found {
		price, _, ok = p.offeringPriceLocked(s, zone, ct)
	} else {
		price, ok = p.static.Price(cloudprovider.OfferingID{InstanceType: instanceType, Zone: zone, CapacityType: ct})
	}
	if ok && capacityType == v1.CapacityTypeReserved {
		price /= reservedPriceDivisor
	}
	return price, ok
}

// Machine is what the kubelet certificate approver checks a CSR against:
// a live VM of this cluster and its addresses.
type Machine struct {
	Name      string
	Addresses []string // internal and external IPs
}

// OwnMachine returns the running (not stopped) VM named name if Stowage
// launched it for this cluster, else nil.
func (p *Provider) OwnMachine(ctx context.Context, name string) (*Machine, error) {
	inst, err := p.findInstance(ctx, name)
	if err != nil || inst == nil || stopped(inst) || inst.GetLabels()[LabelCluster] != p.labelValue || launchRecordOf(inst).NodeClaim == "" {
		return nil, err
	}
	m := &Machine{Name: inst.GetName()}
	for _, ni := range inst.GetNetworkInterfaces() {
		if ip := ni.GetNetworkIP(); ip != "" {
			m.Addresses = append(m.Addresses, ip)
		}
		for _, ac := range ni.GetAccessConfigs() {
			if ip := ac.GetNatIP(); ip != "" {
				m.Addresses = append(m.Addresses, ip)
			}
		}
	}
	return m, nil
}
