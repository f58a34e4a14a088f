package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/pkg/utils/steer"
)

// Registered condition reasons.
const (
	registeredReasonAwaiting = "AwaitingNode"
	registeredReasonOK       = "Registered"
)

// Nominations tells which pending pods were planned onto a node.
type Nominations interface {
	NominatedPods(nodeName string) []*corev1.Pod
}

// registration owns the Registered condition: it finds the claim's Node by
// providerID, makes the Node Stowage's (labels, taints, owner, finalizer),
// and deletes the claim when no Node joins in time. It then releases the
// Node to the scheduler (removes the unregistered taint) once the Node is
// Ready, after pointing the pods planned onto it there (see package steer):
// the scheduler would otherwise fill a fresh node with whichever pods it
// meets first, and the pods it was bought for would need another machine.
type registration struct {
	client         client.Client
	cloud          cloudprovider.CloudProvider // nil: no instance type labels
	clock          clock.Clock
	events         *recorder
	defaultTimeout time.Duration
	nominations    Nominations // nil: nothing to steer
}

func (r *registration) reconcile(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, bool, error) {
	launched := conditions.Get(claim.Status.Conditions, v1.ConditionLaunched)
	if launched == nil || launched.Status != metav1.ConditionTrue {
		return reconcile.Result{}, false, nil
	}
	if conditions.IsTrue(claim.Status.Conditions, v1.ConditionRegistered) {
		node, err := claims.NodeFor(ctx, r.client, claim)
		if err != nil {
			return reconcile.Result{}, false, err
		}
		if node == nil {
			return r.nodeGone(ctx, claim)
		}
		poll, err := r.release(ctx, node)
		return reconcile.Result{RequeueAfter: poll}, false, err
	}
	node, err := claims.NodeByProviderID(ctx, r.client, claim.Status.ProviderID)
	if errors.Is(err, claims.ErrManyNodes) {
		// Which Node is the machine's cannot be told; it is not registered,
		// and the registration timeout gives it up like one that never came.
		log.FromContext(ctx).Info("cannot register nodeclaim", "error", err.Error())
		return r.awaitNode(ctx, claim, launched.LastTransitionTime.Time)
	}
	if err != nil {
		return reconcile.Result{}, false, fmt.Errorf("registering nodeclaim %s: %w", claim.Name, err)
	}
	if node == nil {
		return r.awaitNode(ctx, claim, launched.LastTransitionTime.Time)
	}
	if err := r.syncNode(ctx, claim, node); err != nil {
		if apierrors.IsConflict(err) {
			// The Node watch brings the claim back with the newer Node.
			return reconcile.Result{RequeueAfter: staleNodeRetry}, false, nil
		}
		return reconcile.Result{}, false, err
	}
	poll, err := r.release(ctx, node)
	if err != nil {
		return reconcile.Result{}, false, err
	}
	claim.Status.NodeName = node.Name
	conditions.Set(&claim.Status.Conditions, r.clock, claim.Generation, v1.ConditionRegistered,
		metav1.ConditionTrue, registeredReasonOK, "")
	took := r.clock.Since(launched.LastTransitionTime.Time).Seconds()
	afterStatusStored(ctx, func() {
		registeredTotal.WithLabelValues(nodePool(claim)).Inc()
		registrationDuration.WithLabelValues(nodePool(claim)).Observe(took)
		r.events.registered(claim, node)
		log.FromContext(ctx).Info("registered nodeclaim", "node", node.Name)
	})
	return reconcile.Result{RequeueAfter: poll}, false, nil
}

// awaitNode waits for the Node until the registration timeout, measured from
// launch, and then deletes the claim so provisioning plans its pods again.
func (r *registration) awaitNode(ctx context.Context, claim *v1.NodeClaim, launchedAt time.Time) (reconcile.Result, bool, error) {
	timeout := registrationTimeout(claim, r.defaultTimeout)
	waited := r.clock.Since(launchedAt)
	if waited < timeout {
		conditions.Set(&claim.Status.Conditions, r.clock, claim.Generation, v1.ConditionRegistered, metav1.ConditionUnknown,
			registeredReasonAwaiting, fmt.Sprintf("waiting for a node with providerID %s", claim.Status.ProviderID))
		return reconcile.Result{RequeueAfter: timeout - waited}, false, nil
	}
	r.events.registrationTimeout(claim, timeout.String())
	return abandon(ctx, r.client, claim, abandonRegistrationTimeout, "registration timed out, deleting nodeclaim",
		"providerID", claim.Status.ProviderID, "timeout", timeout.String())
}

