// Package solver decides where pending pods go: onto existing capacity first,
// then onto the cheapest new machines that satisfy every constraint. It is
// pure: no Kubernetes client, no cloud, no clock. Provisioning and
// consolidation both call Solve, so they can never disagree.
package solver

import (
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// Snapshot is everything a decision depends on, frozen.
type Snapshot struct {
	// Pods are the pods to place.
	Pods []*corev1.Pod
	// Nodes are existing and in-flight nodes that pods may be placed on.
	Nodes []*Node
	// Closed are nodes pods may not be placed on (cordoned, being deleted
	// or disrupted) with the pods still running there: a gang's members
	// among them count towards its size and keep it in their zone.
	Closed []*Node
	// NodePools are the pools new nodes may come from, with what each may buy.
	NodePools []*NodePool
	// DaemonSetPods are the pod templates of DaemonSets: each new node runs
	// those it tolerates and matches, so their requests are added to its overhead.
	DaemonSetPods []*corev1.Pod
	// Gangs recognises pod groups placed all-or-nothing; the zero value
	// knows Stowage's and Kueue's declarations.
	Gangs scheduling.Gangs
	// DRA holds the DeviceClasses, claims, claim templates and
	// ResourceSlices pods' ResourceClaims are planned against; nil when the
	// cluster serves no DRA API.
	DRA *scheduling.DRA
	// Volumes resolves the CSI driver of each claim pods mount, so pods
	// count against the attach limits of the machines and nodes they go on
	// (see withAttachLimits); nil plans without attach limits.
	Volumes *scheduling.Volumes
	// Types, when set, shares how each pool buys each instance type with
	// other solves of the same pools, catalog and DaemonSet pods (see
	// TypeCache); nil builds it for this solve alone.
	Types *TypeCache
}

// Node is a node that exists or is being launched.
type Node struct {
	Name string
	// Labels include zone, capacity type, instance type, hostname and nodepool.
	Labels      map[string]string
	Taints      []corev1.Taint
	Allocatable corev1.ResourceList
	// Pods already bound or planned onto the node; they count for requests,
	// affinity and topology spread.
	Pods []*corev1.Pod
	// PricePerHour of the node, for consolidation what-ifs.
	PricePerHour float64
	// InFlight is true for a NodeClaim whose Node has not registered yet.
	InFlight bool
}

// ResourceNodes in a NodePool's limits caps its number of machines; Usage
// counts its existing and in-flight machines under the same name.
const ResourceNodes corev1.ResourceName = "nodes"

// NodePool is a pool with the instance types it may buy.
type NodePool struct {
	*v1.NodePool
	InstanceTypes []*cloudprovider.InstanceType
	// Usage is the capacity the pool's existing and in-flight nodes already
	// hold; new nodes may only add up to Limits minus Usage.
	Usage corev1.ResourceList
}

// Plan is the solver's answer.
type Plan struct {
	// Bindings place pods on existing or in-flight nodes.
	Bindings []Binding
	// NewNodes are the machines to buy.
	NewNodes []*NewNode
	// Unschedulable are the pods no node can hold, each with why.
	Unschedulable []Unschedulable
	// CostPerHour is the summed price of NewNodes' first choices.
	CostPerHour float64
	// LowerBoundPerHour is a provable lower bound on the cost of any plan that
	// places the same pods (see lowerBound for the proof).
	LowerBoundPerHour float64
}

// Binding places a pod on a node that exists or is in flight.
type Binding struct {
	Pod      *corev1.Pod
	NodeName string
}

// NewNode is one machine to buy.
type NewNode struct {
	// NodePool is the name of the pool the node comes from.
	NodePool string
	// Choices are the offerings the machine may be launched as, cheapest
	// first; the first is the plan's choice, the rest are fallbacks for
	// launch-time capacity errors. Every choice holds all of Pods.
	Choices []Choice
	// Pods planned onto the node.
	Pods []*corev1.Pod
	// Requests are the summed requests of Pods plus DaemonSet overhead.
	Requests corev1.ResourceList
	// Requirements the node must meet, for the NodeClaim: the pool's
	// requirements narrowed by the pods' node selectors and affinities.
	Requirements []v1.NodeSelectorRequirementWithMinValues
	// Gang is the namespace/name of the gang whose pods the node was bought
	// for ("" for none): its machines are launched and released together.
	Gang string
	// PlacementGroup, when set, asks the cloud to launch the node into one
	// placement domain with the gang's other nodes (see placement.go).
	PlacementGroup string
}

// Choice is one offering of one instance type.
type Choice struct {
	InstanceType *cloudprovider.InstanceType
	Offering     cloudprovider.Offering
}

// PricePerHour is the price of the plan's first choice.
func (n *NewNode) PricePerHour() float64 {
	if len(n.Choices) == 0 {
		return 0
	}
	return n.Choices[0].Offering.PricePerHour
}

// Unschedulable is a pod that cannot be placed, and why.
type Unschedulable struct {
	Pod    *corev1.Pod
	Reason string
}
