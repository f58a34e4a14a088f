package index

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// recordingIndexer answers like an informer cache: a second index of the same name conflicts.
type recordingIndexer struct {
	fields map[string]bool
	fail   error
}

func (r *recordingIndexer) IndexField(_ context.Context, obj client.Object, field string, _ client.IndexerFunc) error {
	if r.fail != nil {
		return r.fail
	}
	key := fmt.Sprintf("%T/%s", obj, field)
	if r.fields[key] {
		return errors.New("indexer conflict: map[field:" + field + ":{}]")
	}
	r.fields[key] = true
	return nil
}

func TestRegisterIsRepeatable(t *testing.T) {
	idx := &recordingIndexer{fields: map[string]bool{}}
	for i := range 2 {
		if err := Register(context.Background(), idx); err != nil {
			t.Fatalf("registration %d: %v", i, err)
		}
	}
	if err := Register(context.Background(), &recordingIndexer{fail: errors.New("cache stopped")}); err == nil {
		t.Fatal("other errors must be returned")
	}
}

func TestExtractors(t *testing.T) {
	got := map[string][]string{}
	objs := map[string]client.Object{
		"Node":             &corev1.Node{Spec: corev1.NodeSpec{ProviderID: "fake://a"}},
		"Pod":              &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n1"}},
		"NodeClaim":        &v1.NodeClaim{Status: v1.NodeClaimStatus{ProviderID: "fake://b"}},
		"VolumeAttachment": &storagev1.VolumeAttachment{Spec: storagev1.VolumeAttachmentSpec{NodeName: "n2"}},
	}
	empty := map[string]client.Object{
		"Node": &corev1.Node{}, "Pod": &corev1.Pod{}, "NodeClaim": &v1.NodeClaim{}, "VolumeAttachment": &storagev1.VolumeAttachment{},
	}
	kind := func(o client.Object) string { return strings.TrimPrefix(fmt.Sprintf("%T", o), "*") }
	for _, idx := range Funcs() {
		k := kind(idx.Object)
		k = k[strings.LastIndex(k, ".")+1:]
		got[k+" "+idx.Field] = idx.Extract(objs[k])
		if vals := idx.Extract(empty[k]); len(vals) != 0 {
			t.Errorf("%s %s: an unset field must not be indexed, got %v", k, idx.Field, vals)
		}
	}
	want := map[string][]string{"Node " + NodeProviderID: {"fake://a"}, "Pod " + PodNodeName: {"n1"},
		"NodeClaim " + NodeClaimProviderID: {"fake://b"}, "VolumeAttachment " + VolumeAttachmentNodeName: {"n2"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("extracted (-want +got):\n%s", diff)
	}
}