// nodeGone deletes a registered claim whose Node no longer exists. A Node
// deleted through Stowage's finalizer has its claim deleted by termination;
// this covers one that went around it (the finalizer stripped to unstick a
// delete): the kubelet does not register again, so the claim would keep its
// machine billing with no Node and count as a node on its way. The claim was
// registered from this cache, so a Node missing from it was deleted.
func (r *registration) nodeGone(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, bool, error) {
	r.events.nodeDeleted(claim)
	log.FromContext(ctx).Info("node of registered nodeclaim is gone, deleting nodeclaim", "node", claim.Status.NodeName)
	del := func() error { return client.IgnoreNotFound(r.client.Delete(ctx, claim)) }
	if !conditions.IsTrue(claim.Status.Conditions, v1.ConditionInitialized) {
		// A gang still coming up without this machine cannot run.
		del = func() error { return claims.DeleteWithGang(ctx, r.client, claim) }
	}
	if err := del(); err != nil {
		return reconcile.Result{}, false, fmt.Errorf("deleting nodeclaim %s whose node is gone: %w", claim.Name, err)
	}
	return reconcile.Result{}, true, nil
}

// syncNode makes the Node carry what the claim promised the scheduler. Taints
// are added only at first registration, marked by the registered label, so
// that a startup taint removed later by its owner is not put back.
func (r *registration) syncNode(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) error {
	typeLabels := r.typeLabels(ctx, claim)
	stored := node.DeepCopy()
	firstTime := node.Labels[v1.LabelRegistered] != "true"
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for k, v := range typeLabels {
		if _, set := node.Labels[k]; !set && k != v1.LabelHostname {
			node.Labels[k] = v
		}
	}
	for k, v := range nodeLabels(claim) {
		node.Labels[k] = v
	}
	addsTaints := false
	if firstTime {
		for _, t := range append(append([]corev1.Taint(nil), claim.Spec.Taints...), claim.Spec.StartupTaints...) {
			if !hasTaint(node.Spec.Taints, t) {
				node.Spec.Taints = append(node.Spec.Taints, t)
				addsTaints = true
			}
		}
	}
	controllerutil.AddFinalizer(node, v1.TerminationFinalizer)
	if !hasOwner(node, claim) {
		node.OwnerReferences = append(node.OwnerReferences, metav1.OwnerReference{
			APIVersion: v1.SchemeGroupVersion.String(),
			Kind:       "NodeClaim",
			Name:       claim.Name,
			UID:        claim.UID,
		})
	}
	if equality.Semantic.DeepEqual(stored, node) {
		return nil
	}
	// A strategic merge patch adds labels, the finalizer and the owner to
	// whatever the Node holds now, so it needs no lock: with one, the
	// kubelet's status updates of a fresh Node failed about every other
	// attempt. Placing taints is the exception: a copy older than the
	// registered label would put back a startup taint its owner had removed.
	var opts []client.MergeFromOption
	if addsTaints {
		opts = append(opts, client.MergeFromWithOptimisticLock{})
	}
	if err := r.client.Patch(ctx, node, client.StrategicMergeFrom(stored, opts...)); err != nil {
		return fmt.Errorf("syncing node %s for nodeclaim %s: %w", node.Name, claim.Name, err)
	}
	return nil
}

