// Package garbagecollection reconciles the cloud against the API server: it
// deletes machines no NodeClaim owns (leaked by a crash between a launch and
// the claim's status patch, or by a claim deleted while its launch was in
// flight), and deletes NodeClaims whose machine the cloud no longer has, so
// their pods are planned again.
package garbagecollection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	claimutil "github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// Name is the controller's name in logs and metrics.
const Name = "nodeclaim.garbagecollection"

// Defaults.
const (
	// DefaultInterval is the wait between passes; each pass lists every machine, so it is not cheap.
	DefaultInterval = time.Minute
	// DefaultInstanceGrace is how old an unowned machine must be before it is
	// deleted, so a launch whose claim status is not yet in the cache is not killed.
	DefaultInstanceGrace = 2 * time.Minute
	// DefaultLaunchedGrace is how long after launch a claim's machine may be
	// missing from the cloud's list (eventually consistent APIs) before the claim is deleted.
	DefaultLaunchedGrace = 30 * time.Second
)

// Deps are the garbage collector's dependencies.
type Deps struct {
	Client        client.Client
	CloudProvider cloudprovider.CloudProvider
	Clock         clock.Clock
	Recorder      events.EventRecorder
	Options       Options
}

// Options tune the garbage collector; zero values take the defaults.
type Options struct {
	Interval      time.Duration
	InstanceGrace time.Duration
	LaunchedGrace time.Duration
}

// machines is the part of the cloud provider garbage collection calls.
type machines interface {
	List(ctx context.Context) ([]*v1.NodeClaim, error)
	Get(ctx context.Context, providerID string) (*v1.NodeClaim, error)
	Delete(ctx context.Context, claim *v1.NodeClaim) error
}

// Controller is the periodic garbage collector.
type Controller struct {
	client   client.Client
	cloud    machines
	clock    clock.Clock
	recorder events.EventRecorder
	opts     Options

	mu sync.Mutex
	// firstSeen remembers when an unowned machine without a creation time was
	// first seen, so its grace period still applies.
	firstSeen map[string]time.Time
}

// NewController builds the garbage collector.
func NewController(d Deps) *Controller {
	if d.Options.Interval <= 0 {
		d.Options.Interval = DefaultInterval
	}
	if d.Options.InstanceGrace <= 0 {
		d.Options.InstanceGrace = DefaultInstanceGrace
	}
	if d.Options.LaunchedGrace <= 0 {
		d.Options.LaunchedGrace = DefaultLaunchedGrace
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Recorder == nil {
		// A FakeRecorder without a channel drops events: fine for callers that want none.
		d.Recorder = &events.FakeRecorder{}
	}
	return &Controller{client: d.Client, cloud: d.CloudProvider, clock: d.Clock, recorder: d.Recorder,
		opts: d.Options, firstSeen: map[string]time.Time{}}
}

// Name is the controller's name.
func (c *Controller) Name() string { return Name }

// Register runs the collector on mgr. It only runs on the elected leader: a
// runnable that does not say otherwise needs leader election.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if err := registerMetrics(); err != nil {
		return fmt.Errorf("registering %s metrics: %w", Name, err)
	}
	return mgr.Add(manager.RunnableFunc(c.run))
}

func (c *Controller) run(ctx context.Context) error {
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithName(Name))
	for {
		if err := c.Reconcile(ctx); err != nil {
			log.FromContext(ctx).Error(err, "garbage collection pass failed")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.clock.After(c.opts.Interval):
		}
	}
}

// Reconcile makes one pass.
func (c *Controller) Reconcile(ctx context.Context) error {
	// Machines are listed before claims: every claim is written before its
	// machine is launched, so a machine in this list has its claim in the
	// claim list below unless the claim is really gone (or the cache lags,
	// which the grace period covers).
	instances, err := c.cloud.List(ctx)
	if err != nil {
		return fmt.Errorf("listing machines: %w", err)
	}
	list := &v1.NodeClaimList{}
	if err := c.client.List(ctx, list); err != nil {
		return fmt.Errorf("listing nodeclaims: %w", err)
	}
	byName := map[string]*v1.NodeClaim{}
	byProviderID := map[string]bool{}
	for i := range list.Items {
		claim := &list.Items[i]
		byName[claim.Name] = claim
		if claim.Status.ProviderID != "" {
			byProviderID[claim.Status.ProviderID] = true
		}
	}
	return errors.Join(c.deleteUnowned(ctx, instances, byName, byProviderID), c.deleteOrphanedClaims(ctx, list.Items, instances))
}

