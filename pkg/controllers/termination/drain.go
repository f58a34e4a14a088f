package termination

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// disruptedTaint cordons a draining Node.
var disruptedTaint = corev1.Taint{Key: v1.DisruptedTaintKey, Effect: corev1.TaintEffectNoSchedule}

// Eviction outcomes, the values of the outcome metric label.
const (
	outcomeEvicted = "evicted"
	outcomeBlocked = "blocked"
	// outcomeThrottled is a 429 from the API server's own load shedding
	// (API Priority and Fairness, max-in-flight): no budget said no.
	outcomeThrottled = "throttled"
	outcomeDeleted   = "deleted"
	outcomeError     = "error"
)

// drainer moves pods off a Node through the Eviction API, so
// PodDisruptionBudgets decide the pace, until the claim's deadline (its
// terminationGracePeriod, or the cloud's interruption) comes; each pod is
// deleted in time to stop before it.
type drainer struct {
	client client.Client
	clock  clock.Clock
	events *recorder
}

// Drain groups, in the order they leave: applications first, then the
// DaemonSet pods that serve them (log shippers flush what the applications
// wrote last), then system-critical pods, then system-critical DaemonSets.
const (
	groupApps = iota
	groupDaemons
	groupCritical
	groupCriticalDaemons
	numGroups
)

// defaultPodGrace is the grace period of a pod that does not set one.
const defaultPodGrace = 30 * time.Second

// drain makes one pass and reports whether no pod that must leave is left.
func (d *drainer) drain(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) (bool, error) {
	pods := &corev1.PodList{}
	if err := d.client.List(ctx, pods, client.MatchingFields{index.PodNodeName: node.Name}); err != nil {
		return false, fmt.Errorf("listing pods on node %s: %w", node.Name, err)
	}
	now := d.clock.Now()
	expired := graceExpired(d.clock, claim)
	var (
		groups     [numGroups][]*corev1.Pod
		leaving    [numGroups]int // already terminating
		held       [numGroups]int // do-not-disrupt
		blocked    []*corev1.Pod
		early, all []*corev1.Pod
	)
	for i := range pods.Items {
		pod := &pods.Items[i]
		g := drainGroup(pod)
		switch {
		case !mustLeave(pod):
		case !pod.DeletionTimestamp.IsZero():
			// Already going. Past its grace period (a finalizer or a dead
			// kubelet holds it) it no longer holds up the machine.
			if !expired && now.Before(pod.DeletionTimestamp.Time) {
				leaving[g]++
			}
		case expired:
			all = append(all, pod)
		case mustGoNow(now, claim, pod):
			early = append(early, pod)
		case v1.DoNotDisrupt(pod.Annotations):
			blocked = append(blocked, pod)
			held[g]++
		default:
			groups[g] = append(groups[g], pod)
		}
	}
	for _, pod := range blocked {
		d.events.doNotDisrupt(claim, pod)
	}
	if expired {
		if err := d.deleteAll(ctx, claim, all); err != nil {
			return false, &podErrors{err}
		}
		return true, nil
	}
	var errs []error
	if len(early) > 0 {
		// Deleted (not evicted) so each still gets its full grace period
		// before the claim's deadline.
		errs = append(errs, d.deleteAll(ctx, claim, early))
	}
	remaining := len(early)
	evicting, waiting := 0, false
	for g := range numGroups {
		n := len(groups[g]) + leaving[g] + held[g]
		remaining += n
		if waiting {
			// An earlier group is still on the node; this one waits its turn.
			continue
		}
		for _, pod := range groups[g] {
			if err := d.evict(ctx, claim, pod); err != nil {
				errs = append(errs, err)
			}
		}
		evicting, waiting = len(groups[g]), n > 0
	}
	if remaining > 0 {
		log.FromContext(ctx).V(1).Info("draining", "node", node.Name, "evicting", evicting,
			"doNotDisrupt", len(blocked), "deletedForGracePeriod", len(early))
	}
	if err := errors.Join(errs...); err != nil {
		return false, &podErrors{err}
	}
	return remaining == 0, nil
}

// podErrors are the drain's failures to evict or delete some pods (a
// webhook refusing an eviction, a pod under two PDBs): tried again at the
// drain's own pace, not with the controller's growing backoff, which would
// let a terminationGracePeriod deadline pass by minutes.
type podErrors struct{ err error }

func (e *podErrors) Error() string { return e.err.Error() }
func (e *podErrors) Unwrap() error { return e.err }

