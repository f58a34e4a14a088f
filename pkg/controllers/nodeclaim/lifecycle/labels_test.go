package lifecycle

import (
	"context"
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// A pod that selects a well-known label (stowage.dev/gpu-name, instance-family)
// is planned onto a claim whose requirements pin that label to one value;
// the provisioner's view (state.claimLabels) counts the claim's node as
// carrying it. The AWS and GCP kubelets register only with the claim's own
// labels, so registration must put the pinned requirements on the Node, or
// the kube-scheduler never places the pod there and another machine is
// bought for it.
func TestRegistrationLabelsPinnedRequirements(t *testing.T) {
	e, providerID := launchedEnv(t, func(c *v1.NodeClaim) {
		c.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
			{Key: v1.LabelGPUName, Operator: corev1.NodeSelectorOpIn, Values: []string{"a10g"}},
			{Key: v1.LabelInstanceFamily, Operator: corev1.NodeSelectorOpIn, Values: []string{"g5"}},
			{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: []string{"zone-a", "zone-b"}},
			{Key: "example.com/tier", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"batch"}},
		}
	})
	// Registered as an EKS or GKE kubelet does: no instance-type labels.
	if err := e.client.Create(context.Background(), kwokNode("n1", providerID, false, unregistered)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	node := e.node(t, "n1")
	for k, want := range map[string]string{v1.LabelGPUName: "a10g", v1.LabelInstanceFamily: "g5", v1.LabelZone: "zone-a"} {
		if got := node.Labels[k]; got != want {
			t.Errorf("node label %s = %q, want %q", k, got, want)
		}
	}
	if _, ok := node.Labels["example.com/tier"]; ok {
		t.Errorf("a NotIn requirement must not become a label: %v", node.Labels)
	}
}

// The launched instance type's labels (stowage.dev/instance-family,
// gpu-count, ...) go on the Node too: a pod selecting one later must find
// the node the solver counts as carrying it. The kubelet's own labels and the
// claim's win over them.
func TestRegistrationLabelsTheInstanceType(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	e.cloud.SetInstanceTypes(&cloudprovider.InstanceType{Name: "g5.xlarge", Labels: map[string]string{
		v1.LabelInstanceFamily: "g5", v1.LabelGPUCount: "1", v1.LabelGPUName: "a10g",
		v1.LabelHostname: "not-a-hostname", v1.LabelZone: "zone-x",
	}})
	if err := e.client.Create(context.Background(), kwokNode("n1", providerID, false, unregistered)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	node := e.node(t, "n1")
	for k, want := range map[string]string{v1.LabelInstanceFamily: "g5", v1.LabelGPUCount: "1", v1.LabelGPUName: "a10g",
		v1.LabelHostname: "n1", v1.LabelZone: "zone-a"} {
		if got := node.Labels[k]; got != want {
			t.Errorf("node label %s = %q, want %q", k, got, want)
		}
	}
}

// The instance types cannot be read: the machine still registers.
func TestRegistrationWithoutInstanceTypes(t *testing.T) {
	e, providerID := launchedEnv(t, nil)
	e.cloud.SetError("InstanceTypes", errors.New("throttled"))
	if err := e.client.Create(context.Background(), kwokNode("n1", providerID, false, unregistered)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.reconcile(t, "c1"); err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if e.node(t, "n1").Labels[v1.LabelRegistered] != "true" {
		t.Error("the node was not registered while the instance types could not be read")
	}
}
