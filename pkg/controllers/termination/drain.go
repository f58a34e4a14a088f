package termination

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// disruptedTaint cordons a draining Node.
var disruptedTaint = corev1.Taint{Key: v1.DisruptedTaintKey, Effect: corev1.TaintEffectNoSchedule}

// Eviction outcomes, the values of the outcome metric label.
const (
	outcomeEvicted = "evicted"
	outcomeBlocked = "blocked"
	outcomeDeleted = "deleted"
	outcomeError   = "error"
)

// drainer moves pods off a Node through the Eviction API, so
// PodDisruptionBudgets decide the pace, until the claim's
// terminationGracePeriod runs out; then it deletes what is left.
type drainer struct {
	client client.Client
	clock  clock.Clock
	events *recorder
}

// drain makes one pass and reports whether no pod that must leave is left.
func (d *drainer) drain(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) (bool, error) {
	pods := &corev1.PodList{}
	if err := d.client.List(ctx, pods, client.MatchingFields{index.PodNodeName: node.Name}); err != nil {
		return false, fmt.Errorf("listing pods on node %s: %w", node.Name, err)
	}
	expired := graceExpired(d.clock, claim)
	var regular, critical, blocked []*corev1.Pod
	leaving := 0
	for i := range pods.Items {
		pod := &pods.Items[i]
		switch {
		case !mustLeave(pod):
		case !pod.DeletionTimestamp.IsZero():
			// Already going; past the grace period it no longer holds up the machine.
			if !expired {
				leaving++
			}
		case pod.Annotations[v1.AnnotationDoNotDisrupt] == "true" && !expired:
			blocked = append(blocked, pod)
		case isCritical(pod):
			critical = append(critical, pod)
		default:
			regular = append(regular, pod)
		}
	}
	for _, pod := range blocked {
		d.events.doNotDisrupt(claim, pod)
	}
	if expired {
		return true, d.deleteAll(ctx, claim, append(regular, critical...))
	}
	// Critical pods (DNS caches, log shippers without a DaemonSet) leave last,
	// so the workloads leaving first can still use them.
	batch := regular
	if len(batch) == 0 {
		batch = critical
	}
	var errs []error
	for _, pod := range batch {
		if err := d.evict(ctx, claim, pod); err != nil {
			errs = append(errs, err)
		}
	}
	remaining := len(regular) + len(critical) + len(blocked) + leaving
	if remaining > 0 {
		log.FromContext(ctx).V(1).Info("draining", "node", node.Name, "evicting", len(batch),
			"doNotDisrupt", len(blocked), "terminating", leaving)
	}
	return remaining == 0, errors.Join(errs...)
}

// evict asks the API server to evict pod; a PDB that forbids it answers 429
// and the pod is tried again on the next pass.
func (d *drainer) evict(ctx context.Context, claim *v1.NodeClaim, pod *corev1.Pod) error {
	eviction := &policyv1.Eviction{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace},
		// The UID precondition keeps a same-named replacement pod from being evicted instead.
		DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}},
	}
	err := d.client.SubResource("eviction").Create(ctx, pod, eviction)
	switch {
	case err == nil:
		evictionsTotal.WithLabelValues(outcomeEvicted).Inc()
		d.events.evicted(claim, pod)
		return nil
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return nil // gone, or replaced by a pod of the same name
	case apierrors.IsTooManyRequests(err):
		evictionsTotal.WithLabelValues(outcomeBlocked).Inc()
		d.events.evictionBlocked(claim, pod, err)
		log.FromContext(ctx).V(1).Info("eviction refused by disruption budget", "pod", klog.KObj(pod))
		return nil
	default:
		evictionsTotal.WithLabelValues(outcomeError).Inc()
		return fmt.Errorf("evicting pod %s: %w", klog.KObj(pod), err)
	}
}

// deleteAll deletes pods outright once the grace period is over.
func (d *drainer) deleteAll(ctx context.Context, claim *v1.NodeClaim, pods []*corev1.Pod) error {
	var errs []error
	for _, pod := range pods {
		if err := d.client.Delete(ctx, pod); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting pod %s: %w", klog.KObj(pod), err))
			continue
		}
		evictionsTotal.WithLabelValues(outcomeDeleted).Inc()
		d.events.forceDeleted(claim, pod)
	}
	if len(pods) > 0 {
		log.FromContext(ctx).Info("termination grace period elapsed, deleted remaining pods", "pods", len(pods))
	}
	return errors.Join(errs...)
}

// graceExpired reports whether the claim's terminationGracePeriod, counted
// from the start of its deletion, has run out. Without one, nothing expires:
// do-not-disrupt pods and PDBs may hold the machine indefinitely.
func graceExpired(clk clock.PassiveClock, claim *v1.NodeClaim) bool {
	if claim.Spec.TerminationGracePeriod == nil || claim.DeletionTimestamp.IsZero() {
		return false
	}
	return !clk.Now().Before(claim.DeletionTimestamp.Add(claim.Spec.TerminationGracePeriod.Duration))
}

// mustLeave reports whether a pod has to be evicted before the machine goes.
// DaemonSet and mirror pods die with the node, pods that tolerate the
// disrupted taint asked to stay, and finished pods hold nothing.
func mustLeave(pod *corev1.Pod) bool {
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
	}
	for _, ref := range pod.OwnerReferences {
		if ref.Kind == "DaemonSet" && ref.Controller != nil && *ref.Controller {
			return false
		}
	}
	for i := range pod.Spec.Tolerations {
		if pod.Spec.Tolerations[i].ToleratesTaint(klog.Background(), &disruptedTaint, false) {
			return false
		}
	}
	return true
}

func isCritical(pod *corev1.Pod) bool {
	switch pod.Spec.PriorityClassName {
	case "system-cluster-critical", "system-node-critical":
		return true
	}
	return false
}