// drainGroup is the group a pod leaves with.
func drainGroup(pod *corev1.Pod) int {
	g := groupApps
	if scheduling.DaemonSetPod(pod) {
		g = groupDaemons
	}
	if isCritical(pod) {
		g += groupCritical
	}
	return g
}

// deadline is when the claim's machine goes whatever its pods' budgets say:
// the end of its terminationGracePeriod, counted from its deletion, or the
// deadline of the interruption the cloud announced for it (a spot
// reclaim's, recorded on the claim by the interruption controller),
// whichever comes first; zero when there is neither.
func deadline(claim *v1.NodeClaim) time.Time {
	var at time.Time
	if claim.Spec.TerminationGracePeriod != nil && !claim.DeletionTimestamp.IsZero() {
		at = claim.DeletionTimestamp.Add(claim.Spec.TerminationGracePeriod.Duration)
	}
	if _, reclaim := v1.ParseInterruption(claim.Annotations[v1.AnnotationInterruption]); !reclaim.IsZero() &&
		(at.IsZero() || reclaim.Before(at)) {
		at = reclaim
	}
	return at
}

// graceWithin shortens a pod's own grace period to what is left before the
// claim's deadline, so its shutdown ends before the machine does rather
// than being cut by it; at least a second, since zero would remove the pod
// from the API before its containers stop.
func graceWithin(now time.Time, claim *v1.NodeClaim, pod *corev1.Pod) []client.DeleteOption {
	end := deadline(claim)
	if end.IsZero() {
		return nil
	}
	grace := defaultPodGrace
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	left := end.Sub(now)
	if grace <= left {
		return nil
	}
	return []client.DeleteOption{client.GracePeriodSeconds(max(int64(left/time.Second), 1))}
}

// mustGoNow reports whether a pod has to be deleted now for it to finish
// its own grace period before the claim's deadline: a pod that needs 60 s
// to stop is deleted 60 s before it, PDBs or not, rather than killed with
// the machine (the budget is broken either way).
func mustGoNow(now time.Time, claim *v1.NodeClaim, pod *corev1.Pod) bool {
	end := deadline(claim)
	if end.IsZero() {
		return false
	}
	grace := defaultPodGrace
	if s := pod.Spec.TerminationGracePeriodSeconds; s != nil {
		grace = time.Duration(*s) * time.Second
	}
	return !now.Before(end.Add(-grace))
}

// evict asks the API server to evict pod; a PDB that forbids it answers 429
// and the pod is tried again on the next pass.
//
// The API server also answers 429 when API Priority and Fairness sheds
// load. The eviction API marks a budget's refusal with a DisruptionBudget
// cause (pkg/registry/core/pod/storage/eviction.go); a 429 without it is
// throttling: retried the same way, but neither reported nor counted as a
// budget holding the drain, which would send users looking for a PDB that
// is not there.
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
	case apierrors.IsTooManyRequests(err) && !apierrors.HasStatusCause(err, policyv1.DisruptionBudgetCause):
		evictionsTotal.WithLabelValues(outcomeThrottled).Inc()
		log.FromContext(ctx).V(1).Info("eviction throttled by the API server", "pod", klog.KObj(pod), "error", err.Error())
		return nil
	case apierrors.IsTooManyRequests(err):
		evictionsTotal.WithLabelValues(outcomeBlocked).Inc()
		d.events.evictionBlocked(claim, pod, err)
		log.FromContext(ctx).V(1).Info("eviction refused by disruption budget", "pod", klog.KObj(pod))
		return nil
	default:
		evictionsTotal.WithLabelValues(outcomeError).Inc()
		// Seen on the pod, as a refusal by a budget is: a pod under two
		// PDBs, or a webhook refusing, holds the drain as long as it lasts.
		d.events.evictionFailed(claim, pod, err)
		return fmt.Errorf("evicting pod %s: %w", klog.KObj(pod), err)
	}
}

// deleteAll deletes pods outright, bypassing PDBs, as the claim's deadline nears or once it has passed.
func (d *drainer) deleteAll(ctx context.Context, claim *v1.NodeClaim, pods []*corev1.Pod) error {
	var errs []error
	for _, pod := range pods {
		if err := d.client.Delete(ctx, pod, graceWithin(d.clock.Now(), claim, pod)...); client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting pod %s: %w", klog.KObj(pod), err))
			continue
		}
		evictionsTotal.WithLabelValues(outcomeDeleted).Inc()
		d.events.forceDeleted(claim, pod)
	}
	if len(pods) > 0 {
		log.FromContext(ctx).Info("deleted pods to stop before the nodeclaim's deadline", "pods", len(pods))
	}
	return errors.Join(errs...)
}