// release hands the Node to the scheduler once it is Ready and its
// readiness taints are gone, so that the unregistered taint is the last thing
// keeping pods off it. When pods were planned onto the node, the unregistered
// taint is swapped for a reservation (see reservation) that only they
// tolerate; otherwise it is removed. The Node watch brings the claim back
// when the Node changes; a reserved node is polled until the reservation
// goes, since pods binding do not change the Node.
//
// The taints change with a JSON patch that tests the taint is still at its
// index, not with a resourceVersion lock: the kubelet's status updates made
// nearly every locked attempt conflict, and while the release was retried
// the scheduler cleared the nominations just set.
func (r *registration) release(ctx context.Context, node *corev1.Node) (time.Duration, error) {
	if i := taintIndex(node, v1.UnregisteredTaintKey); i >= 0 {
		if !releasable(node) {
			return 0, nil
		}
		var planned []*corev1.Pod
		if r.nominations != nil {
			planned = r.nominations.NominatedPods(node.Name)
		}
		var with []corev1.Taint
		if len(planned) > 0 && canReserve(node, planned) {
			reservation := steer.Reservation(node, r.clock.Now())
			r.tolerate(ctx, planned, node)
			with = []corev1.Taint{reservation}
		}
		r.steer(ctx, planned, node.Name)
		if err := r.replaceTaint(ctx, node, i, with); err != nil {
			return retryStale(err)
		}
		// The kube-scheduler clears nominatedNodeName on every failed
		// attempt, and the planned pods failed every attempt until now.
		r.steer(ctx, planned, node.Name)
		if with != nil {
			return reservationPoll, nil
		}
		return 0, nil
	}
	if i := taintIndex(node, v1.ReservedTaintKey); i >= 0 {
		return r.reservation(ctx, node, i)
	}
	return 0, nil
}

const (
	// staleNodeRetry is when a Node sync that met a newer Node is retried
	// if no Node event comes first.
	staleNodeRetry = time.Second
	// reservationPoll is how often a reserved node is checked for its
	// planned pods having been bound.
	reservationPoll = time.Second
	// maxReservation bounds a reservation whatever the nominations say; it
	// matches how long a nomination waits for its node (state.MaxNominationWait).
	maxReservation = 2 * time.Minute
)

// reservation keeps a released node for the pods planned onto it: without
// it, the kube-scheduler put the first pending pods it met on the fresh node
// (in an untainted pool, CPU pods on a new GPU machine), the planned pods no
// longer fitted, and a second machine was bought for them. Pods planned onto
// the node since it was reserved are given the toleration too. The taint goes
// once no pending pod is validly nominated to the node (all bound, or their
// nominations lapsed) or after maxReservation, whichever is first.
func (r *registration) reservation(ctx context.Context, node *corev1.Node, i int) (time.Duration, error) {
	var planned []*corev1.Pod
	if r.nominations != nil {
		planned = r.nominations.NominatedPods(node.Name)
	}
	taint := node.Spec.Taints[i]
	held := time.Duration(0)
	if taint.TimeAdded != nil {
		held = r.clock.Since(taint.TimeAdded.Time)
	}
	if len(planned) > 0 && held < maxReservation {
		r.tolerate(ctx, planned, node)
		r.steer(ctx, planned, node.Name)
		return reservationPoll, nil
	}
	if err := r.replaceTaint(ctx, node, i, nil); err != nil {
		return retryStale(err)
	}
	return 0, nil
}

// errStaleTaints says the node's taints changed since the copy was read.
var errStaleTaints = errors.New("the node's taints changed since they were read")

// retryStale turns a stale copy into a quiet retry: the Node watch brings
// the claim back with the newer copy, and the poll is a safety net. Other
// errors are returned.
func retryStale(err error) (time.Duration, error) {
	if errors.Is(err, errStaleTaints) {
		return reservationPoll, nil
	}
	return 0, err
}

// replaceTaint replaces the node's taint at index i with the given ones (none:
// removes it), testing first that the taint is still there.
func (r *registration) replaceTaint(ctx context.Context, node *corev1.Node, i int, with []corev1.Taint) error {
	path := fmt.Sprintf("/spec/taints/%d", i)
	ops := []map[string]any{{"op": "test", "path": path, "value": node.Spec.Taints[i]}}
	if len(with) == 0 {
		ops = append(ops, map[string]any{"op": "remove", "path": path})
	}
	for _, t := range with {
		ops = append(ops, map[string]any{"op": "replace", "path": path, "value": t})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	err = r.client.Patch(ctx, node, client.RawPatch(types.JSONPatchType, patch))
	if apierrors.IsInvalid(err) {
		// The test failed: the cached copy is behind the stored Node.
		log.FromContext(ctx).V(1).Info("node's taints changed since read; retrying with the newer copy", "node", node.Name,
			"taint", node.Spec.Taints[i].Key)
		return errStaleTaints
	}
	return client.IgnoreNotFound(err)
}

// tolerate gives the planned pods the reservation's toleration. A pod left
// without it waits for the reservation to end, so a failure is logged.
func (r *registration) tolerate(ctx context.Context, pods []*corev1.Pod, node *corev1.Node) {
	if _, err := steer.Tolerate(ctx, r.client, pods, steer.Toleration(node)); err != nil {
		log.FromContext(ctx).Error(err, "letting planned pods onto their reserved node", "node", node.Name)
	}
}

// canReserve reports whether the node already offers what its planned pods
// need from DaemonSets that would not tolerate a reservation: the resources
// a device plugin registers (GPUs) and the ResourceSlices a DRA driver
// publishes. Otherwise the node is released without a reservation and the
// pods are only steered. CSI node plugins are not waited for: they tolerate
// every taint by convention, and a reservation ends after maxReservation.
func canReserve(node *corev1.Node, pods []*corev1.Pod) bool {
	for _, pod := range pods {
		if len(pod.Spec.ResourceClaims) > 0 {
			return false
		}
		for _, c := range pod.Spec.Containers {
			for name, q := range c.Resources.Requests {
				if have, ok := node.Status.Allocatable[name]; !q.IsZero() && (!ok || have.IsZero()) {
					return false
				}
			}
		}
	}
	return true
}

func taintIndex(node *corev1.Node, key string) int {
	return slices.IndexFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == key })
}