// deleteUnowned deletes machines that no claim owns and that are past the grace period.
func (c *Controller) deleteUnowned(ctx context.Context, instances []*v1.NodeClaim, byName map[string]*v1.NodeClaim,
	byProviderID map[string]bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	live := map[string]bool{}
	var errs []error
	for _, inst := range instances {
		id := inst.Status.ProviderID
		live[id] = true
		if owned(inst, byName, byProviderID) {
			delete(c.firstSeen, id)
			continue
		}
		born := inst.CreationTimestamp.Time
		if born.IsZero() {
			if _, ok := c.firstSeen[id]; !ok {
				c.firstSeen[id] = now
			}
			born = c.firstSeen[id]
		}
		if now.Sub(born) < c.opts.InstanceGrace {
			continue
		}
		if err := c.cloud.Delete(ctx, inst); err != nil && !cloudprovider.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting unowned machine %s: %w", id, err))
			continue
		}
		delete(c.firstSeen, id)
		instancesDeletedTotal.Inc()
		log.FromContext(ctx).Info("deleted machine no nodeclaim owns", "providerID", id,
			"nodeclaim", inst.Labels[v1.LabelNodeClaim], "age", now.Sub(born).String())
	}
	for id := range c.firstSeen {
		if !live[id] {
			delete(c.firstSeen, id)
		}
	}
	return errors.Join(errs...)
}

// owned reports whether a live claim accounts for the machine. A claim that
// has not recorded a providerID yet owns the machines carrying its name (its
// launch is in flight); a claim that recorded a different machine does not:
// this one is a duplicate.
func owned(inst *v1.NodeClaim, byName map[string]*v1.NodeClaim, byProviderID map[string]bool) bool {
	if byProviderID[inst.Status.ProviderID] {
		return true
	}
	claim, ok := byName[inst.Labels[v1.LabelNodeClaim]]
	return ok && claim.Status.ProviderID == ""
}

// deleteOrphanedClaims deletes launched claims whose machine is gone, so
// termination cleans up their Node and provisioning plans their pods again.
func (c *Controller) deleteOrphanedClaims(ctx context.Context, claims []v1.NodeClaim, instances []*v1.NodeClaim) error {
	listed := map[string]bool{}
	for _, inst := range instances {
		listed[inst.Status.ProviderID] = true
	}
	var errs []error
	for i := range claims {
		claim := &claims[i]
		launched := conditions.Get(claim.Status.Conditions, v1.ConditionLaunched)
		if !claim.DeletionTimestamp.IsZero() || claim.Status.ProviderID == "" || listed[claim.Status.ProviderID] ||
			launched == nil || !conditions.IsTrue(claim.Status.Conditions, v1.ConditionLaunched) ||
			c.clock.Since(launched.LastTransitionTime.Time) < c.opts.LaunchedGrace {
			continue
		}
		// The list is a hint; Get is the authority before deleting anything.
		if _, err := c.cloud.Get(ctx, claim.Status.ProviderID); err == nil {
			continue
		} else if !cloudprovider.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("getting machine %s of nodeclaim %s: %w", claim.Status.ProviderID, claim.Name, err))
			continue
		}
		// A gang still coming up without this machine cannot run: its other
		// claims go too, as the lifecycle releases them on a failed launch.
		del := func() error { return client.IgnoreNotFound(c.client.Delete(ctx, claim)) }
		if !conditions.IsTrue(claim.Status.Conditions, v1.ConditionInitialized) {
			del = func() error { return claimutil.DeleteWithGang(ctx, c.client, claim) }
		}
		if err := del(); err != nil {
			errs = append(errs, fmt.Errorf("deleting nodeclaim %s whose machine is gone: %w", claim.Name, err))
			continue
		}
		claimsDeletedTotal.WithLabelValues(claim.Labels[v1.LabelNodePool]).Inc()
		c.recorder.Eventf(claim, nil, corev1.EventTypeWarning, "MachineNotFound", "Delete",
			"machine %s no longer exists; deleting the nodeclaim so its pods are planned again", claim.Status.ProviderID)
		log.FromContext(ctx).Info("deleted nodeclaim whose machine is gone", "nodeclaim", klog.KObj(claim),
			"providerID", claim.Status.ProviderID)
	}
	return errors.Join(errs...)
}
