package aws

import (
	"context"
	"testing"

	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stowage-k8s/stowage/pkg/controllers/nodeclaim/garbagecollection"
)

// EC2 keeps a terminated instance in shutting-down for a while (minutes for
// large GPU types). Termination has deleted its claim by then; garbage
// collection must not take the dying machine for a leaked one, terminate it
// again and count it as a leak after every ordinary scale-down.
func TestShuttingDownInstanceIsNotAMachineToCollect(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := claim("going", choice("m5.large", zoneA, "on-demand"))
	got, err := e.p.Create(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.p.Delete(ctx, got); err != nil {
		t.Fatal(err)
	}
	id, _ := ParseProviderID(got.Status.ProviderID)
	e.ec2.mu.Lock()
	e.ec2.instances[id].State = &ec2types.InstanceState{Name: ec2types.InstanceStateNameShuttingDown} // as EC2 reports it
	e.ec2.mu.Unlock()

	listed, err := e.p.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range listed {
		if l.Status.ProviderID == got.Status.ProviderID {
			t.Errorf("List returns %s, which EC2 is already terminating", l.Status.ProviderID)
		}
	}

	// The claim is gone (termination removed its finalizer once Delete returned).
	kube := fake.NewClientBuilder().WithScheme(scheme(t)).Build()
	gc := garbagecollection.NewController(garbagecollection.Deps{Client: kube, CloudProvider: e.p, Clock: e.clock})
	e.clock.Step(garbagecollection.DefaultInstanceGrace)
	before := e.ec2.Calls("TerminateInstances")
	if err := gc.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.ec2.Calls("TerminateInstances") - before; n != 0 {
		t.Errorf("garbage collection terminated the shutting-down machine again (%d calls) as a leak", n)
	}
}