// steer points the planned pods at the node. Releasing without it only
// risks a second purchase, and the provisioner steers again when it sees
// the pods, so a failure is logged, not returned.
func (r *registration) steer(ctx context.Context, pods []*corev1.Pod, node string) {
	if len(pods) == 0 {
		return
	}
	if _, err := steer.Pods(ctx, r.client, pods, node); err != nil {
		log.FromContext(ctx).Error(err, "pointing planned pods at the node", "node", node)
	}
}

// releasable reports whether a node would take pods but for the
// unregistered taint: it is Ready and the node lifecycle controller has
// lifted its readiness taints. Startup taints are not waited for: the
// DaemonSets that remove them must be able to schedule.
func releasable(node *corev1.Node) bool {
	if !nodeReady(node) {
		return false
	}
	return !hasTaintKey(node.Spec.Taints, corev1.TaintNodeNotReady) && !hasTaintKey(node.Spec.Taints, corev1.TaintNodeUnreachable)
}

func hasTaintKey(taints []corev1.Taint, key string) bool {
	for _, t := range taints {
		if t.Key == key {
			return true
		}
	}
	return false
}

// nodeLabels are the labels registration gives the claim's Node.
func nodeLabels(claim *v1.NodeClaim) map[string]string {
	out := claims.Labels(claim)
	out[v1.LabelRegistered] = "true"
	return out
}

// typeLabels are the launched instance type's labels (stowage.dev/gpu-name,
// instance-family, ...), which pods select and the solver plans with: the
// AWS and GCP kubelets do not register with them. None when the claim's pool
// is gone, no longer lists the type, or its types cannot be read now (a
// machine that exists is registered without them rather than not at all).
func (r *registration) typeLabels(ctx context.Context, claim *v1.NodeClaim) map[string]string {
	if r.cloud == nil || claim.Status.InstanceType == "" {
		return nil
	}
	pool := &v1.NodePool{}
	if err := r.client.Get(ctx, client.ObjectKey{Name: claim.Labels[v1.LabelNodePool]}, pool); err != nil {
		return nil
	}
	its, err := r.cloud.InstanceTypes(ctx, pool)
	if err != nil {
		log.FromContext(ctx).Info("registering without the instance type's labels", "nodepool", pool.Name, "error", err.Error())
		return nil
	}
	for _, it := range its {
		if it.Name == claim.Status.InstanceType {
			return it.Labels
		}
	}
	return nil
}

func hasTaint(taints []corev1.Taint, t corev1.Taint) bool {
	for _, have := range taints {
		if have.MatchTaint(&t) {
			return true
		}
	}
	return false
}

func hasOwner(node *corev1.Node, claim *v1.NodeClaim) bool {
	for _, ref := range node.OwnerReferences {
		if ref.UID == claim.UID {
			return true
		}
	}
	return false
}

// registrationTimeout is the claim's spec.registrationTimeout, or def.
func registrationTimeout(claim *v1.NodeClaim, def time.Duration) time.Duration {
	if claim.Spec.RegistrationTimeout != nil && claim.Spec.RegistrationTimeout.Duration > 0 {
		return claim.Spec.RegistrationTimeout.Duration
	}
	return def
}
