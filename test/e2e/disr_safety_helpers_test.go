//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// dsfSample is how often the safety watchers look at the cluster: well under
// the 1 s disruption interval, so no disruption step falls between samples.
const dsfSample = 100 * time.Millisecond

// dsfHoldLabel on a pod keeps it Running under kwok (see dsfHoldJobPodsRunning).
const dsfHoldLabel = "e2e.stowage.dev/hold-running"

// dsfHoldJobPodsRunning stops kwok from completing Job pods labelled
// dsfHoldLabel. kwok's fast pod stages mark every Job-owned pod Succeeded as
// soon as it runs, so without this no Job would still be running when the
// disruption controller looks. A ValidatingAdmissionPolicy refuses the status
// change; kwok does not retry refused patches, so the pod stays Running. It
// returns once the API server enforces the policy.
func dsfHoldJobPodsRunning(t *testing.T, c client.Client, ns string) {
	t.Helper()
	ctx := context.Background()
	const name = "e2e-hold-job-pods-running"
	const msg = "e2e: pods labelled " + dsfHoldLabel + " stay running"
	disrCreate(t, c,
		&admissionregistrationv1.ValidatingAdmissionPolicy{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				FailurePolicy: ptr.To(admissionregistrationv1.Fail),
				MatchConstraints: &admissionregistrationv1.MatchResources{
					ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
						RuleWithOperations: admissionregistrationv1.RuleWithOperations{
							Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
							Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
								Resources: []string{"pods/status"}},
						},
					}},
				},
				Validations: []admissionregistrationv1.Validation{{
					Expression: fmt.Sprintf("!has(object.metadata.labels) || !(%q in object.metadata.labels) || "+
						"!has(object.status.phase) || object.status.phase != 'Succeeded'", dsfHoldLabel),
					Message: msg,
				}},
			},
		},
		&admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		},
		// No scheduler serves this name, so the probe stays Pending and
		// provisioning, which only acts on pods the scheduler gave up on,
		// ignores it.
		&corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hold-probe", Labels: map[string]string{dsfHoldLabel: "true"}},
			Spec: corev1.PodSpec{SchedulerName: "e2e-none", TerminationGracePeriodSeconds: ptr.To[int64](0),
				Containers: []corev1.Container{{Name: "main", Image: "example/app:1"}}},
		})
	disrEventually(t, "the hold-running admission policy enforced", func(ctx context.Context) (bool, error) {
		probe := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "hold-probe"}, probe); err != nil {
			return false, err
		}
		probe.Status.Phase = corev1.PodSucceeded
		err := c.Status().Update(ctx, probe, client.DryRunAll)
		switch {
		case err == nil:
			return false, errors.New("a dry-run completion of the probe pod was admitted")
		case strings.Contains(err.Error(), msg):
			return true, nil
		default:
			return false, err
		}
	})
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hold-probe"}}
	if err := c.Delete(ctx, probe); client.IgnoreNotFound(err) != nil {
		t.Fatalf("deleting pod %s/hold-probe: %v", ns, err)
	}
}

// dsfJob is a one-pod Job selecting the pool whose pod kwok keeps Running
// (dsfHoldJobPodsRunning), so the Job stays active.
func dsfJob(ns, name, pool, cpu string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, dsfHoldLabel: "true"}},
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					NodeSelector:                  map[string]string{v1.LabelNodePool: pool},
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{Name: "main", Image: "example/train:1",
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("256Mi")}}}},
				},
			},
		},
	}
}

// dsfPDB covers the app's pods with maxUnavailable.
func dsfPDB(ns, app string, maxUnavailable int) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: ptr.To(intstr.FromInt32(int32(maxUnavailable))),
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
		},
	}
}

