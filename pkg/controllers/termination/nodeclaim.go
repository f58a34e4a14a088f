package termination

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/taints"
)

// claimTerminator finishes a deleted NodeClaim: cordon, drain, delete the
// machine, delete the Node, drop the finalizers. Each step is idempotent, so
// a crash anywhere resumes where it stopped.
type claimTerminator struct {
	client  client.Client
	cloud   machines
	clock   clock.Clock
	events  *recorder
	requeue time.Duration
	drainer *drainer
}

func (t *claimTerminator) Reconcile(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, error) {
	if claim.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(claim, v1.TerminationFinalizer) {
		return reconcile.Result{}, nil
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("nodeclaim", klog.KObj(claim)))
	node, err := claims.NodeFor(ctx, t.client, claim)
	if errors.Is(err, claims.ErrManyNodes) {
		// Never registered (the lifecycle gives such a claim up), so no pod
		// was placed through it: the machine goes without a drain, and the
		// Nodes go with the cloud's node lifecycle.
		log.FromContext(ctx).Info("several nodes report this machine; deleting it without draining them", "error", err.Error())
		node, err = nil, nil
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("terminating nodeclaim %s: %w", claim.Name, err)
	}
	if node != nil {
		if err := t.cordon(ctx, claim, node); err != nil {
			return reconcile.Result{}, err
		}
		gone, err := t.machineGone(ctx, claim, node)
		if err != nil {
			return reconcile.Result{}, err
		}
		if !gone {
			drained, err := t.drainer.drain(ctx, claim, node)
			if pe := (*podErrors)(nil); errors.As(err, &pe) {
				log.FromContext(ctx).Error(err, "some pods could not be evicted; trying again", "node", node.Name)
				return reconcile.Result{RequeueAfter: t.requeue}, nil
			}
			if err != nil {
				return reconcile.Result{}, fmt.Errorf("draining node %s of nodeclaim %s: %w", node.Name, claim.Name, err)
			}
			if !drained {
				return reconcile.Result{RequeueAfter: t.requeue}, nil
			}
			attached, err := t.drainer.volumesAttached(ctx, claim, node)
			if err != nil {
				return reconcile.Result{}, err
			}
			if attached > 0 {
				// Seen on the claim: a CSI driver that never detaches holds
				// the machine until the termination grace period, if any.
				t.events.awaitingDetach(claim, node, attached)
				log.FromContext(ctx).V(1).Info("waiting for volumes to detach", "node", node.Name, "attached", attached)
				return reconcile.Result{RequeueAfter: t.requeue}, nil
			}
		}
	}
	if err := t.deleteMachine(ctx, claim); err != nil {
		return reconcile.Result{}, err
	}
	if node != nil {
		if err := t.deleteNode(ctx, node); err != nil {
			return reconcile.Result{}, err
		}
	}
	stored := claim.DeepCopy()
	controllerutil.RemoveFinalizer(claim, v1.TerminationFinalizer)
	if err := t.client.Patch(ctx, claim, client.MergeFromWithOptions(stored, client.MergeFromWithOptimisticLock{})); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("removing finalizer from nodeclaim %s: %w", claim.Name, err))
	}
	terminatedTotal.WithLabelValues(claim.Labels[v1.LabelNodePool], terminationReason(claim)).Inc()
	terminationDuration.WithLabelValues(claim.Labels[v1.LabelNodePool]).Observe(t.clock.Since(claim.DeletionTimestamp.Time).Seconds())
	t.events.terminated(claim)
	log.FromContext(ctx).Info("terminated nodeclaim", "providerID", claim.Status.ProviderID)
	return reconcile.Result{}, nil
}

// machineGone reports whether the claim's machine no longer exists, for a
// Node that is not Ready: its pods are gone with it, and draining would only
// wait for evictions no kubelet will carry out. A Ready node's machine is
// taken to exist, so the cloud is not asked on every drain pass.
func (t *claimTerminator) machineGone(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) (bool, error) {
	if nodeReady(node) || claim.Status.ProviderID == "" {
		return false, nil
	}
	if _, err := t.cloud.Get(ctx, claim.Status.ProviderID); err != nil {
		if cloudprovider.IsNotFound(err) {
			log.FromContext(ctx).Info("machine is already gone; not draining", "providerID", claim.Status.ProviderID)
			return true, nil
		}
		return false, fmt.Errorf("looking up machine %s of nodeclaim %s: %w", claim.Status.ProviderID, claim.Name, err)
	}
	return false, nil
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// cordon taints the Node so the scheduler places nothing new on it while it drains.
func (t *claimTerminator) cordon(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) error {
	added, err := taints.Add(ctx, t.client, node.Name, disruptedTaint)
	if err != nil || !added {
		return client.IgnoreNotFound(err)
	}
	t.events.draining(claim, node)
	log.FromContext(ctx).Info("cordoned node, draining", "node", node.Name)
	return nil
}

// deleteMachine terminates the claim's machine. A claim without a providerID
// may still have one: a crash between the provider's Create and the status
// patch leaves the machine unrecorded, so it is looked up by the claim label
// every provider sets. When none is found the claim itself goes to Delete,
// which finds by name what a launch cut short left behind (an Azure network
// interface made before its VM).
func (t *claimTerminator) deleteMachine(ctx context.Context, claim *v1.NodeClaim) error {
	targets := []*v1.NodeClaim{claim}
	if claim.Status.ProviderID == "" {
		instances, err := t.cloud.List(ctx)
		if err != nil {
			return fmt.Errorf("listing machines for unlaunched nodeclaim %s: %w", claim.Name, err)
		}
		var found []*v1.NodeClaim
		for _, inst := range instances {
			if inst.Labels[v1.LabelNodeClaim] == claim.Name && inst.Status.ProviderID != "" {
				target := claim.DeepCopy()
				target.Status.ProviderID = inst.Status.ProviderID
				found = append(found, target)
			}
		}
		if len(found) > 0 {
			targets = found
		}
	}
	for _, target := range targets {
		if err := t.cloud.Delete(ctx, target); err != nil && !cloudprovider.IsNotFound(err) {
			return fmt.Errorf("deleting machine %s of nodeclaim %s: %w", target.Status.ProviderID, claim.Name, err)
		}
		log.FromContext(ctx).V(1).Info("deleted machine", "providerID", target.Status.ProviderID)
	}
	return nil
}

// deleteNode removes the Node object: its machine is gone, so nothing will
// ever report for it again.
func (t *claimTerminator) deleteNode(ctx context.Context, node *corev1.Node) error {
	// The finalizer goes first, so the Node does not linger once deleted.
	if err := removeNodeFinalizer(ctx, t.client, node); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("removing finalizer from node %s: %w", node.Name, err))
	}
	if node.DeletionTimestamp.IsZero() {
		if err := t.client.Delete(ctx, node); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting node %s: %w", node.Name, err)
		}
	}
	return nil
}
