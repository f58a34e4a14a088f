package disruption

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pricing"
)

// DefaultGPUMinNodeLifetime is how long a GPU node lives at least before
// voluntary disruption when its pool sets no minNodeLifetime: GPU nodes take
// minutes to become useful (drivers, images of tens of GiB), so replacing a
// young one rarely pays back.
const DefaultGPUMinNodeLifetime = 10 * time.Minute

// Candidate is a Stowage node that a method may disrupt.
type Candidate struct {
	Claim *v1.NodeClaim
	Node  *corev1.Node
	Pool  *v1.NodePool
	// Pods must find another node when this one goes: every pod bound to it
	// except DaemonSet, mirror and finished pods.
	Pods []*corev1.Pod
	// PricePerHour is what the node costs now.
	PricePerHour float64
	// Age is the time since the claim was created.
	Age time.Duration
	// Blocked says why voluntary disruption is not allowed right now; empty
	// when it is. Forceful expiry and repair ignore it.
	Blocked string
	// Ready is the node's Ready condition.
	Ready bool
}

// podSet identifies the candidate's pods, to tell whether they changed
// between a decision and its validation.
func (c *Candidate) podSet() string {
	keys := make([]string, 0, len(c.Pods))
	for _, p := range c.Pods {
		keys = append(keys, string(p.UID))
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

// Name is the candidate's NodeClaim name.
func (c *Candidate) Name() string { return c.Claim.Name }

// CapacityType is the node's capacity type label.
func (c *Candidate) CapacityType() string { return c.Node.Labels[v1.LabelCapacityType] }

// HasGPU reports whether the node has accelerators.
func (c *Candidate) HasGPU() bool {
	for _, r := range []corev1.ResourceName{v1.ResourceNvidiaGPU, v1.ResourceAMDGPU, v1.ResourceAWSNeuron} {
		if q, ok := c.Node.Status.Allocatable[r]; ok && !q.IsZero() {
			return true
		}
	}
	return c.Node.Labels[v1.LabelGPUCount] != ""
}

// Nominations reports whether pods are on their way to a claim or its node:
// the provisioner planned them there and the scheduler has not bound them yet.
type Nominations func(claim, node string) bool

// BuildCandidates returns every node of a Stowage NodeClaim that could be
// disrupted at all: launched, initialized, registered, neither being deleted
// nor already tainted for disruption, and with no pods nominated to it.
// nominated may be nil.
func BuildCandidates(st *ClusterState, nominated Nominations) []*Candidate {
	replacing := replacingSomething(st)
	var out []*Candidate
	for _, claim := range st.Claims {
		node := st.NodeOfClaim[claim.Name]
		pool := st.Pools[claim.Labels[v1.LabelNodePool]]
		switch {
		case node == nil, pool == nil, pool.DeletionTimestamp != nil:
			continue
		case claim.DeletionTimestamp != nil, node.DeletionTimestamp != nil, hasDisruptedTaint(node):
			continue
		case !conditions.IsTrue(claim.Status.Conditions, v1.ConditionInitialized):
			// In flight: its capacity is not proven yet.
			continue
		case conditions.IsTrue(claim.Status.Conditions, v1.ConditionInterrupted):
			// The interruption controller owns it.
			continue
		case nominated != nil && nominated(claim.Name, node.Name):
			// Bought or chosen for pods that have not arrived yet: it may look
			// empty only because the scheduler has not bound them.
			continue
		case replacing[claim.Annotations[AnnotationReplacementFor]]:
			// A replacement whose predecessor is still there (draining):
			// it looks empty until the moved pods arrive.
			continue
		}
		c := &Candidate{
			Claim:        claim,
			Node:         node,
			Pool:         pool,
			PricePerHour: claimPrice(claim),
			Age:          st.Now.Sub(claim.CreationTimestamp.Time),
			Ready:        nodeReady(node),
		}
		for _, p := range st.PodsByNode[node.Name] {
			if reschedulable(p) {
				c.Pods = append(c.Pods, p)
			}
		}
		c.Blocked = blocker(st, c)
		out = append(out, c)
	}
	return out
}

// replacingSomething is the set of replacement-for values whose replaced
// claims still exist, being deleted or not: the IDs of the disruption
// commands recorded on claims, and interruption's "interruption/<name>".
// It is read once per state: every what-if of the pass asks.
func replacingSomething(st *ClusterState) map[string]bool {
	st.replacingOnce.Do(func() {
		st.replacing = map[string]bool{}
		for _, claim := range st.Claims {
			for _, v := range ReplacedBy(claim) {
				st.replacing[v] = true
			}
		}
	})
	return st.replacing
}

// blocker returns why voluntary disruption of c is not allowed, or "".
func blocker(st *ClusterState, c *Candidate) string {
	if v1.DoNotDisrupt(c.Node.Annotations) {
		return fmt.Sprintf("node %s has %s", c.Node.Name, v1.AnnotationDoNotDisrupt)
	}
	if v1.DoNotDisrupt(c.Claim.Annotations) {
		return fmt.Sprintf("nodeclaim %s has %s", c.Claim.Name, v1.AnnotationDoNotDisrupt)
	}
	if by := c.Claim.Annotations[v1.AnnotationBookedBy]; by != "" {
		return fmt.Sprintf("nodeclaim %s is held for ProvisioningRequest %s", c.Claim.Name, by)
	}
	if lifetime := minNodeLifetime(c); c.Age < lifetime {
		// No age in the text: it is an event's note, sent again only when the text changes.
		return fmt.Sprintf("node is younger than its minimum lifetime %s until %s", lifetime,
			c.Claim.CreationTimestamp.Add(lifetime).UTC().Format(time.RFC3339))
	}
	// The drain waits for a do-not-disrupt DaemonSet pod too, so it blocks
	// as a pod that moves does.
	for _, p := range st.PodsByNode[c.Node.Name] {
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; !mirror && !reschedulable(p) && !scheduling.Finished(p) && v1.DoNotDisrupt(p.Annotations) {
			return fmt.Sprintf("pod %s/%s has %s", p.Namespace, p.Name, v1.AnnotationDoNotDisrupt)
		}
	}
	for _, p := range c.Pods {
		if v1.DoNotDisrupt(p.Annotations) {
			return fmt.Sprintf("pod %s/%s has %s", p.Namespace, p.Name, v1.AnnotationDoNotDisrupt)
		}
		if !c.Pool.Spec.Disruption.EvictRunningJobs && isRunningJobPod(p) {
			return fmt.Sprintf("pod %s/%s belongs to a running Job and nodepool %s does not set evictRunningJobs",
				p.Namespace, p.Name, c.Pool.Name)
		}
		if why := pdbBlocks(st.pdbsIn(p.Namespace), p); why != "" {
			return why
		}
	}
	return ""
}

// minNodeLifetime is the pool's minNodeLifetime, defaulting by node kind.
func minNodeLifetime(c *Candidate) time.Duration {
	if d := c.Pool.Spec.Disruption.MinNodeLifetime; d != nil {
		return d.Duration
	}
	if c.HasGPU() {
		return DefaultGPUMinNodeLifetime
	}
	return 0
}

func isRunningJobPod(p *corev1.Pod) bool {
	if scheduling.Finished(p) {
		return false
	}
	for _, o := range p.OwnerReferences {
		if o.Kind == "Job" && o.Controller != nil && *o.Controller {
			return true
		}
	}
	return false
}

// pdbBlocks returns why the Eviction API, which the drain goes through,
// would refuse to evict p now for its PodDisruptionBudgets ("" when it
// would not), deciding as the API server does: a pod not running yet or
// already terminating ignores them; a pod two or more select is refused
// whatever they allow, so its drain would wait until the claim's deadline;
// a pod that is not Ready may go when its budget's unhealthyPodEvictionPolicy
// is AlwaysAllow, or when the application is healthy enough without it.
func pdbBlocks(pdbs []*policyv1.PodDisruptionBudget, p *corev1.Pod) string {
	if p.Status.Phase == corev1.PodPending || p.DeletionTimestamp != nil {
		return ""
	}
	var selecting []*policyv1.PodDisruptionBudget
	for _, pdb := range pdbs {
		if pdb.Namespace != p.Namespace {
			continue
		}
		// An invalid or missing selector selects nothing, an empty one
		// every pod of the namespace, as the Eviction API reads them.
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err == nil && sel.Matches(labels.Set(p.Labels)) {
			selecting = append(selecting, pdb)
		}
	}
	switch {
	case len(selecting) == 0:
		return ""
	case len(selecting) > 1:
		return fmt.Sprintf("pod %s/%s is selected by poddisruptionbudgets %s/%s and %s/%s, and the Eviction API refuses a pod under more than one",
			p.Namespace, p.Name, selecting[0].Namespace, selecting[0].Name, selecting[1].Namespace, selecting[1].Name)
	}
	pdb := selecting[0]
	if pdb.Status.DisruptionsAllowed > 0 {
		return ""
	}
	if !podReady(p) {
		if pdb.Spec.UnhealthyPodEvictionPolicy != nil && *pdb.Spec.UnhealthyPodEvictionPolicy == policyv1.AlwaysAllow {
			return ""
		}
		if pdb.Status.DesiredHealthy > 0 && pdb.Status.CurrentHealthy >= pdb.Status.DesiredHealthy {
			return ""
		}
	}
	return fmt.Sprintf("poddisruptionbudget %s/%s allows no disruption of pod %s", pdb.Namespace, pdb.Name, p.Name)
}

// podReady reports whether the pod's Ready condition is True: what a
// PodDisruptionBudget counts as healthy.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Reprice sets each spot or on-demand candidate's price to what its machine
// costs the bill now, from the pass's instance types: the price recorded at
// launch goes stale, and a spot node whose price fell was "replaced" by an
// identical machine (a restart for nothing), while one whose price rose hid
// real savings. An on-demand machine a commitment covers now costs
// pricing.CoveredPricePerHour; one a commitment covered at launch but no
// longer does (it ended, or a pricier machine took its room) costs its
// offering again, else it would look free and never be consolidated.
// Reserved nodes keep their recorded price, as does a node whose offering
// the cloud no longer lists or whose pool's types cannot be read now.
func Reprice(ctx context.Context, st *ClusterState, cloud InstanceTyper, cands []*Candidate) {
	coverage, _ := cloud.(coverer)
	covered := map[string]map[string]bool{} // by pool; nil when unknown
	for _, c := range cands {
		claim := c.Claim
		ct := claim.Status.CapacityType
		if ct != v1.CapacityTypeSpot && ct != v1.CapacityTypeOnDemand || c.Pool == nil {
			continue
		}
		if ct == v1.CapacityTypeOnDemand && coverage != nil {
			byClaim, ok := covered[c.Pool.Name]
			if !ok {
				byClaim, _ = coverage.CoveredClaims(ctx, c.Pool)
				covered[c.Pool.Name] = byClaim
			}
			switch {
			case byClaim == nil && pricing.IsCovered(c.PricePerHour):
				continue // coverage unknown: keep the launch price
			case byClaim[claim.Name]:
				c.PricePerHour = pricing.CoveredPricePerHour
				continue
			case pricing.IsCovered(c.PricePerHour):
				c.PricePerHour = max(c.PricePerHour, pricing.ClaimListPrice(claim, claim.Status.InstanceType, claim.Status.Zone))
			}
		} else if pricing.IsCovered(c.PricePerHour) {
			continue
		}
		its, err := st.InstanceTypes(ctx, cloud, c.Pool)
		if err != nil {
			continue
		}
		for _, it := range its {
			if it.Name != claim.Status.InstanceType {
				continue
			}
			for _, o := range it.Offerings {
				if o.Zone == claim.Status.Zone && o.CapacityType == ct && o.Commitment == "" && o.ReservationID == "" {
					c.PricePerHour = o.PricePerHour
				}
			}
		}
	}
}

// coverer names the claims whose machines commitments cover now
// (commitments.Pricer).
type coverer interface {
	CoveredClaims(ctx context.Context, pool *v1.NodePool) (map[string]bool, error)
}

// claimPrice is the price the claim launched at, else its first choice's.
func claimPrice(claim *v1.NodeClaim) float64 {
	s := claim.Status.PricePerHour
	if s == "" && len(claim.Spec.Offerings) > 0 {
		s = claim.Spec.Offerings[0].PricePerHour
	}
	p, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	return p
}
