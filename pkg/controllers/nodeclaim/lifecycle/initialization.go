package lifecycle

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
)

// Initialized condition reasons.
const (
	initializedReasonNodeMissing   = "NodeNotFound"
	initializedReasonNotReady      = "NodeNotReady"
	initializedReasonNotReleased   = "NodeNotReleased"
	initializedReasonStartupTaints = "StartupTaintsPresent"
	initializedReasonResources     = "ResourcesNotRegistered"
	initializedReasonOK            = "Initialized"
)

// initialization owns the Initialized condition: the Node is Ready,
// registration has released it (the unregistered taint is gone; a
// reservation for the planned pods may remain), its startup taints are gone,
// and every extended resource the claim's pods request (GPUs, MIG slices) is
// advertised. Until then the scheduler could not place the pods the claim
// was bought for, and a Ready claim would tell users and tests otherwise.
// A node that is not initialized within the registration timeout of
// registering (a kubelet that never turns Ready, a startup taint nobody
// removes, a GPU the device plugin never advertises) is given up: the
// claim is deleted, so the machine stops billing and its pods are planned
// again.
type initialization struct {
	client         client.Client
	clock          clock.Clock
	events         *recorder
	defaultTimeout time.Duration
}

func (i *initialization) reconcile(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, bool, error) {
	if !conditions.IsTrue(claim.Status.Conditions, v1.ConditionRegistered) ||
		conditions.IsTrue(claim.Status.Conditions, v1.ConditionInitialized) {
		return reconcile.Result{}, false, nil
	}
	node, err := claims.NodeFor(ctx, i.client, claim)
	if err != nil {
		return reconcile.Result{}, false, fmt.Errorf("initializing nodeclaim %s: %w", claim.Name, err)
	}
	reason, message := "", ""
	switch {
	case node == nil:
		reason, message = initializedReasonNodeMissing, fmt.Sprintf("node %s not found", claim.Status.NodeName)
	case !nodeReady(node):
		reason, message = initializedReasonNotReady, fmt.Sprintf("node %s is not Ready", node.Name)
	case hasTaintKey(node.Spec.Taints, v1.UnregisteredTaintKey):
		// Release retries a taint change that met a newer Node; until it
		// lands the node takes no pods.
		reason, message = initializedReasonNotReleased, fmt.Sprintf("node %s still has the %s taint", node.Name, v1.UnregisteredTaintKey)
	}
	if reason == "" {
		if taints := startupTaintsLeft(claim, node); len(taints) > 0 {
			reason, message = initializedReasonStartupTaints, "startup taints not yet removed: "+strings.Join(taints, ", ")
		} else if missing := missingResources(claim, node); len(missing) > 0 {
			reason, message = initializedReasonResources, "not yet in the node's allocatable: "+strings.Join(missing, ", ")
		}
	}
	if reason != "" {
		timeout := registrationTimeout(claim, i.defaultTimeout)
		waited := time.Duration(0)
		if c := conditions.Get(claim.Status.Conditions, v1.ConditionRegistered); c != nil {
			waited = i.clock.Since(c.LastTransitionTime.Time)
		}
		if waited >= timeout {
			i.events.initializationTimeout(claim, timeout.String(), message)
			return abandon(ctx, i.client, claim, abandonInitTimeout, "initialization timed out, deleting nodeclaim",
				"timeout", timeout.String(), "why", message)
		}
		conditions.Set(&claim.Status.Conditions, i.clock, claim.Generation, v1.ConditionInitialized,
			metav1.ConditionUnknown, reason, message)
		// The Node watch brings the claim back when the Node changes; the
		// requeue, at the timeout, when it does not.
		return reconcile.Result{RequeueAfter: timeout - waited}, false, nil
	}
	if node.Labels[v1.LabelInitialized] != "true" {
		stored := node.DeepCopy()
		if node.Labels == nil {
			node.Labels = map[string]string{}
		}
		node.Labels[v1.LabelInitialized] = "true"
		if err := i.client.Patch(ctx, node, client.MergeFrom(stored)); err != nil {
			return reconcile.Result{}, false, fmt.Errorf("labelling node %s initialized: %w", node.Name, err)
		}
	}
	conditions.Set(&claim.Status.Conditions, i.clock, claim.Generation, v1.ConditionInitialized,
		metav1.ConditionTrue, initializedReasonOK, "")
	afterStatusStored(ctx, func() {
		initializedTotal.WithLabelValues(nodePool(claim)).Inc()
		i.events.initialized(claim, node)
		log.FromContext(ctx).Info("initialized nodeclaim", "node", node.Name)
	})
	return reconcile.Result{}, false, nil
}

func nodeReady(node *corev1.Node) bool {
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// startupTaintsLeft names the claim's startup taints still on the node.
func startupTaintsLeft(claim *v1.NodeClaim, node *corev1.Node) []string {
	var out []string
	for _, t := range claim.Spec.StartupTaints {
		if hasTaint(node.Spec.Taints, t) {
			out = append(out, t.ToString())
		}
	}
	return out
}

// missingResources names the extended resources the claim's pods request that
// the node does not advertise yet (device plugins register after the
// kubelet), or advertises less of than they request (a failed GPU: the pods
// bought for it would never fit, and the registration timeout gives it up).
func missingResources(claim *v1.NodeClaim, node *corev1.Node) []string {
	var out []string
	for name, want := range claim.Spec.Resources.Requests {
		if !isExtended(name) {
			continue
		}
		if q, ok := node.Status.Allocatable[name]; !ok || q.IsZero() || q.Cmp(want) < 0 {
			out = append(out, string(name))
		}
	}
	sort.Strings(out)
	return out
}

// isExtended reports whether a resource comes from a device plugin rather
// than the kubelet: a domain-qualified name outside kubernetes.io.
func isExtended(name corev1.ResourceName) bool {
	s := string(name)
	return strings.Contains(s, "/") && !strings.Contains(s, "kubernetes.io/") && !strings.HasPrefix(s, "requests.")
}
