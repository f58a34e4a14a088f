package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// Launched condition reasons.
const (
	launchedReasonPending = "Launching"
	launchedReasonFailed  = "LaunchFailed"
	launchedReasonInvalid = "InvalidSpec"
	launchedReasonOK      = "Launched"
)

// launch owns the Launched condition: it calls the cloud provider's Create
// until one offering has capacity.
type launch struct {
	client         client.Client
	defaultTimeout time.Duration
	createTimeout  time.Duration
	cloud          launcher
	clock          clock.Clock
	events         *recorder
	unavailable    *cloudprovider.UnavailableOfferings
}

func (l *launch) reconcile(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, bool, error) {
	if conditions.IsTrue(claim.Status.Conditions, v1.ConditionLaunched) {
		return reconcile.Result{}, false, nil
	}
	if conditions.Get(claim.Status.Conditions, v1.ConditionLaunched) == nil {
		conditions.Set(&claim.Status.Conditions, l.clock, claim.Generation, v1.ConditionLaunched,
			metav1.ConditionUnknown, launchedReasonPending, "")
	}
	if len(claim.Spec.Offerings) == 0 {
		// The CRD forbids this; a claim written around validation gets a clear
		// condition instead of being mistaken for a capacity shortage.
		conditions.Set(&claim.Status.Conditions, l.clock, claim.Generation, v1.ConditionLaunched,
			metav1.ConditionFalse, launchedReasonInvalid, "spec.offerings is empty")
		return reconcile.Result{}, false, reconcile.TerminalError(
			fmt.Errorf("launching nodeclaim %s: spec.offerings is empty", claim.Name))
	}
	// Each pass hands the provider only the offerings not yet known to be out
	// of capacity, so the claim moves down its list even if a provider only
	// tries the first. The loop ends: every pass removes at least one offering.
	for {
		remaining := remainingOfferings(claim)
		if len(remaining) == 0 {
			l.events.noCapacityLeft(claim)
			return abandon(ctx, l.client, claim, abandonInsufficientCapacity, "no offering had capacity, deleting nodeclaim",
				"unavailableOfferings", claim.Status.UnavailableOfferings)
		}
		attempt := claim.DeepCopy()
		attempt.Spec.Offerings = remaining
		start := l.clock.Now()
		created, err := l.create(ctx, attempt)
		if err == nil {
			l.recordSkipped(claim, remaining, created)
			l.launched(ctx, claim, created)
			took := l.clock.Since(start).Seconds()
			afterStatusStored(ctx, func() { launchDuration.WithLabelValues(nodePool(claim)).Observe(took) })
			return reconcile.Result{}, false, nil
		}
		if !cloudprovider.IsInsufficientCapacity(err) {
			conditions.Set(&claim.Status.Conditions, l.clock, claim.Generation, v1.ConditionLaunched,
				metav1.ConditionFalse, launchedReasonFailed, truncate(err.Error()))
			l.events.launchFailed(claim, err)
			// The transition time is when launches started failing. A claim that
			// cannot launch for as long as a machine may take to register is
			// given up, so its pods are planned again instead of waiting forever.
			failingSince := conditions.Get(claim.Status.Conditions, v1.ConditionLaunched).LastTransitionTime.Time
			if timeout := registrationTimeout(claim, l.defaultTimeout); l.clock.Since(failingSince) >= timeout {
				l.events.launchTimeout(claim, timeout.String())
				return abandon(ctx, l.client, claim, abandonLaunchFailed, "launch kept failing, deleting nodeclaim",
					"timeout", timeout.String(), "error", err.Error())
			}
			// Returning the error requeues with controller-runtime's exponential backoff.
			return reconcile.Result{}, false, fmt.Errorf("launching nodeclaim %s: %w", claim.Name, err)
		}
		failed := failedOfferings(remaining, cloudprovider.InsufficientCapacityOfferings(err))
		l.markUnavailable(claim, failed)
		l.events.insufficientCapacity(claim, err, len(remaining)-len(failed))
		log.FromContext(ctx).Info("insufficient capacity, trying the next offering", "failed", len(failed),
			"remaining", len(remaining)-len(failed), "error", err.Error())
	}
}

// abandon gives a claim up once its event is recorded: it counts the reason,
// logs msg and deletes the claim, releasing its gang.
func abandon(ctx context.Context, c client.Client, claim *v1.NodeClaim, reason, msg string, kv ...any) (reconcile.Result, bool, error) {
	abandonedTotal.WithLabelValues(nodePool(claim), reason).Inc()
	log.FromContext(ctx).Info(msg, kv...)
	if err := claims.DeleteWithGang(ctx, c, claim); err != nil {
		return reconcile.Result{}, false, err
	}
	return reconcile.Result{}, true, nil
}

