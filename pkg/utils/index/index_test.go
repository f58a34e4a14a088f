package index

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
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
	if r.fields[field] {
		return errors.New("indexer conflict: map[field:" + field + ":{}]")
	}
	r.fields[field] = true
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
		NodeProviderID:      &corev1.Node{Spec: corev1.NodeSpec{ProviderID: "fake://a"}},
		PodNodeName:         &corev1.Pod{Spec: corev1.PodSpec{NodeName: "n1"}},
		NodeClaimProviderID: &v1.NodeClaim{Status: v1.NodeClaimStatus{ProviderID: "fake://b"}},
	}
	empty := map[string]client.Object{
		NodeProviderID: &corev1.Node{}, PodNodeName: &corev1.Pod{}, NodeClaimProviderID: &v1.NodeClaim{},
	}
	for _, idx := range Funcs() {
		got[idx.Field] = idx.Extract(objs[idx.Field])
		if vals := idx.Extract(empty[idx.Field]); len(vals) != 0 {
			t.Errorf("%s: an unset field must not be indexed, got %v", idx.Field, vals)
		}
	}
	want := map[string][]string{NodeProviderID: {"fake://a"}, PodNodeName: {"n1"}, NodeClaimProviderID: {"fake://b"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("extracted (-want +got):\n%s", diff)
	}
}
