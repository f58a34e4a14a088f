package lifecycle

import (
	"context"
	"encoding/json"
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
		if err != nil || node == nil {
			return reconcile.Result{}, false, err
		}
		return reconcile.Result{}, false, r.release(ctx, node)
	}
	node, err := claims.NodeByProviderID(ctx, r.client, claim.Status.ProviderID)
	if err != nil {
		return reconcile.Result{}, false, fmt.Errorf("registering nodeclaim %s: %w", claim.Name, err)
	}
	if node == nil {
		return r.awaitNode(ctx, claim, launched.LastTransitionTime.Time)
	}
	if err := r.syncNode(ctx, claim, node); err != nil {
		return reconcile.Result{}, false, err
	}
	if err := r.release(ctx, node); err != nil {
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
	return reconcile.Result{}, false, nil
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
	abandonedTotal.WithLabelValues(nodePool(claim), abandonRegistrationTimeout).Inc()
	log.FromContext(ctx).Info("registration timed out, deleting nodeclaim", "providerID", claim.Status.ProviderID,
		"timeout", timeout.String())
	if err := deleteClaim(ctx, r.client, claim); err != nil {
		return reconcile.Result{}, false, err
	}
	return reconcile.Result{}, true, nil
}

// syncNode makes the Node carry what the claim promised the scheduler. Taints
// are added only at first registration, marked by the registered label, so
// that a startup taint removed later by its owner is not put back.
func (r *registration) syncNode(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) error {
	stored := node.DeepCopy()
	firstTime := node.Labels[v1.LabelRegistered] != "true"
	if node.Labels == nil {
		node.Labels = map[string]string{}
	}
	for k, v := range nodeLabels(claim) {
		node.Labels[k] = v
	}
	if firstTime {
		for _, t := range append(append([]corev1.Taint(nil), claim.Spec.Taints...), claim.Spec.StartupTaints...) {
			if !hasTaint(node.Spec.Taints, t) {
				node.Spec.Taints = append(node.Spec.Taints, t)
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
	if err := r.client.Patch(ctx, node, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("syncing node %s for nodeclaim %s: %w", node.Name, claim.Name, err)
	}
	return nil
}

// release removes the unregistered taint once the Node is Ready and its
// readiness taints are gone, so that the taint is the last thing keeping
// pods off it, after setting nominatedNodeName on the pods planned onto it.
// The Node watch brings the claim back when the Node changes.
//
// The kube-scheduler clears nominatedNodeName on every failed attempt, and
// the planned pods fail every attempt until the release, so the pods are
// steered again right after it too. The taint goes with a JSON patch that
// tests the taint is still at its index, not with a resourceVersion lock:
// the kubelet's status updates made nearly every locked attempt conflict,
// and while the release was retried the scheduler cleared the nominations
// just set and filled the node with pods planned elsewhere.
func (r *registration) release(ctx context.Context, node *corev1.Node) error {
	i := slices.IndexFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == v1.UnregisteredTaintKey })
	if i < 0 || !releasable(node) {
		return nil
	}
	var planned []*corev1.Pod
	if r.nominations != nil {
		planned = r.nominations.NominatedPods(node.Name)
	}
	r.steer(ctx, planned, node.Name)
	path := fmt.Sprintf("/spec/taints/%d", i)
	patch, err := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": node.Spec.Taints[i]},
		{"op": "remove", "path": path},
	})
	if err != nil {
		return err
	}
	err = r.client.Patch(ctx, node, client.RawPatch(types.JSONPatchType, patch))
	if apierrors.IsInvalid(err) {
		// The test failed: the taints changed since this copy was read.
		return fmt.Errorf("releasing node %s to the scheduler: its taints changed since they were read, retrying", node.Name)
	}
	if err != nil {
		return client.IgnoreNotFound(fmt.Errorf("releasing node %s to the scheduler: %w", node.Name, err))
	}
	r.steer(ctx, planned, node.Name)
	return nil
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

// nodeLabels are the labels every Node of the claim carries: the claim's own
// (which hold its pool's template labels) and the well-known labels of what
// was actually launched.
func nodeLabels(claim *v1.NodeClaim) map[string]string {
	out := map[string]string{}
	for k, v := range claim.Labels {
		out[k] = v
	}
	set := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	set(v1.LabelCapacityType, claim.Status.CapacityType)
	set(v1.LabelInstanceType, claim.Status.InstanceType)
	set(v1.LabelZone, claim.Status.Zone)
	out[v1.LabelNodeClaim] = claim.Name
	out[v1.LabelRegistered] = "true"
	return out
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
