// Package simulate is the `stowage simulate` use case: it turns manifests and
// a price catalog into a solver snapshot, solves it, and reports what would be
// bought, what it costs, and how that compares with the naive one-node-per-pod
// habit and with the solver's provable lower bound.
package simulate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/manifest"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pricing"
)

// SolveFunc plans a snapshot; solver.Solve is the implementation. It is
// injected so this package can be tested without the real solver and so
// benchmarks can pass solver options.
type SolveFunc func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error)

// DefaultNodePoolName names the pool simulate uses when the manifests have none.
const DefaultNodePoolName = "default"

// ReservedPricePerHour is the marginal price of a simulated reservation:
// already paid for, but not free, so the solver still prefers fewer machines.
const ReservedPricePerHour = 0.0001

// Input is what one simulation runs on.
type Input struct {
	Manifests *manifest.Set
	// Catalog is modified (reservations are added): pass a fresh copy.
	Catalog *pricing.Catalog
	// Now decides which commitments have ended; the zero time counts all.
	Now time.Time
	// GangSources opts workload kinds into gang planning, as the
	// controller's --gang-sources does.
	GangSources map[scheduling.GangSource]bool
}

// Options configure Run.
type Options struct {
	Solve SolveFunc
	// Clock times the solve; defaults to the real clock.
	Clock clock.PassiveClock
}

// ErrNoPods is returned when the manifests contain nothing to place.
var ErrNoPods = errors.New("no pods to place: the manifests hold no Pods, Deployments, ReplicaSets, StatefulSets, Jobs or ProvisioningRequests")

// noPods says what each file held, so an empty or mistaken file is named.
func noPods(set *manifest.Set) error {
	if set == nil || len(set.Files) == 0 {
		return ErrNoPods
	}
	parts := make([]string, 0, len(set.Files))
	for _, f := range set.Files {
		switch f.Objects {
		case 0:
			parts = append(parts, f.Name+" is empty")
		case 1:
			parts = append(parts, f.Name+" holds 1 object but no pods")
		default:
			parts = append(parts, fmt.Sprintf("%s holds %d objects but no pods", f.Name, f.Objects))
		}
	}
	return fmt.Errorf("%w (%s)", ErrNoPods, strings.Join(parts, "; "))
}

