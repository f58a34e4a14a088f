package contract

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/azure"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure/azuretest"
	"github.com/stowage-k8s/stowage/providers/azure/controllers/nodeclass"
)

// TestNodeClassChangesDrift: each change to what a running VM was launched
// with is reported with its own reason; tags and a broken node class are not
// drift, and a new image release is.
func TestNodeClassChangesDrift(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "gpu")
	launched, err := e.provider.Create(e.ctx, claim("drifty", "gpu", offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand)))
	if err != nil {
		t.Fatal(err)
	}
	drift := func() cloudprovider.DriftReason {
		t.Helper()
		r, err := e.provider.IsDrifted(e.ctx, launched)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	update := func(mutate func(*azv1.AKSNodeClass)) {
		t.Helper()
		nc := &azv1.AKSNodeClass{}
		if err := e.kube.Get(e.ctx, clientKey("gpu"), nc); err != nil {
			t.Fatal(err)
		}
		mutate(nc)
		if err := e.kube.Update(e.ctx, nc); err != nil {
			t.Fatal(err)
		}
		e.reconcile(t, "gpu")
	}
	if r := drift(); r != "" {
		t.Fatalf("fresh VM drifted: %s", r)
	}
	update(func(nc *azv1.AKSNodeClass) { nc.Spec.Tags["cost-center"] = "42" })
	if r := drift(); r != "" {
		t.Errorf("a tag change drifted the VM: %s", r)
	}
	for _, tc := range []struct {
		mutate, undo func(*azv1.AKSNodeClass)
		want         cloudprovider.DriftReason
	}{
		{func(nc *azv1.AKSNodeClass) { nc.Spec.OSDisk.SizeGiB = 256 }, func(nc *azv1.AKSNodeClass) { nc.Spec.OSDisk.SizeGiB = 128 }, azure.DriftOSDisk},
		{func(nc *azv1.AKSNodeClass) { nc.Spec.Security = &azv1.Security{EncryptionAtHost: ptrTo(true)} },
			func(nc *azv1.AKSNodeClass) { nc.Spec.Security = nil }, azure.DriftSecurity},
		{func(nc *azv1.AKSNodeClass) { nc.Spec.MaxPods = ptrTo(int32(250)) }, func(nc *azv1.AKSNodeClass) { nc.Spec.MaxPods = nil }, azure.DriftKubelet},
		{func(nc *azv1.AKSNodeClass) { nc.Spec.KubernetesVersion = "1.34.1" }, func(nc *azv1.AKSNodeClass) { nc.Spec.KubernetesVersion = "" }, azure.DriftKubernetesVersion},
		{func(nc *azv1.AKSNodeClass) { nc.Spec.GPU.Driver = azv1.GPUDriverOperator }, func(nc *azv1.AKSNodeClass) { nc.Spec.GPU.Driver = azv1.GPUDriverImage }, azure.DriftGPUDriver},
		{func(nc *azv1.AKSNodeClass) { nc.Spec.Image.Version = azuretest.OldImageVersion }, func(nc *azv1.AKSNodeClass) { nc.Spec.Image.Version = "" }, azure.DriftImage},
	} {
		update(tc.mutate)
		if r := drift(); r != tc.want {
			t.Errorf("drift = %q, want %q", r, tc.want)
		}
		update(tc.undo)
		if r := drift(); r != "" {
			t.Errorf("after undoing the %s change: %q", tc.want, r)
		}
	}

	// A subnet that does not exist makes the class not Ready: not drift.
	update(func(nc *azv1.AKSNodeClass) {
		nc.Spec.SubnetID = strings.Replace(nc.Spec.SubnetID, "aks-subnet", "gone", 1)
	})
	if r := drift(); r != "" {
		t.Errorf("a broken node class rolled the VM: %s", r)
	}
	update(func(nc *azv1.AKSNodeClass) { nc.Spec.SubnetID = e.cloud.SubnetID() })

	// AKS publishes a new image: the next resolve picks it and the VM drifts.
	e.cloud.AddImageVersion(nodeclass.AKSUbuntuGallery, "2204gen2containerd", "202512.01.0")
	e.reconcile(t, "gpu")
	if r := drift(); r != azure.DriftImage {
		t.Errorf("after a new image release: %q, want ImageDrift", r)
	}

	// A restarted controller knows the facts from the VM itself.
	restarted := e.newProvider(t)
	if r, err := restarted.IsDrifted(e.ctx, launched); err != nil || r != azure.DriftImage {
		t.Errorf("restarted provider: %q, %v", r, err)
	}
	// A missing node class is an error, not drift.
	gone := launched.DeepCopy()
	gone.Spec.NodeClassRef.Name = "deleted"
	if _, err := e.provider.IsDrifted(e.ctx, gone); err == nil {
		t.Error("a claim whose node class cannot be read must be an error")
	}
}

