package termination

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
)

// nodeTerminator handles a deleted Node that carries Stowage's finalizer
// (someone ran kubectl delete node): it deletes the Node's claim, whose
// termination drains the Node, deletes the machine and releases this
// finalizer. Keeping one drain path means a Node is never half-drained by two.
type nodeTerminator struct {
	client client.Client
	events *recorder
}

func (t *nodeTerminator) Reconcile(ctx context.Context, node *corev1.Node) (reconcile.Result, error) {
	if node.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(node, v1.TerminationFinalizer) {
		return reconcile.Result{}, nil
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("node", klog.KObj(node)))
	claim, err := claims.ForNode(ctx, t.client, node)
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("terminating node %s: %w", node.Name, err)
	}
	if claim != nil {
		if claim.DeletionTimestamp.IsZero() {
			if err := t.client.Delete(ctx, claim); client.IgnoreNotFound(err) != nil {
				return reconcile.Result{}, fmt.Errorf("deleting nodeclaim %s of deleted node %s: %w", claim.Name, node.Name, err)
			}
			t.events.nodeDeleted(node, claim)
			log.FromContext(ctx).Info("node deleted, deleting its nodeclaim", "nodeclaim", claim.Name)
		}
		// The claim's termination removes this finalizer once the machine is gone.
		return reconcile.Result{}, nil
	}
	// No claim: it finished terminating, or never existed. A machine left
	// behind has no owner and garbage collection deletes it.
	if err := removeNodeFinalizer(ctx, t.client, node); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("removing finalizer from node %s: %w", node.Name, err))
	}
	return reconcile.Result{}, nil
}

// removeNodeFinalizer removes Stowage's finalizer from the Node with a JSON
// patch that first tests it is still where it was read. Under a
// resourceVersion lock most attempts failed against the kubelet's status
// updates (about 300 logged errors while 300 nodes drifted), and a merge
// patch of the whole list could drop a finalizer someone added since.
func removeNodeFinalizer(ctx context.Context, c client.Client, node *corev1.Node) error {
	i := slices.Index(node.Finalizers, v1.TerminationFinalizer)
	if i < 0 {
		return nil
	}
	path := fmt.Sprintf("/metadata/finalizers/%d", i)
	ops, err := json.Marshal([]map[string]any{
		{"op": "test", "path": path, "value": v1.TerminationFinalizer},
		{"op": "remove", "path": path},
	})
	if err != nil {
		return err
	}
	return c.Patch(ctx, node, client.RawPatch(types.JSONPatchType, ops))
}
