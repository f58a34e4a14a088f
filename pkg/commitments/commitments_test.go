package commitments

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pricing"
)

type staticTypes []*cloudprovider.InstanceType

func (s staticTypes) InstanceTypes(context.Context, *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	return s, nil
}

func TestPricer(t *testing.T) {
	scheme, types := newScheme(t), m1Types()
	ri := &v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: "ri"}, Spec: v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(3))}}
	running := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Status: v1.NodeClaimStatus{InstanceType: "m1", Zone: "z1", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.4"}}
	spot := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "b"}, Status: v1.NodeClaimStatus{InstanceType: "m1", Zone: "z1", CapacityType: v1.CapacityTypeSpot, PricePerHour: "0.1"}}
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ri, running, spot).Build()
	p := NewPricer(types, kube, testingclock.NewFakePassiveClock(time.Unix(0, 0)))
	its, err := p.InstanceTypes(context.Background(), &v1.NodePool{})
	if err != nil {
		t.Fatal(err)
	}
	var covered []cloudprovider.Offering
	for _, o := range its[0].Offerings {
		if o.Commitment != "" {
			covered = append(covered, o)
		}
	}
	// The on-demand machine uses one of three; the spot one none.
	if len(covered) != 1 || covered[0].Commitment != "ri" || covered[0].CommitmentLeft != 2 || covered[0].PricePerHour != pricing.CoveredPricePerHour {
		t.Errorf("covered offerings %+v, want one of ri with 2 machines left", covered)
	}

	// No commitments: the provider's types unchanged.
	empty := NewPricer(types, fake.NewClientBuilder().WithScheme(scheme).Build(), nil)
	if its, err := empty.InstanceTypes(context.Background(), &v1.NodePool{}); err != nil || len(its[0].Offerings) != 2 {
		t.Errorf("without commitments: %v %v", its, err)
	}
}

// A claim still launching on a covered offering holds its share of the
// commitment: the next batch is not offered the same coverage.
func TestInFlightClaimHoldsCommitment(t *testing.T) {
	scheme, types := newScheme(t), m1Types()
	ri := &v1.Commitment{ObjectMeta: metav1.ObjectMeta{Name: "ri"}, Spec: v1.CommitmentSpec{Type: v1.CommitmentReservedInstances, Count: ptr.To(int32(1))}}
	// Created from a plan whose first choice is the covered offering; the
	// provider call has not returned yet, so status is empty.
	inFlight := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{v1.LabelNodePool: "default"}},
		Spec: v1.NodeClaimSpec{Offerings: []v1.OfferingChoice{
			{InstanceType: "m1", Zone: "z1", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.0001"},
			{InstanceType: "m1", Zone: "z1", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: "0.4000"},
		}}}
	kube := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ri, inFlight).Build()
	p := NewPricer(types, kube, testingclock.NewFakePassiveClock(time.Unix(0, 0)))
	its, err := p.InstanceTypes(context.Background(), &v1.NodePool{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range its[0].Offerings {
		if o.Commitment != "" {
			t.Errorf("RI count 1 is already planned for in-flight claim a, but the next batch is offered it again: %+v", o)
		}
	}
}

func newScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := v1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// m1Types is one type of family m, on-demand at $0.40/h and spot at $0.10/h.
func m1Types() staticTypes {
	return staticTypes{{Name: "m1", Labels: map[string]string{v1.LabelInstanceFamily: "m"}, Offerings: []cloudprovider.Offering{
		{Zone: "z1", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 0.4, Available: true},
		{Zone: "z1", CapacityType: v1.CapacityTypeSpot, PricePerHour: 0.1, Available: true},
	}}}
}
