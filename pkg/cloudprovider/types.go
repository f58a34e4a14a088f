// Package cloudprovider is the one interface every cloud (AWS, GCP, Azure and
// the fake) implements, and the instance-type model the solver plans with.
// The core never imports a provider; cmd/ wires them together.
package cloudprovider

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// CloudProvider launches and deletes machines for NodeClaims.
type CloudProvider interface {
	// Name is a short identifier such as "aws" or "fake".
	Name() string
	// InstanceTypes lists what the pool may buy, with current offerings and
	// prices. Offerings known to be out of capacity are marked unavailable.
	InstanceTypes(ctx context.Context, pool *v1.NodePool) ([]*InstanceType, error)
	// Create launches a machine for the claim, trying spec.offerings in order.
	// It must be idempotent: a retried Create for the same claim (same name and
	// UID) returns the machine the first call made instead of launching another.
	// It returns a copy of the claim with status (providerID, instance type,
	// zone, capacity type, price, capacity, allocatable) filled in.
	// When every offering is out of capacity it returns an InsufficientCapacityError.
	// Offerings it walked past for lack of capacity before launching are listed
	// in the returned status.unavailableOfferings (OfferingID strings), so the
	// claim records them.
	Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error)
	// Delete terminates the claim's machine. A machine that is already gone
	// yields a NotFoundError.
	Delete(ctx context.Context, claim *v1.NodeClaim) error
	// Get returns the machine with the given providerID as a NodeClaim.
	Get(ctx context.Context, providerID string) (*v1.NodeClaim, error)
	// List returns every machine this cluster's Stowage launched, for garbage
	// collection. Each has the LabelNodeClaim label naming its claim.
	List(ctx context.Context) ([]*v1.NodeClaim, error)
}

// InstanceType is one machine shape a cloud sells, with where and how it can
// be bought (its offerings).
type InstanceType struct {
	// Name is the cloud's name, e.g. "p5.48xlarge".
	Name string
	// Labels are the single-valued node labels every machine of this type has:
	// instance type, arch, os, family, cpu, memory and the GPU labels. Zone and
	// capacity type are per offering.
	Labels map[string]string
	// Capacity is the machine's total resources, including GPUs as
	// nvidia.com/gpu (or amd.com/gpu, aws.amazon.com/neuron) and "pods".
	Capacity corev1.ResourceList
	// Overhead is what the kubelet, system daemons and eviction threshold reserve.
	Overhead Overhead
	// GPU describes the accelerators, nil for CPU-only types.
	GPU *GPU
	// Offerings are the (zone, capacity type) pairs this type is sold in.
	Offerings []Offering
	// Placement is true when machines of this type can share one placement
	// domain (an AWS cluster placement group, a GCP compact placement policy,
	// an Azure proximity placement group), so the solver may ask for one for a
	// gang. Only set by providers whose Capabilities include Placement.
	Placement bool
}

// attachLimitPrefix is the prefix the kubelet advertised CSI attach limits
// under before CSINode took over.
const attachLimitPrefix = "attachable-volumes-csi-"

// AttachLimitResource names the capacity that says how many volumes of a
// CSI driver a machine can attach besides its boot disk. Providers put it in
// InstanceType.Capacity for their block-storage driver where they know the
// limit; the solver counts each pod's claims of that driver against it.
func AttachLimitResource(driver string) corev1.ResourceName {
	return corev1.ResourceName(attachLimitPrefix + driver)
}

// IsAttachLimitResource reports whether name is an AttachLimitResource.
func IsAttachLimitResource(name corev1.ResourceName) bool {
	return strings.HasPrefix(string(name), attachLimitPrefix)
}

// GPU describes an instance type's accelerators.
type GPU struct {
	Manufacturer string // "nvidia", "amd", "aws"
	Name         string // model, lower case: "h100", "a10g", "l4"
	Count        int
	MemoryMiB    int64 // per GPU
	// MIGProfiles maps each MIG profile this GPU supports (e.g. "1g.10gb") to
	// how many instances of it one GPU splits into. Empty when not MIG-capable.
	MIGProfiles map[string]int
	// ProductName, Architecture and ComputeCapability are what the vendor's
	// DRA driver publishes about each device (e.g. "NVIDIA L40S", "Ada
	// Lovelace", "8.9"), so claims' CEL selectors can be evaluated before a
	// machine exists. Empty when unknown.
	ProductName       string
	Architecture      string
	ComputeCapability string
}

// Overhead is the capacity a node keeps for itself.
type Overhead struct {
	KubeReserved      corev1.ResourceList
	SystemReserved    corev1.ResourceList
	EvictionThreshold corev1.ResourceList
}

// Total sums the overhead.
func (o Overhead) Total() corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, l := range []corev1.ResourceList{o.KubeReserved, o.SystemReserved, o.EvictionThreshold} {
		for k, v := range l {
			q := out[k]
			q.Add(v)
			out[k] = q
		}
	}
	return out
}

// Allocatable is capacity less overhead, as the kubelet will report it.
func (it *InstanceType) Allocatable() corev1.ResourceList {
	out := corev1.ResourceList{}
	overhead := it.Overhead.Total()
	for k, v := range it.Capacity {
		q := v.DeepCopy()
		if o, ok := overhead[k]; ok {
			q.Sub(o)
			if q.Sign() < 0 {
				q.Set(0)
			}
		}
		out[k] = q
	}
	return out
}

// Offering is one way to buy an instance type.
type Offering struct {
	Zone         string
	CapacityType string // v1.CapacityTypeReserved, Spot or OnDemand
	// PricePerHour in US dollars. Reserved offerings carry a near-zero marginal
	// price: they are already paid for.
	PricePerHour float64
	// Available is false when the cloud recently reported no capacity here.
	Available bool
	// ReservationID and ReservedCount describe a capacity reservation: its ID
	// (targeted at launch) and how many machines it can still hold.
	ReservationID string
	ReservedCount int
	// Commitment names the commitment (Savings Plan, Reserved Instances,
	// committed use) that pays for this on-demand offering while it lasts
	// (see pricing.ApplyCommitments). Each machine bought as it spends
	// CommitmentCost of the commitment's CommitmentLeft, shared by every
	// offering of that commitment; the machine launches as ordinary
	// on-demand capacity, and the bill applies the commitment.
	Commitment     string
	CommitmentCost float64
	CommitmentLeft float64
}

// ID identifies an offering in errors, logs and the unavailable-offerings cache.
func (o Offering) ID(instanceType string) OfferingID {
	return OfferingID{InstanceType: instanceType, Zone: o.Zone, CapacityType: o.CapacityType, ReservationID: o.ReservationID}
}

// OfferingID names one capacity pool. Each capacity reservation is a pool
// of its own: one full reservation says nothing of another of the same type
// and zone.
type OfferingID struct {
	InstanceType string
	Zone         string
	CapacityType string
	// ReservationID is set for reserved capacity only.
	ReservationID string
}

// String is "type/zone/capacity-type", with "/reservation" for reserved
// capacity.
func (o OfferingID) String() string {
	if o.ReservationID != "" {
		return fmt.Sprintf("%s/%s/%s/%s", o.InstanceType, o.Zone, o.CapacityType, o.ReservationID)
	}
	return fmt.Sprintf("%s/%s/%s", o.InstanceType, o.Zone, o.CapacityType)
}

// ChoiceID is the OfferingID of a NodeClaim's offering choice.
func ChoiceID(c v1.OfferingChoice) OfferingID {
	return OfferingID{InstanceType: c.InstanceType, Zone: c.Zone, CapacityType: c.CapacityType, ReservationID: c.ReservationID}
}
