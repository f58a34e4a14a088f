// Package taints adds and removes a Node's taints without a resourceVersion
// lock. Node.spec.taints has no merge key, so any patch writes the whole
// list; these write it with a JSON patch that first tests the list is still
// the one read. Only a change to the taints fails the test: the kubelet's
// status updates, which made most locked attempts on busy nodes conflict,
// do not.
package taints

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ErrStale says the Node's taints changed since its copy was read, every
// time it was read again.
var ErrStale = errors.New("the node's taints changed since they were read")

// Add puts taint on the named Node unless one with its key and effect is
// there, and reports whether it added it.
func Add(ctx context.Context, c client.Client, name string, taint corev1.Taint) (bool, error) {
	return change(ctx, c, name, func(have []corev1.Taint) []corev1.Taint {
		if slices.ContainsFunc(have, func(t corev1.Taint) bool { return t.MatchTaint(&taint) }) {
			return nil
		}
		return append(slices.Clone(have), taint)
	})
}

// Remove takes every taint with key off the named Node and reports whether
// there was one. A Node that does not exist has none.
func Remove(ctx context.Context, c client.Client, name, key string) (bool, error) {
	changed, err := change(ctx, c, name, func(have []corev1.Taint) []corev1.Taint {
		if !slices.ContainsFunc(have, func(t corev1.Taint) bool { return t.Key == key }) {
			return nil
		}
		return slices.DeleteFunc(slices.Clone(have), func(t corev1.Taint) bool { return t.Key == key })
	})
	return changed, client.IgnoreNotFound(err)
}

// change reads the Node and writes edit's list in place of its taints; a
// nil list from edit means no change. A stale read (the cache behind the
// API server, or a taint added meanwhile) is read again after a short wait.
func change(ctx context.Context, c client.Client, name string, edit func([]corev1.Taint) []corev1.Taint) (bool, error) {
	changed := false
	err := retry.OnError(retry.DefaultBackoff, func(err error) bool { return errors.Is(err, ErrStale) }, func() error {
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
			return err
		}
		want := edit(node.Spec.Taints)
		if want == nil {
			return nil
		}
		if err := replace(ctx, c, node, want); err != nil {
			return err
		}
		changed = true
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("changing the taints of node %s: %w", name, err)
	}
	return changed, nil
}

// replace writes want as node's taints if they are still node's.
func replace(ctx context.Context, c client.Client, node *corev1.Node, want []corev1.Taint) error {
	var was any // JSON null: the list is absent, which is how the API stores an empty one
	if len(node.Spec.Taints) > 0 {
		was = node.Spec.Taints
	}
	ops := []map[string]any{{"op": "test", "path": "/spec/taints", "value": was}}
	if len(want) == 0 {
		ops = append(ops, map[string]any{"op": "remove", "path": "/spec/taints"})
	} else {
		// add replaces a member that exists and creates one that does not.
		ops = append(ops, map[string]any{"op": "add", "path": "/spec/taints", "value": want})
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return err
	}
	err = c.Patch(ctx, node, client.RawPatch(types.JSONPatchType, patch))
	if apierrors.IsInvalid(err) {
		// The API server answers a failed test with 422 Invalid.
		return fmt.Errorf("%w: %w", ErrStale, err)
	}
	return err
}
