package manifest

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// skipReason says which pods are left out and why.
type skipReason struct{ what, why string }

// The pods the controller never plans (provisioning.provisionable), read from
// the manifest alone: a manifest's pods carry no scheduler conditions, so a
// gated pod is known by its gates rather than by the scheduler's verdict.
var (
	skipFinished = skipReason{"that finished (status.phase Succeeded or Failed)", "no machine is needed for them"}
	skipDeleting = skipReason{"being deleted (metadata.deletionTimestamp)", "no machine is needed for them"}
	skipBound    = skipReason{"bound to a node (spec.nodeName)",
		"they already run there, so no machine is bought for them (simulate reads no Nodes, so the room left on theirs is not used for other pods either)"}
	skipGated = skipReason{"held by scheduling gates (spec.schedulingGates)",
		"neither the scheduler nor Stowage places them until the gates are removed"}
	skipDaemonSet = skipReason{"made by a DaemonSet",
		"they run on every matching node; give simulate the DaemonSet to count them as overhead on each new node"}
	skipSuspended = skipReason{"of suspended Jobs (spec.suspend)",
		"the Job controller makes no pods until the Job is resumed (Kueue resumes a queued Job when it admits it)"}
)

// podSkipReason says why a Pod object needs no new machine, or nil when it
// is pending and should be planned.
func podSkipReason(p *corev1.Pod) *skipReason {
	switch {
	case scheduling.Finished(p):
		return &skipFinished
	case p.DeletionTimestamp != nil:
		return &skipDeleting
	case scheduling.DaemonSetPod(p):
		return &skipDaemonSet
	}
	return templateSkipReason(&p.Spec)
}

// templateSkipReason says why the pods of a spec are not planned, or nil.
func templateSkipReason(spec *corev1.PodSpec) *skipReason {
	switch {
	case spec.NodeName != "":
		return &skipBound
	case len(spec.SchedulingGates) > 0:
		return &skipGated
	}
	return nil
}

// skip counts n pods of obj left out for reason r.
func (d *decoder) skip(obj string, r skipReason, n int) {
	for _, s := range d.loader.skipped {
		if s.reason == r {
			s.pods += n
			return
		}
	}
	d.loader.skipped = append(d.loader.skipped, &skipped{reason: r, pods: n, first: d.where(obj)})
}
