package claims_test

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/claims"
	"github.com/stowage-k8s/stowage/pkg/utils/cloudtest"
)

func TestLookups(t *testing.T) {
	launched := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "launched"},
		Status: v1.NodeClaimStatus{ProviderID: "fake://1"}}
	relabelled := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		Status: v1.NodeClaimStatus{ProviderID: "fake://2"}}
	pending := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "pending"}}
	nodeOf := func(name, providerID, label string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{ProviderID: providerID}}
		if label != "" {
			n.Labels = map[string]string{v1.LabelNodeClaim: label}
		}
		return n
	}
	n1 := nodeOf("n1", "fake://1", "")
	byLabel := nodeOf("n-pending", "", "pending")
	mismatch := nodeOf("n3", "fake://3", "other")
	stranger := nodeOf("n4", "fake://4", "")
	c := cloudtest.NewClientBuilder().WithObjects(launched, relabelled, pending, n1, byLabel, mismatch, stranger).Build()
	ctx := context.Background()

	tests := []struct {
		node *corev1.Node
		want string
	}{
		{node: n1, want: "launched"},     // by providerID
		{node: byLabel, want: "pending"}, // by label before a providerID is known
		{node: mismatch, want: ""},       // the label names a claim that launched another machine
		{node: stranger, want: ""},       // not Stowage's
	}
	for _, tt := range tests {
		got, err := claims.ForNode(ctx, c, tt.node)
		if err != nil {
			t.Fatalf("ForNode(%s): %v", tt.node.Name, err)
		}
		name := ""
		if got != nil {
			name = got.Name
		}
		if name != tt.want {
			t.Errorf("ForNode(%s) = %q, want %q", tt.node.Name, name, tt.want)
		}
	}

	node, err := claims.NodeFor(ctx, c, launched)
	if err != nil || node == nil || node.Name != "n1" {
		t.Errorf("NodeFor(launched) = %v, %v; want n1", node, err)
	}
	stale := launched.DeepCopy()
	stale.Status.NodeName = "gone"
	if node, err := claims.NodeFor(ctx, c, stale); err != nil || node == nil || node.Name != "n1" {
		t.Errorf("NodeFor with a stale nodeName = %v, %v; want the providerID match n1", node, err)
	}
	if node, err := claims.NodeFor(ctx, c, pending); err != nil || node != nil {
		t.Errorf("NodeFor(pending) = %v, %v; want none", node, err)
	}
}
