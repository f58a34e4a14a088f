// Package steer points pods at the node planned for them. Setting their
// status.nominatedNodeName makes the kube-scheduler try that node first for
// them and count them there when it places any other pod on the node; that
// is a hint the scheduler drops after every failed attempt. A reservation
// taint that only the planned pods tolerate keeps the node theirs.
package steer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Pods sets status.nominatedNodeName to node on each pod that is not bound
// in the given copy, and returns how many it patched. Pods that are gone or
// bound meanwhile are skipped. pods are not modified.
//
// The patch names the value outright instead of diffing against the given
// copy: the kube-scheduler clears the field after every failed attempt, so a
// cached copy may still show node when the API server holds "", and a diff
// would then be empty. Setting a value the pod already has is a no-op for
// the API server (no write, no watch event).
func Pods(ctx context.Context, c client.Client, pods []*corev1.Pod, node string) (int, error) {
	var errs []error
	n := 0
	for _, pod := range pods {
		if pod.Spec.NodeName != "" {
			continue
		}
		body := map[string]any{"status": map[string]any{"nominatedNodeName": node}}
		if pod.UID != "" {
			// The UID makes the patch fail on a namesake that replaced the pod.
			body["metadata"] = map[string]any{"uid": pod.UID}
		}
		patch, err := json.Marshal(body)
		if err != nil {
			return n, err
		}
		target := &corev1.Pod{}
		target.Namespace, target.Name = pod.Namespace, pod.Name
		err = c.Status().Patch(ctx, target, client.RawPatch(types.MergePatchType, patch))
		switch {
		case err == nil:
			n++
		case apierrors.IsNotFound(err), apierrors.IsConflict(err), apierrors.IsInvalid(err):
			// Gone, replaced, or bound since the copy was taken (the API
			// server refuses a nomination on a bound pod): nothing to steer.
		default:
			errs = append(errs, fmt.Errorf("setting nominatedNodeName of pod %s: %w", klog.KObj(pod), err))
		}
	}
	return n, errors.Join(errs...)
}

// Reservation is the taint that keeps a node for the pods planned onto it;
// only pods given Toleration(node) may be scheduled there until it goes.
func Reservation(node *corev1.Node, now time.Time) corev1.Taint {
	added := metav1.NewTime(now)
	return corev1.Taint{Key: v1.ReservedTaintKey, Value: string(node.UID), Effect: corev1.TaintEffectNoSchedule, TimeAdded: &added}
}

// Toleration lets a pod onto the node while it is reserved, and onto no
// other reserved node.
func Toleration(node *corev1.Node) corev1.Toleration {
	return corev1.Toleration{Key: v1.ReservedTaintKey, Operator: corev1.TolerationOpEqual, Value: string(node.UID),
		Effect: corev1.TaintEffectNoSchedule}
}

// Tolerate appends tol to the tolerations of each pod that is not bound and
// does not have it in the given copy, and returns how many it patched. The API
// server allows adding tolerations to a pod, never removing one: a pod whose
// copy shows none gets the whole list set, which the server refuses as
// invalid if tolerations were added since, and the pod is skipped (the caller
// tolerates again on its next pass). Pods gone, bound or replaced meanwhile
// are skipped too.
func Tolerate(ctx context.Context, c client.Client, pods []*corev1.Pod, tol corev1.Toleration) (int, error) {
	var errs []error
	n := 0
	for _, pod := range pods {
		if pod.Spec.NodeName != "" || slices.Contains(pod.Spec.Tolerations, tol) {
			continue
		}
		var ops []map[string]any
		if pod.UID != "" {
			ops = append(ops, map[string]any{"op": "test", "path": "/metadata/uid", "value": pod.UID})
		}
		if len(pod.Spec.Tolerations) == 0 {
			ops = append(ops, map[string]any{"op": "add", "path": "/spec/tolerations", "value": []corev1.Toleration{tol}})
		} else {
			ops = append(ops, map[string]any{"op": "add", "path": "/spec/tolerations/-", "value": tol})
		}
		patch, err := json.Marshal(ops)
		if err != nil {
			return n, err
		}
		target := &corev1.Pod{}
		target.Namespace, target.Name = pod.Namespace, pod.Name
		err = c.Patch(ctx, target, client.RawPatch(types.JSONPatchType, patch))
		switch {
		case err == nil:
			n++
		case apierrors.IsNotFound(err), apierrors.IsConflict(err), apierrors.IsInvalid(err):
		default:
			errs = append(errs, fmt.Errorf("adding the reservation toleration to pod %s: %w", klog.KObj(pod), err))
		}
	}
	return n, errors.Join(errs...)
}