// Run simulates provisioning for in.
func Run(ctx context.Context, in Input, opts Options) (*Report, error) {
	if opts.Solve == nil {
		return nil, errors.New("simulate: no solver configured")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if in.Manifests == nil || len(in.Manifests.Pods)+len(in.Manifests.ProvisioningRequests) == 0 {
		return nil, noPods(in.Manifests)
	}
	snap, err := BuildSnapshot(in)
	if err != nil {
		return nil, err
	}
	log.FromContext(ctx).V(1).Info("solving", "pods", len(snap.Pods), "nodePools", len(snap.NodePools), "daemonSets", len(snap.DaemonSetPods))
	start := opts.Clock.Now()
	plan, err := opts.Solve(ctx, snap)
	if err != nil {
		return nil, fmt.Errorf("solving %d pods: %w", len(snap.Pods), err)
	}
	elapsed := opts.Clock.Since(start)
	r := newReport(plan, elapsed)
	var excluded []*corev1.Pod
	r.NaiveCostPerHour, excluded = NaiveCost(snap, in.Catalog.InstanceTypes)
	for _, p := range excluded {
		r.NaiveExcluded = append(r.NaiveExcluded, podName(p))
	}
	r.Warnings = in.Manifests.Warnings
	r.Commitments = commitmentReports(in.Manifests.Commitments, plan)
	return r, nil
}

// BuildSnapshot applies reservations to the catalog and gives every pool
// (or the default pool) the instance types and offerings it may buy.
func BuildSnapshot(in Input) (*solver.Snapshot, error) {
	if err := AddReservations(in.Catalog, in.Manifests.Reservations); err != nil {
		return nil, err
	}
	pools := in.Manifests.NodePools
	if len(pools) == 0 {
		pools = []*v1.NodePool{DefaultNodePool(len(in.Manifests.Reservations) > 0)}
	}
	requested, err := requestPods(in.Manifests)
	if err != nil {
		return nil, err
	}
	confined, vols := volumeTopology(in.Manifests)
	pods := append(confined, requested...)
	snap := &solver.Snapshot{Pods: pods, DaemonSetPods: in.Manifests.DaemonSetPods, Volumes: vols,
		DRA:   devices(in.Manifests, pods),
		Gangs: scheduling.Gangs{Sources: in.GangSources, Sizes: manifestSizes{in.Manifests}}}
	// Commitments price the pools' on-demand offerings at their marginal
	// cost to the bill; the catalog itself keeps list prices for the naive
	// baseline. Nothing runs yet, so every commitment is unused.
	priced := in.Catalog.InstanceTypes
	if len(in.Manifests.Commitments) > 0 {
		cs := make([]v1.Commitment, len(in.Manifests.Commitments))
		for i, c := range in.Manifests.Commitments {
			cs[i] = *c
		}
		priced = pricing.ApplyCommitments(priced, cs, nil, in.Now)
	}
	for _, np := range pools {
		types := FilterInstanceTypes(np, priced, false)
		snap.NodePools = append(snap.NodePools, &solver.NodePool{NodePool: np, InstanceTypes: types, Usage: corev1.ResourceList{}})
	}
	return snap, nil
}

// DefaultNodePool may buy any amd64 instance type as spot or on-demand, and
// reserved capacity when there are reservations. It stays on amd64 because
// most images (CUDA ones above all) are built for it alone; a pool that
// wants Graviton or other arm64 machines says so. It also skips fractional
// GPUs (a slice of a GPU advertised as one device): a pod asking for
// nvidia.com/gpu: 1 expects a whole one unless its pool says otherwise.
func DefaultNodePool(reserved bool) *v1.NodePool {
	capacityTypes := []string{v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}
	if reserved {
		capacityTypes = append([]string{v1.CapacityTypeReserved}, capacityTypes...)
	}
	np := &v1.NodePool{}
	np.APIVersion = v1.SchemeGroupVersion.String()
	np.Kind = "NodePool"
	np.Name = DefaultNodePoolName
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{{
		Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: capacityTypes,
	}, {
		Key: v1.LabelArch, Operator: corev1.NodeSelectorOpIn, Values: []string{"amd64"},
	}, {
		Key: v1.LabelGPUFractional, Operator: corev1.NodeSelectorOpDoesNotExist,
	}}
	return np
}

// AddReservations adds a reserved offering per reservation to c's instance types.
func AddReservations(c *pricing.Catalog, rs []manifest.Reservation) error {
	zones := map[string]bool{}
	for _, z := range c.Zones {
		zones[z] = true
	}
	for _, r := range rs {
		it, ok := pricing.Lookup(c, r.InstanceType)
		if !ok {
			return fmt.Errorf("%s: instance type %q is not in the %s/%s catalog", r.Source, r.InstanceType, c.Cloud, c.Region)
		}
		if !zones[r.Zone] {
			return fmt.Errorf("%s: zone %q is not in %s/%s (zones: %v)", r.Source, r.Zone, c.Cloud, c.Region, c.Zones)
		}
		it.Offerings = append(it.Offerings, cloudprovider.Offering{
			Zone:          r.Zone,
			CapacityType:  v1.CapacityTypeReserved,
			PricePerHour:  ReservedPricePerHour,
			Available:     true,
			ReservationID: fmt.Sprintf("simulated-%s-%s", it.Name, r.Zone),
			ReservedCount: r.Count,
		})
	}
	return nil
}

// volumeTopology confines each pod that mounts claims to where their
// volumes are, as the controller does. A claim the manifests do not hold
// (or one not bound that binds immediately) leaves its pod unconfined, with
// a warning: the manifests may describe only part of a cluster. The
// volumes it returns let the solver count attach limits.
func volumeTopology(m *manifest.Set) ([]*corev1.Pod, *scheduling.Volumes) {
	vols := scheduling.NewVolumes(m.PersistentVolumeClaims, m.PersistentVolumes, m.StorageClasses)
	out := make([]*corev1.Pod, 0, len(m.Pods))
	for _, p := range m.Pods {
		if !scheduling.UsesClaims(p) {
			out = append(out, p)
			continue
		}
		q, err := vols.WithTopology(p)
		if err != nil {
			m.Warnings = append(m.Warnings, fmt.Sprintf("pod %s/%s: %v; planned without its volumes' topology", p.Namespace, p.Name, err))
			q = p
		}
		out = append(out, q)
	}
	return out, vols
}
