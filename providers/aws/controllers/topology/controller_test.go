package topology

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

type source struct {
	nodes map[string][]string
	asked int
	err   error
}

func (s *source) NetworkTopology(_ context.Context, ids []string) (map[string][]string, error) {
	s.asked++
	out := map[string][]string{}
	for _, id := range ids {
		if n, ok := s.nodes[id]; ok {
			out[id] = n
		}
	}
	return out, s.err
}

func claim(name, group, providerID string, launched time.Time) *v1.NodeClaim {
	return &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: group, Kind: "X", Name: "default"}},
		Status: v1.NodeClaimStatus{ProviderID: providerID, Conditions: []metav1.Condition{{Type: v1.ConditionLaunched, Status: metav1.ConditionTrue,
			Reason: "Launched", LastTransitionTime: metav1.NewTime(launched)}}},
	}
}

func TestTopology(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tests := []struct {
		name        string
		claim       *v1.NodeClaim
		nodes       map[string][]string
		want        []string
		wantRequeue bool
		wantAsked   int
	}{
		{"recorded", claim("a", awsv1.Group, "aws:///us-east-1a/i-1", now), map[string][]string{"aws:///us-east-1a/i-1": {"nn-1", "nn-2", "nn-3"}},
			[]string{"nn-1", "nn-2", "nn-3"}, false, 1},
		{"not yet known: asked again", claim("b", awsv1.Group, "aws:///us-east-1a/i-2", now), nil, nil, true, 1},
		{"never known: given up", claim("c", awsv1.Group, "aws:///us-east-1a/i-3", now.Add(-GiveUpAfter-time.Minute)), nil, nil, false, 1},
		{"another cloud's claim", claim("d", "gcp.stowage.dev", "gce://p/z/n", now), nil, nil, false, 0},
		{"not launched", claim("e", awsv1.Group, "", now), nil, nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := runtime.NewScheme()
			if err := v1.AddToScheme(s); err != nil {
				t.Fatal(err)
			}
			kube := fake.NewClientBuilder().WithScheme(s).WithObjects(tt.claim).WithStatusSubresource(tt.claim).Build()
			src := &source{nodes: tt.nodes}
			c := NewController(Deps{Client: kube, Source: src, Clock: clocktesting.NewFakeClock(now)})
			res, err := c.Reconcile(context.Background(), tt.claim.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			got := &v1.NodeClaim{}
			if err := kube.Get(context.Background(), client.ObjectKeyFromObject(tt.claim), got); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Status.Topology); diff != "" {
				t.Errorf("topology (-want +got):\n%s", diff)
			}
			if (res.RequeueAfter > 0) != tt.wantRequeue || src.asked != tt.wantAsked {
				t.Errorf("requeue %v asked %d, want requeue %v asked %d", res.RequeueAfter, src.asked, tt.wantRequeue, tt.wantAsked)
			}
		})
	}
	src := &source{err: errors.New("throttled")}
	c := NewController(Deps{Client: fake.NewClientBuilder().Build(), Source: src})
	if _, err := c.Reconcile(context.Background(), claim("f", awsv1.Group, "aws:///us-east-1a/i-9", now)); err == nil {
		t.Error("an API error must be returned for backoff")
	}
}