// dsfClaim is a NodeClaim for one on-demand c5.large in the pool, bought by
// hand so the test decides which node each pod lands on.
func dsfClaim(name, pool string, annotations map[string]string) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodePool: pool}, Annotations: annotations},
		Spec: v1.NodeClaimSpec{ExpireAfter: v1.Never, Offerings: []v1.OfferingChoice{
			{InstanceType: "c5.large", Zone: "us-east-1a", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.085"}}},
	}
}

// dsfClaimReady waits for the named claims to be Ready and returns their node names.
func dsfClaimReady(t *testing.T, c client.Client, names ...string) map[string]string {
	t.Helper()
	nodes := map[string]string{}
	disrEventually(t, fmt.Sprintf("nodeclaims %v Ready", names), func(ctx context.Context) (bool, error) {
		for _, name := range names {
			claim := &v1.NodeClaim{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, claim); err != nil {
				return false, err
			}
			if !disrReady(claim) || claim.Status.NodeName == "" {
				return false, nil
			}
			nodes[name] = claim.Status.NodeName
		}
		return true, nil
	})
	return nodes
}

// dsfPodsOn reports whether want pods of the app are Running, all on node.
func dsfPodsOn(ctx context.Context, c client.Client, ns, app, node string, want int) (bool, error) {
	pods, running, err := disrPods(ctx, c, ns, app)
	if err != nil || running != want {
		return false, err
	}
	for _, p := range pods {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && p.Spec.NodeName != node {
			return false, nil
		}
	}
	return true, nil
}

// dsfDisrupted says why a node is being disrupted, or "" when it is not:
// tainted by disruption or termination, or being deleted. Nodes rather than
// NodeClaims are counted: disruption taints a node before it deletes the
// claim, and a claim outlives its node and machine for a moment while its
// finalizer is removed, when nothing of it is left to disrupt.
func dsfDisrupted(node *corev1.Node) string {
	if node.DeletionTimestamp != nil {
		return "deleting"
	}
	for _, t := range node.Spec.Taints {
		if t.Key == v1.DisruptedTaintKey {
			return "tainted " + v1.DisruptedTaintKey
		}
	}
	return ""
}

// dsfPoolNodes lists the nodes of a pool in one read, so every sample is
// one consistent view of the pool.
func dsfPoolNodes(ctx context.Context, c client.Client, pool string) ([]corev1.Node, error) {
	list := &corev1.NodeList{}
	if err := c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		return nil, fmt.Errorf("listing nodes of nodepool %s: %w", pool, err)
	}
	return list.Items, nil
}

// dsfWatcher samples the cluster in the background until stopped. check
// returns a violation ("" when none) and whether watching is over; the first
// violation is kept. Sampling errors are retried on the next sample: an
// assertion on the outcome follows every watch.
type dsfWatcher struct {
	mu        sync.Mutex
	violation string
	samples   int
	stop      context.CancelFunc
	done      chan struct{}
}

func dsfWatch(check func(ctx context.Context) (violation string, over bool, err error)) *dsfWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &dsfWatcher{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		_ = wait.PollUntilContextCancel(ctx, dsfSample, true, func(ctx context.Context) (bool, error) {
			v, over, err := check(ctx)
			if err != nil {
				return false, nil
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.samples++
			if v != "" && w.violation == "" {
				w.violation = v
			}
			return over || w.violation != "", nil
		})
	}()
	return w
}

// Stop ends the watch and returns the first violation and the number of
// samples taken.
func (w *dsfWatcher) Stop() (string, int) {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.violation, w.samples
}

// dsfWatchReplaceBeforeDrain watches that the app's pods stay Running on the
// old claim's node, and the old claim stays, until a replacement claim of the
// pool is Ready.
func dsfWatchReplaceBeforeDrain(c client.Client, pool, ns, app string, old *v1.NodeClaim, pods int) *dsfWatcher {
	return dsfWatch(func(ctx context.Context) (string, bool, error) {
		list := &v1.NodeClaimList{}
		if err := c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
			return "", false, err
		}
		oldSeen := false
		for i := range list.Items {
			cl := &list.Items[i]
			if cl.Name != old.Name && disrReady(cl) {
				return "", true, nil // a replacement is Ready: draining may begin
			}
			if cl.Name == old.Name {
				oldSeen = true
				if cl.DeletionTimestamp != nil {
					return fmt.Sprintf("nodeclaim %s was deleted before any replacement was Ready", old.Name), true, nil
				}
			}
		}
		if !oldSeen {
			return fmt.Sprintf("nodeclaim %s was gone before any replacement was Ready", old.Name), true, nil
		}
		ok, err := dsfPodsOn(ctx, c, ns, app, old.Status.NodeName, pods)
		if err != nil {
			return "", false, err
		}
		if !ok {
			return fmt.Sprintf("pods of %s left node %s before any replacement was Ready", app, old.Status.NodeName), true, nil
		}
		return "", false, nil
	})
}

// dsfGone reports whether the named claim no longer exists.
func dsfGone(ctx context.Context, c client.Client, name string) (bool, error) {
	err := c.Get(ctx, client.ObjectKey{Name: name}, &v1.NodeClaim{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, err
}
