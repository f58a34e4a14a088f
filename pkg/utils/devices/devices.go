// Package devices reads what pods' ResourceClaims are planned against from
// the cluster, for every decision that plans pods: provisioning, disruption's
// what-ifs and ProvisioningRequests.
package devices

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

// Read lists what pods' ResourceClaims are planned against: DeviceClasses,
// claims, claim templates and ResourceSlices. It returns nil when no pod
// (pending or on a node) uses claims, so a cluster without the DRA API is
// never asked for it.
func Read(ctx context.Context, c client.Reader, matcher *scheduling.DeviceMatcher, pods []*corev1.Pod, nodes []*solver.Node) (*scheduling.DRA, error) {
	uses := scheduling.UsesResourceClaims(pods)
	for _, n := range nodes {
		uses = uses || scheduling.UsesResourceClaims(n.Pods)
	}
	if !uses {
		return nil, nil
	}
	d := &scheduling.DRA{
		Classes:   map[string]*resourceapi.DeviceClass{},
		Templates: map[string]*resourceapi.ResourceClaimTemplate{},
		Claims:    map[string]*resourceapi.ResourceClaim{},
		Matcher:   matcher,
	}
	classes := &resourceapi.DeviceClassList{}
	if err := c.List(ctx, classes); err != nil {
		return nil, fmt.Errorf("listing deviceclasses: %w", err)
	}
	for i := range classes.Items {
		d.Classes[classes.Items[i].Name] = &classes.Items[i]
	}
	templates := &resourceapi.ResourceClaimTemplateList{}
	if err := c.List(ctx, templates); err != nil {
		return nil, fmt.Errorf("listing resourceclaimtemplates: %w", err)
	}
	for i := range templates.Items {
		t := &templates.Items[i]
		d.Templates[t.Namespace+"/"+t.Name] = t
	}
	claims := &resourceapi.ResourceClaimList{}
	if err := c.List(ctx, claims); err != nil {
		return nil, fmt.Errorf("listing resourceclaims: %w", err)
	}
	for i := range claims.Items {
		cl := &claims.Items[i]
		d.Claims[cl.Namespace+"/"+cl.Name] = cl
	}
	slices := &resourceapi.ResourceSliceList{}
	if err := c.List(ctx, slices); err != nil {
		return nil, fmt.Errorf("listing resourceslices: %w", err)
	}
	for i := range slices.Items {
		d.Slices = append(d.Slices, &slices.Items[i])
	}
	return d, nil
}
