// Package steer points pods at the node planned for them by setting their
// status.nominatedNodeName: the kube-scheduler tries that node first for
// them, and counts them there when it places any other pod on the node.
package steer

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Pods sets status.nominatedNodeName to node on each pod that has another
// value, and returns how many it changed. Pods that are gone are skipped.
// pods are not modified.
func Pods(ctx context.Context, c client.Client, pods []*corev1.Pod, node string) (int, error) {
	var errs []error
	n := 0
	for _, pod := range pods {
		if pod.Status.NominatedNodeName == node || pod.Spec.NodeName != "" {
			continue
		}
		patched := pod.DeepCopy()
		patched.Status.NominatedNodeName = node
		err := c.Status().Patch(ctx, patched, client.MergeFrom(pod))
		switch {
		case err == nil:
			n++
		case apierrors.IsNotFound(err):
		default:
			errs = append(errs, fmt.Errorf("setting nominatedNodeName of pod %s: %w", klog.KObj(pod), err))
		}
	}
	return n, errors.Join(errs...)
}
