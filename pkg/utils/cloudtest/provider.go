// Package cloudtest is an in-memory CloudProvider for unit tests of the
// controllers: it launches idempotently by client token, fails chosen
// offerings with insufficient capacity, injects errors and counts calls.
package cloudtest

import (
	"context"
	"fmt"
	"sort"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

var _ cloudprovider.CloudProvider = (*Provider)(nil)

// Provider is a fake cloud held in memory. Its zero value is not usable; call New.
type Provider struct {
	clock clock.PassiveClock

	mu         sync.Mutex
	next       int
	instances  map[string]*v1.NodeClaim // by providerID
	byToken    map[string]string        // client token -> providerID
	noCapacity map[cloudprovider.OfferingID]bool
	firstOnly  bool
	capacity   map[string]corev1.ResourceList // by instance type
	errs       map[string]error               // by method name
	calls      map[string]int
	deleted    []string
	types      []*cloudprovider.InstanceType
}

// New returns an empty cloud whose instances are stamped with clk's time.
func New(clk clock.PassiveClock) *Provider {
	return &Provider{
		clock:      clk,
		instances:  map[string]*v1.NodeClaim{},
		byToken:    map[string]string{},
		noCapacity: map[cloudprovider.OfferingID]bool{},
		capacity:   map[string]corev1.ResourceList{},
		errs:       map[string]error{},
		calls:      map[string]int{},
	}
}

// SetNoCapacity makes launches in these offerings fail with insufficient capacity.
func (p *Provider) SetNoCapacity(ids ...cloudprovider.OfferingID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		p.noCapacity[id] = true
	}
}

// TryFirstOfferingOnly makes Create give up after the first offering without
// capacity instead of walking the list, like a provider that launches one
// offering per call.
func (p *Provider) TryFirstOfferingOnly() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.firstOnly = true
}

// SetCapacity sets the capacity instances of an instance type report.
func (p *Provider) SetCapacity(instanceType string, capacity corev1.ResourceList) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.capacity[instanceType] = capacity
}

// SetError makes every call of method ("Create", "Delete", "Get", "List") fail with err; nil clears it.
func (p *Provider) SetError(method string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs[method] = err
}

// Calls is how often method was called.
func (p *Provider) Calls(method string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls[method]
}

// Deleted lists the providerIDs Delete terminated, in order.
func (p *Provider) Deleted() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.deleted...)
}

// AddInstance puts a machine into the cloud directly, e.g. one leaked by a
// crash; it returns the machine's providerID.
func (p *Provider) AddInstance(claimName string, created metav1.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := p.newIDLocked()
	p.instances[id] = &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: claimName, CreationTimestamp: created,
			Labels: map[string]string{v1.LabelNodeClaim: claimName}},
		Status: v1.NodeClaimStatus{ProviderID: id},
	}
	return id
}

// Name implements cloudprovider.CloudProvider.
func (p *Provider) Name() string { return "cloudtest" }

// InstanceTypes implements cloudprovider.CloudProvider; the controllers under test do not need any.
func (p *Provider) InstanceTypes(context.Context, *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.types, p.errs["InstanceTypes"]
}

// SetInstanceTypes sets what InstanceTypes returns for every pool.
func (p *Provider) SetInstanceTypes(types ...*cloudprovider.InstanceType) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.types = types
}

// Create launches the first offering with capacity, or returns the machine an
// earlier Create for the same claim made.
func (p *Provider) Create(_ context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls["Create"]++
	if err := p.errs["Create"]; err != nil {
		return nil, err
	}
	token := cloudprovider.ClientToken(claim.Name, string(claim.UID))
	if id, ok := p.byToken[token]; ok {
		if inst, ok := p.instances[id]; ok {
			return inst.DeepCopy(), nil
		}
	}
	var failed []cloudprovider.OfferingID
	for i, choice := range claim.Spec.Offerings {
		if p.firstOnly && i > 0 {
			break
		}
		id := cloudprovider.ChoiceID(choice)
		if p.noCapacity[id] {
			failed = append(failed, id)
			if p.firstOnly {
				break
			}
			continue
		}
		providerID := p.newIDLocked()
		capacity := p.capacity[choice.InstanceType]
		if capacity == nil {
			capacity = corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("4"),
				corev1.ResourceMemory: resource.MustParse("16Gi"),
				corev1.ResourcePods:   resource.MustParse("110"),
			}
		}
		inst := &v1.NodeClaim{
			ObjectMeta: metav1.ObjectMeta{
				Name:              claim.Name,
				CreationTimestamp: metav1.NewTime(p.clock.Now()),
				Labels:            map[string]string{v1.LabelNodeClaim: claim.Name},
			},
			Spec: *claim.Spec.DeepCopy(),
			Status: v1.NodeClaimStatus{
				ProviderID:   providerID,
				InstanceType: choice.InstanceType,
				Zone:         choice.Zone,
				CapacityType: choice.CapacityType,
				PricePerHour: choice.PricePerHour,
				ImageID:      "image-1",
				Capacity:     capacity.DeepCopy(),
				Allocatable:  capacity.DeepCopy(),
			},
		}
		for _, id := range failed {
			inst.Status.UnavailableOfferings = append(inst.Status.UnavailableOfferings, id.String())
		}
		p.instances[providerID] = inst
		p.byToken[token] = providerID
		return inst.DeepCopy(), nil
	}
	return nil, cloudprovider.NewInsufficientCapacityError(fmt.Errorf("no capacity"), failed...)
}

// Delete terminates the claim's machine.
func (p *Provider) Delete(_ context.Context, claim *v1.NodeClaim) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls["Delete"]++
	if err := p.errs["Delete"]; err != nil {
		return err
	}
	id := claim.Status.ProviderID
	if _, ok := p.instances[id]; !ok {
		return cloudprovider.NewNotFoundError(id)
	}
	delete(p.instances, id)
	p.deleted = append(p.deleted, id)
	return nil
}

// Get returns the machine with providerID.
func (p *Provider) Get(_ context.Context, providerID string) (*v1.NodeClaim, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls["Get"]++
	if err := p.errs["Get"]; err != nil {
		return nil, err
	}
	inst, ok := p.instances[providerID]
	if !ok {
		return nil, cloudprovider.NewNotFoundError(providerID)
	}
	return inst.DeepCopy(), nil
}

// List returns every machine, ordered by providerID.
func (p *Provider) List(context.Context) ([]*v1.NodeClaim, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls["List"]++
	if err := p.errs["List"]; err != nil {
		return nil, err
	}
	out := make([]*v1.NodeClaim, 0, len(p.instances))
	for _, inst := range p.instances {
		out = append(out, inst.DeepCopy())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Status.ProviderID < out[j].Status.ProviderID })
	return out, nil
}

func (p *Provider) newIDLocked() string {
	p.next++
	return fmt.Sprintf("cloudtest://i-%04d", p.next)
}