// graceExpired reports whether the claim's deadline (its
// terminationGracePeriod, or its interruption's) has passed. Without one,
// nothing expires: do-not-disrupt pods and PDBs may hold the machine
// indefinitely.
func graceExpired(clk clock.PassiveClock, claim *v1.NodeClaim) bool {
	end := deadline(claim)
	return !end.IsZero() && !clk.Now().Before(end)
}

// mustLeave reports whether a pod has to be evicted before the machine goes.
// Mirror pods belong to the kubelet, pods that tolerate the disrupted taint
// asked to stay (a DaemonSet would only put them back), and finished pods
// hold nothing. Other DaemonSet pods leave after the applications.
func mustLeave(pod *corev1.Pod) bool {
	if scheduling.Finished(pod) {
		return false
	}
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return false
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

// volumesAttached counts the volumes still attached to node that the
// machine must let go of first: deleting a machine with a volume attached
// leaves it attached until the cloud notices, and the pod that wants it on
// another node waits that long. Volumes of pods that stay to the end
// (DaemonSets tolerating the drain, mirror pods) are not waited for, and
// nothing is once the claim's deadline has passed.
func (d *drainer) volumesAttached(ctx context.Context, claim *v1.NodeClaim, node *corev1.Node) (int, error) {
	if graceExpired(d.clock, claim) {
		return 0, nil
	}
	vas := &storagev1.VolumeAttachmentList{}
	if err := d.client.List(ctx, vas, client.MatchingFields{index.VolumeAttachmentNodeName: node.Name}); err != nil {
		return 0, fmt.Errorf("listing volume attachments of node %s: %w", node.Name, err)
	}
	if len(vas.Items) == 0 {
		return 0, nil
	}
	staying, err := d.volumesOfStayingPods(ctx, node)
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range vas.Items {
		va := &vas.Items[i]
		// An inline volume's attachment (CSI migration of a pod's own
		// awsElasticBlockStore, say) names no PersistentVolume, so it cannot
		// be told apart from a staying pod's: not waited for, or a pod that
		// stays to the end would hold the machine forever.
		if pv := va.Spec.Source.PersistentVolumeName; pv == nil || staying[*pv] {
			continue
		}
		n++
	}
	return n, nil
}

// stuckDetachMargin is how long past its deletion deadline a terminating
// pod's volumes are still waited for: a healthy kubelet may still be
// unmounting.
const stuckDetachMargin = time.Minute

// volumesOfStayingPods names the PersistentVolumes that pods the drain
// leaves on the node use.
func (d *drainer) volumesOfStayingPods(ctx context.Context, node *corev1.Node) (map[string]bool, error) {
	pods := &corev1.PodList{}
	if err := d.client.List(ctx, pods, client.MatchingFields{index.PodNodeName: node.Name}); err != nil {
		return nil, fmt.Errorf("listing pods on node %s: %w", node.Name, err)
	}
	out := map[string]bool{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		// A pod stuck terminating (a dead kubelet) stays too: its volume is
		// not detached while it shows running containers, and the drain
		// already stopped waiting for it.
		stuck := !pod.DeletionTimestamp.IsZero() && d.clock.Since(pod.DeletionTimestamp.Time) > stuckDetachMargin
		if (mustLeave(pod) && !stuck) || scheduling.Finished(pod) {
			continue
		}
		for _, vol := range pod.Spec.Volumes {
			var claimName string
			switch {
			case vol.PersistentVolumeClaim != nil:
				claimName = vol.PersistentVolumeClaim.ClaimName
			case vol.Ephemeral != nil:
				claimName = pod.Name + "-" + vol.Name // the claim Kubernetes makes for a generic ephemeral volume
			default:
				continue
			}
			pvc := &corev1.PersistentVolumeClaim{}
			err := d.client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: claimName}, pvc)
			if err != nil {
				if client.IgnoreNotFound(err) == nil {
					continue
				}
				return nil, fmt.Errorf("getting persistentvolumeclaim %s/%s: %w", pod.Namespace, claimName, err)
			}
			if pvc.Spec.VolumeName != "" {
				out[pvc.Spec.VolumeName] = true
			}
		}
	}
	return out, nil
}
