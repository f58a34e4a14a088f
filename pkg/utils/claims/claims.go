// Package claims looks up the Node of a NodeClaim and the NodeClaim of a Node
// through the cache's field indexes (see package index).
package claims

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/index"
)

// NodeFor returns the claim's Node, or nil when none has registered. It
// prefers status.nodeName and falls back to the Node whose spec.providerID
// is the claim's, so it also works before registration was recorded.
func NodeFor(ctx context.Context, c client.Reader, claim *v1.NodeClaim) (*corev1.Node, error) {
	if claim.Status.NodeName != "" {
		node := &corev1.Node{}
		err := c.Get(ctx, client.ObjectKey{Name: claim.Status.NodeName}, node)
		if err == nil && (claim.Status.ProviderID == "" || node.Spec.ProviderID == claim.Status.ProviderID) {
			return node, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("getting node %s of nodeclaim %s: %w", claim.Status.NodeName, claim.Name, err)
		}
	}
	if claim.Status.ProviderID == "" {
		return nil, nil
	}
	return NodeByProviderID(ctx, c, claim.Status.ProviderID)
}

// ErrManyNodes is wrapped when more than one Node carries a providerID.
var ErrManyNodes = errors.New("more than one node for one machine")

// NodeByProviderID returns the Node with spec.providerID == providerID, or nil.
func NodeByProviderID(ctx context.Context, c client.Reader, providerID string) (*corev1.Node, error) {
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes, client.MatchingFields{index.NodeProviderID: providerID}); err != nil {
		return nil, fmt.Errorf("listing nodes with providerID %s: %w", providerID, err)
	}
	switch len(nodes.Items) {
	case 0:
		return nil, nil
	case 1:
		return &nodes.Items[0], nil
	default:
		return nil, fmt.Errorf("%w: %d nodes have providerID %s", ErrManyNodes, len(nodes.Items), providerID)
	}
}

// ForNode returns the NodeClaim a Node belongs to, or nil. The providerID is
// authoritative; the stowage.dev/nodeclaim label is used when the node has no
// providerID yet.
func ForNode(ctx context.Context, c client.Reader, node *corev1.Node) (*v1.NodeClaim, error) {
	if node.Spec.ProviderID != "" {
		list := &v1.NodeClaimList{}
		if err := c.List(ctx, list, client.MatchingFields{index.NodeClaimProviderID: node.Spec.ProviderID}); err != nil {
			return nil, fmt.Errorf("listing nodeclaims with providerID %s: %w", node.Spec.ProviderID, err)
		}
		if len(list.Items) > 0 {
			return &list.Items[0], nil
		}
	}
	name := node.Labels[v1.LabelNodeClaim]
	if name == "" {
		return nil, nil
	}
	claim := &v1.NodeClaim{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, claim); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("getting nodeclaim %s of node %s: %w", name, node.Name, err)
	}
	if claim.Status.ProviderID != "" && node.Spec.ProviderID != "" && claim.Status.ProviderID != node.Spec.ProviderID {
		// The label names a claim that launched a different machine.
		return nil, nil
	}
	return claim, nil
}