// TestInterruptionsFromNodeConditions turns AKS node-problem-detector
// conditions into events with the deadline they carry, once per
// transition, and reports a VM evicted without notice through the backstop.
func TestInterruptionsFromNodeConditions(t *testing.T) {
	e := newEnv(t)
	src := azure.NewInterruptionSource(azure.InterruptionOptions{ClusterName: cluster, ResourceGroup: e.cloud.ResourceGroup(),
		VMs: e.clients.VMs, Clock: e.clock, PollInterval: time.Minute})
	e.provider = e.newProvider(t, func(o *azure.Options) { o.Interruption = src })
	e.nodeClass(t, "gpu")
	spot, err := e.provider.Create(e.ctx, claim("spot", "gpu", offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeSpot)))
	if err != nil {
		t.Fatal(err)
	}
	kept, err := e.provider.Create(e.ctx, claim("kept", "gpu", offering("Standard_NC4as_T4_v3", "eastus-2", v1.CapacityTypeOnDemand)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	events, err := e.provider.Interruptions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := func() cloudprovider.InterruptionEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no interruption event")
			return cloudprovider.InterruptionEvent{}
		}
	}
	now := metav1.NewTime(e.clock.Now())
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "spot", Labels: map[string]string{v1.LabelNodePool: "gpu"}},
		Spec:       corev1.NodeSpec{ProviderID: spot.Status.ProviderID},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: azure.ConditionVMEventScheduled, Status: corev1.ConditionTrue, Reason: "VMEventScheduled",
				Message: "Freeze event scheduled", LastTransitionTime: now},
			{Type: azure.ConditionPreemptionScheduled, Status: corev1.ConditionTrue, Reason: "PreemptScheduled",
				Message: "Preempt event scheduled, NotBefore: Fri, 04 Dec 2026 12:00:31 GMT", LastTransitionTime: now},
		}},
	}
	if _, err := src.Reconcile(e.ctx, node); err != nil {
		t.Fatal(err)
	}
	ev := next()
	if ev.ProviderID != spot.Status.ProviderID || ev.Kind != cloudprovider.InterruptionSpotReclaim ||
		!ev.Deadline.Equal(time.Date(2026, 12, 4, 12, 0, 31, 0, time.UTC)) {
		t.Errorf("event = %+v, want a spot reclaim at the NotBefore", ev)
	}
	// The same condition again is not a second notice; a maintenance event is.
	node.Status.Conditions[0] = corev1.NodeCondition{Type: azure.ConditionVMEventScheduled, Status: corev1.ConditionTrue,
		Message: "Reboot event scheduled, NotBefore: 2026-12-05T03:00:00Z", LastTransitionTime: metav1.NewTime(now.Add(time.Minute))}
	if _, err := src.Reconcile(e.ctx, node); err != nil {
		t.Fatal(err)
	}
	ev = next()
	if ev.Kind != cloudprovider.InterruptionScheduledMaintenance || !ev.Deadline.Equal(time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)) {
		t.Errorf("event = %+v, want maintenance at 03:00", ev)
	}
	select {
	case ev := <-events:
		t.Fatalf("duplicate event %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
	// Nodes Stowage does not own are ignored.
	foreign := node.DeepCopy()
	foreign.Labels = nil
	foreign.Status.Conditions[1].LastTransitionTime = metav1.NewTime(now.Add(time.Hour))
	if _, err := src.Reconcile(e.ctx, foreign); err != nil {
		t.Fatal(err)
	}

	// Backstop: the first poll learns the live VMs; an eviction without
	// notice is reported, a VM Stowage deleted is not.
	waitFor(t, "the poller's timer", func() bool { return e.clock.HasWaiters() })
	e.clock.Step(time.Minute)
	waitFor(t, "the first poll", func() bool { return e.cloud.Calls("VirtualMachines.List") >= 1 })
	if err := e.cloud.Evict("spot"); err != nil {
		t.Fatal(err)
	}
	if err := e.provider.Delete(e.ctx, kept); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the poller's timer", func() bool { return e.clock.HasWaiters() })
	e.clock.Step(time.Minute)
	ev = next()
	if ev.ProviderID != spot.Status.ProviderID || ev.Kind != cloudprovider.InterruptionInstanceStopped {
		t.Errorf("backstop event = %+v, want the evicted VM stopped", ev)
	}
	select {
	case ev := <-events:
		t.Fatalf("event for a VM Stowage deleted itself: %+v", ev)
	case <-time.After(100 * time.Millisecond):
	}
}

func ptrTo[T any](v T) *T { return &v }
