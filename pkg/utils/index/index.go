// Package index holds the cache field indexes Stowage's controllers look
// objects up by, so every controller uses the same names.
package index

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Field index names. They match the API server's own field selectors where
// one exists, so the same List works against the cache and the API server.
const (
	// NodeProviderID indexes Nodes by spec.providerID.
	NodeProviderID = "spec.providerID"
	// PodNodeName indexes Pods by spec.nodeName.
	PodNodeName = "spec.nodeName"
	// NodeClaimProviderID indexes NodeClaims by status.providerID.
	NodeClaimProviderID = "status.providerID"
	// VolumeAttachmentNodeName indexes VolumeAttachments by spec.nodeName.
	VolumeAttachmentNodeName = "spec.nodeName"
)

// Funcs returns each index's object and extractor, for the manager's cache
// and for fake clients in tests.
func Funcs() []Index {
	return []Index{
		{Object: &corev1.Node{}, Field: NodeProviderID, Extract: func(o client.Object) []string {
			return nonEmpty(o.(*corev1.Node).Spec.ProviderID)
		}},
		{Object: &corev1.Pod{}, Field: PodNodeName, Extract: func(o client.Object) []string {
			return nonEmpty(o.(*corev1.Pod).Spec.NodeName)
		}},
		{Object: &v1.NodeClaim{}, Field: NodeClaimProviderID, Extract: func(o client.Object) []string {
			return nonEmpty(o.(*v1.NodeClaim).Status.ProviderID)
		}},
		{Object: &storagev1.VolumeAttachment{}, Field: VolumeAttachmentNodeName, Extract: func(o client.Object) []string {
			return nonEmpty(o.(*storagev1.VolumeAttachment).Spec.NodeName)
		}},
	}
}

// Index is one field index.
type Index struct {
	Object  client.Object
	Field   string
	Extract client.IndexerFunc
}

// Register adds every index to the manager's cache. Several controllers call
// it on the same manager, and other packages may register an index of the
// same name and meaning; the informer reports that as a conflict, which is
// harmless here because the existing index extracts the same value.
func Register(ctx context.Context, indexer client.FieldIndexer) error {
	for _, idx := range Funcs() {
		if err := indexer.IndexField(ctx, idx.Object, idx.Field, idx.Extract); err != nil &&
			!strings.Contains(err.Error(), "indexer conflict") {
			return fmt.Errorf("indexing %T by %s: %w", idx.Object, idx.Field, err)
		}
	}
	return nil
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
