// Package steer points pods at the node planned for them by setting their
// status.nominatedNodeName: the kube-scheduler tries that node first for
// them, and counts them there when it places any other pod on the node.
package steer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
