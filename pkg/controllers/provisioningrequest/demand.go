package provisioningrequest

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/controllers/provisioning"
)

// Demands implements provisioning.DemandSource: the requests that want
// capacity now, in key order.
func (c *Controller) Demands() []provisioning.Demand {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []provisioning.Demand
	for _, e := range c.entries {
		if e.phase == phaseWanted && e.outcome == nil && e.demand.Pods != nil {
			out = append(out, e.demand)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// Planned implements provisioning.DemandSource. It runs in the provisioning
// pass, so it only records the outcome, books what the pass found while the
// request still waits for it (under the lock release takes, so a request
// deleted during the pass keeps no booking), and wakes its reconcile.
func (c *Controller) Planned(_ context.Context, key string, o provisioning.Outcome, book func()) {
	c.mu.Lock()
	e := c.entries[key]
	if e != nil && e.phase == phaseWanted && e.outcome == nil {
		e.outcome = &o
		if book != nil {
			book()
		}
	} else {
		e = nil
	}
	c.mu.Unlock()
	ns, name, ok := splitKey(key)
	if e == nil || !ok {
		return
	}
	select {
	case c.wake <- event.GenericEvent{Object: &provreqv1.ProvisioningRequest{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}}:
	default:
		// The queue is full; the request's periodic requeue picks it up.
	}
}

type missingTemplateError struct{ name string }

func (e *missingTemplateError) Error() string {
	return fmt.Sprintf("podtemplate %s not found", e.name)
}

// phantomPods stands in for the request's pods (see StandIns), reading its
// PodTemplates, and their RuntimeClasses, from the cluster.
func (c *Controller) phantomPods(ctx context.Context, pr *provreqv1.ProvisioningRequest) ([]*corev1.Pod, error) {
	runtimes := map[string]provisioning.Runtime{}
	return StandIns(pr, func(name string) (*corev1.PodTemplate, error) {
		tmpl := &corev1.PodTemplate{}
		err := c.client.Get(ctx, client.ObjectKey{Namespace: pr.Namespace, Name: name}, tmpl)
		if apierrors.IsNotFound(err) {
			return nil, &missingTemplateError{name: pr.Namespace + "/" + name}
		}
		if err != nil {
			return nil, fmt.Errorf("reading podtemplate %s/%s: %w", pr.Namespace, name, err)
		}
		if rc := tmpl.Template.Spec.RuntimeClassName; rc != nil && *rc != "" {
			// The real pods get their runtime's overhead, node selector and
			// tolerations at admission, or are rejected there.
			rt, ok := runtimes[*rc]
			if !ok {
				rt = provisioning.RuntimeOf(ctx, c.client, *rc)
				runtimes[*rc] = rt
			}
			if err := rt.Admit(&tmpl.Template.Spec); err != nil {
				return nil, fmt.Errorf("podtemplate %s/%s: %w", pr.Namespace, name, err)
			}
		}
		return tmpl, nil
	})
}

// StandIns are the pods a request asks capacity for: Count pods per pod set,
// shaped by its PodTemplate (found by template), all in one gang so they are
// planned at once, and annotated as consuming the request. `stowage
// simulate` plans requests with them too.
func StandIns(pr *provreqv1.ProvisioningRequest, template func(name string) (*corev1.PodTemplate, error)) ([]*corev1.Pod, error) {
	if len(pr.Spec.PodSets) == 0 {
		return nil, fmt.Errorf("spec.podSets is empty")
	}
	total := 0
	for i, ps := range pr.Spec.PodSets {
		if ps.Count < 1 {
			return nil, fmt.Errorf("spec.podSets[%d].count %d must be positive", i, ps.Count)
		}
		total += int(ps.Count)
	}
	gang := "provisioningrequest/" + pr.Name
	var out []*corev1.Pod
	for i, ps := range pr.Spec.PodSets {
		tmpl, err := template(ps.PodTemplateRef.Name)
		if err != nil {
			return nil, fmt.Errorf("spec.podSets[%d].podTemplateRef: %w", i, err)
		}
		for j := range int(ps.Count) {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{
					Namespace:   pr.Namespace,
					Name:        fmt.Sprintf("%s-%d-%d", pr.Name, i, j),
					UID:         types.UID(fmt.Sprintf("%s-%d-%d", pr.UID, i, j)),
					Labels:      copyMap(tmpl.Template.Labels),
					Annotations: copyMap(tmpl.Template.Annotations),
				},
				Spec:   *tmpl.Template.Spec.DeepCopy(),
				Status: corev1.PodStatus{Phase: corev1.PodPending},
			}
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[provreqv1.ConsumeAnnotation] = pr.Name
			p.Annotations[provreqv1.ClassAnnotation] = pr.Spec.ProvisioningClassName
			p.Annotations[v1.LabelPodGroup] = gang
			p.Annotations[v1.LabelPodGroupSize] = strconv.Itoa(total)
			if p.Labels != nil {
				// Stowage's gang key as a label would name another gang.
				delete(p.Labels, v1.LabelPodGroup)
				delete(p.Labels, v1.LabelPodGroupSize)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
