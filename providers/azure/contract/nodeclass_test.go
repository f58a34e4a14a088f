package contract

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure/controllers/nodeclass"
)

// TestAPIErrorKeepsAResolvedClassReady: reads that fail once the class is
// resolved (throttling, an API server blip) keep it Ready with its images,
// so its pools still offer and Create still buys; the error is returned for
// a retry. A subnet that is gone (404) still turns it not Ready.
func TestAPIErrorKeepsAResolvedClassReady(t *testing.T) {
	e := newEnv(t)
	crg := e.cloud.AddCapacityReservation("gpu-reserved", "Standard_NC4as_T4_v3", "1", 1)
	ppg := e.cloud.AddProximityPlacementGroup("user-ppg")
	resolved := e.nodeClass(t, "gpu", func(nc *azv1.AKSNodeClass) {
		nc.Spec.CapacityReservationGroup, nc.Spec.ProximityPlacementGroup = crg, ppg
	})
	if !ready(resolved) {
		t.Fatalf("first reconcile: %+v", resolved.Status.Conditions)
	}

	for _, api := range []string{"CommunityGalleryImageVersionsClient.NewListPager", "SubnetsClient.Get",
		"CapacityReservationGroupsClient.Get", "ProximityPlacementGroupsClient.Get"} {
		e.cloud.FailNext(api, http.StatusTooManyRequests, "TooManyRequests")
	}
	// The API server's version cannot be read either.
	ctrl := nodeclass.NewController(nodeclass.Deps{
		Client: e.kube, Images: e.clients.GalleryImages, Subnets: e.clients.Subnets, ReservationGroups: e.clients.ReservationGroups,
		PPGs: e.clients.PPGs, Location: e.cloud.Location(), Clock: e.clock,
		ServerVersion: func(context.Context) (string, error) {
			return "", errors.New("the server is currently unable to handle the request")
		},
	})
	nc := &azv1.AKSNodeClass{}
	if err := e.kube.Get(e.ctx, clientKey("gpu"), nc); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.Reconcile(e.ctx, nc); err == nil || !strings.Contains(err.Error(), "TooManyRequests") {
		t.Errorf("err = %v, want the API error returned for a retry", err)
	}
	got := &azv1.AKSNodeClass{}
	if err := e.kube.Get(e.ctx, clientKey("gpu"), got); err != nil {
		t.Fatal(err)
	}
	if !ready(got) {
		t.Errorf("Ready = %+v after failed reads; want it kept", condition(got, azv1.ConditionReady))
	}
	if !slices.Equal(got.Status.Images, resolved.Status.Images) || got.Status.KubernetesVersion != resolved.Status.KubernetesVersion {
		t.Errorf("status = %+v, want the resolved %+v kept", got.Status, resolved.Status)
	}
	if _, err := e.provider.Create(e.ctx, claim("after-throttle", "gpu", offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand))); err != nil {
		t.Errorf("Create after a throttled read: %v", err)
	}

	e.cloud.FailNext("SubnetsClient.Get", http.StatusNotFound, "NotFound")
	got = e.reconcile(t, "gpu")
	if cond := condition(got, azv1.ConditionSubnetReady); cond == nil || cond.Status != "False" || cond.Reason != nodeclass.ReasonNotFound {
		t.Errorf("SubnetReady = %+v, want False/NotFound", cond)
	}
	if ready(got) {
		t.Error("a subnet gone left the class Ready")
	}
}
