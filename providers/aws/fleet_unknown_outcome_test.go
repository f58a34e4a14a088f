package aws

import (
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// lostAnswerEC2 launches the spot fleet but loses EC2's answer: the call
// fails with a server error after the instance exists, as a 5xx or a cut
// connection after EC2 accepted the request does.
type lostAnswerEC2 struct {
	*fakeEC2
}

func (f *lostAnswerEC2) CreateFleet(ctx context.Context, in *ec2.CreateFleetInput, o ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error) {
	out, err := f.fakeEC2.CreateFleet(ctx, in, o...)
	if err == nil && lifecycleOf(in) == "spot" {
		return nil, apiError("InternalError")
	}
	return out, err
}

// A CreateFleet whose outcome is unknown may have launched: Create must not
// go on to the next capacity type with another client token, which buys a
// second machine for the claim. It returns the error, and the retry reuses
// the same token, so EC2 answers with the machine it made.
func TestFleetWithUnknownOutcomeIsNotFollowedByAnother(t *testing.T) {
	e := newEnv(t)
	f := &lostAnswerEC2{fakeEC2: e.ec2}
	p, err := New(Options{ClusterName: "test", Region: "us-east-1", EC2: f, Kube: e.p.opts.Kube, Clock: e.clock})
	if err != nil {
		t.Fatal(err)
	}
	c := claim("lost", choice("g5.xlarge", zoneA, "spot"), choice("g5.xlarge", zoneA, "on-demand"))
	got, err := p.Create(context.Background(), c)
	if err == nil {
		t.Logf("Create launched %s", got.Status.ProviderID)
	}
	e.ec2.mu.Lock()
	n := len(e.ec2.instances)
	e.ec2.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d instances exist for one claim after a spot fleet whose answer was lost (%d CreateFleet calls); want 1", n, len(e.ec2.fleets))
	}
	if err == nil {
		t.Fatal("Create reported success with a machine other than the one the spot fleet made")
	}
	// The retry finds the spot machine rather than buying another.
	again, err := p.Create(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	if again.Status.CapacityType != "spot" || len(e.ec2.instances) != 1 {
		t.Errorf("retry got %s with %d instances, want the spot machine and no other", again.Status.CapacityType, len(e.ec2.instances))
	}
}