// DefaultCreateTimeout bounds one cloud Create call. Providers wait for the
// machine to exist (an Azure VM's create can take minutes), and adopt it on
// the next call if the deadline cut that wait short.
const DefaultCreateTimeout = 10 * time.Minute

// create calls the provider with a deadline, so a call that never returns
// frees its worker: with every worker held, no claim would launch.
func (l *launch) create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	cctx, cancel := context.WithTimeout(ctx, l.createTimeout)
	defer cancel()
	created, err := l.cloud.Create(cctx, claim)
	if err != nil && ctx.Err() == nil && errors.Is(cctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("no answer from the cloud provider within %s: %w", l.createTimeout, err)
	}
	return created, err
}

// recordSkipped records the offerings a provider walked past before the one
// it launched. A provider may report them in the returned status; otherwise
// an offering ahead of the launched one that the shared cache holds was
// skipped for capacity (providers mark the cache as they walk).
func (l *launch) recordSkipped(claim *v1.NodeClaim, tried []v1.OfferingChoice, created *v1.NodeClaim) {
	got := cloudprovider.OfferingID{InstanceType: created.Status.InstanceType, Zone: created.Status.Zone,
		CapacityType: created.Status.CapacityType}
	var reported, cached []cloudprovider.OfferingID
	for _, o := range tried {
		id := cloudprovider.ChoiceID(o)
		if withoutReservation(id) == got { // the status does not say which reservation
			break
		}
		switch {
		case slices.Contains(created.Status.UnavailableOfferings, id.String()):
			reported = append(reported, id)
		case l.unavailable != nil && l.unavailable.IsUnavailable(id):
			cached = append(cached, id)
		}
	}
	l.markUnavailable(claim, reported)
	for _, id := range cached {
		insufficientCapacityTotal.WithLabelValues(id.InstanceType, id.Zone, id.CapacityType).Inc()
		if !slices.Contains(claim.Status.UnavailableOfferings, id.String()) {
			claim.Status.UnavailableOfferings = append(claim.Status.UnavailableOfferings, id.String())
		}
	}
}

func withoutReservation(id cloudprovider.OfferingID) cloudprovider.OfferingID {
	id.ReservationID = ""
	return id
}

// markUnavailable records offerings that had no capacity for this claim, in
// its status (so they are not tried again) and in the shared cache if any.
func (l *launch) markUnavailable(claim *v1.NodeClaim, ids []cloudprovider.OfferingID) {
	for _, id := range ids {
		insufficientCapacityTotal.WithLabelValues(id.InstanceType, id.Zone, id.CapacityType).Inc()
		if !slices.Contains(claim.Status.UnavailableOfferings, id.String()) {
			claim.Status.UnavailableOfferings = append(claim.Status.UnavailableOfferings, id.String())
		}
	}
	if l.unavailable != nil && len(ids) > 0 {
		l.unavailable.MarkUnavailable(ids...)
	}
}

// launched copies what the provider launched into the claim's status.
func (l *launch) launched(ctx context.Context, claim, created *v1.NodeClaim) {
	s := &claim.Status
	s.ProviderID = created.Status.ProviderID
	s.InstanceType = created.Status.InstanceType
	s.Zone = created.Status.Zone
	s.CapacityType = created.Status.CapacityType
	s.PricePerHour = created.Status.PricePerHour
	s.ImageID = created.Status.ImageID
	s.Capacity = created.Status.Capacity.DeepCopy()
	s.Allocatable = created.Status.Allocatable.DeepCopy()
	conditions.Set(&s.Conditions, l.clock, claim.Generation, v1.ConditionLaunched, metav1.ConditionTrue, launchedReasonOK, "")
	afterStatusStored(ctx, func() {
		launchedTotal.WithLabelValues(nodePool(claim), s.CapacityType).Inc()
		l.events.launched(claim)
		log.FromContext(ctx).Info("launched nodeclaim", "providerID", s.ProviderID, "instanceType", s.InstanceType,
			"zone", s.Zone, "capacityType", s.CapacityType)
	})
}

// remainingOfferings are the claim's offerings that have not reported
// insufficient capacity for it, in the solver's order.
func remainingOfferings(claim *v1.NodeClaim) []v1.OfferingChoice {
	var out []v1.OfferingChoice
	for _, o := range claim.Spec.Offerings {
		if !slices.Contains(claim.Status.UnavailableOfferings, cloudprovider.ChoiceID(o).String()) {
			out = append(out, o)
		}
	}
	return out
}

// failedOfferings are the tried offerings the error names. An error that names
// none of them is taken to mean all of them, so the launch still makes progress.
func failedOfferings(tried []v1.OfferingChoice, named []cloudprovider.OfferingID) []cloudprovider.OfferingID {
	var out, all []cloudprovider.OfferingID
	for _, o := range tried {
		id := cloudprovider.ChoiceID(o)
		all = append(all, id)
		if slices.Contains(named, id) {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}
