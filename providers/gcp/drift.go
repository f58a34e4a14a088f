package gcp

import (
	"context"
	"fmt"
	"slices"

	"cloud.google.com/go/compute/apiv1/computepb"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// Drift reasons, as the NodeClaim's Drifted condition carries them.
const (
	DriftImage          cloudprovider.DriftReason = "ImageDrift"
	DriftSubnetwork     cloudprovider.DriftReason = "SubnetworkDrift"
	DriftServiceAccount cloudprovider.DriftReason = "ServiceAccountDrift"
	DriftNetworkTags    cloudprovider.DriftReason = "NetworkTagsDrift"
	DriftBootDisk       cloudprovider.DriftReason = "BootDiskDrift"
	DriftNodeClass      cloudprovider.DriftReason = "NodeClassDrift"
)

// IsDrifted implements cloudprovider.DriftChecker: the VM's image,
// subnetwork, service account, network tags and boot disk are compared with
// what its GCENodeClass resolves to now, and the rest of the class by hash.
// A class that has not resolved its image or subnetwork yet is no drift.
func (p *Provider) IsDrifted(ctx context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	if claim.Spec.NodeClassRef == nil || claim.Status.ProviderID == "" {
		return "", nil
	}
	nc, err := p.nodeClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return "", err
	}
	_, zone, name, err := ParseProviderID(claim.Status.ProviderID)
	if err != nil {
		return "", err
	}
	inst, err := p.opts.Clients.Instances.Get(ctx, &computepb.GetInstanceRequest{Project: p.opts.Project, Zone: zone, Instance: name})
	if isNotFound(err) {
		return "", nil // gone: liveness and garbage collection handle it
	}
	if err != nil {
		return "", fmt.Errorf("reading instance %s: %w", name, err)
	}
	rec := launchRecordOf(inst)
	if rec.NodeClass == "" {
		return "", nil // not launched by this version: nothing to compare
	}
	var boot *bootstrap
	if nc.Status.BootstrapTemplate != "" {
		if boot, err = p.bootstrapFor(ctx, nc.Status.BootstrapTemplate); err != nil {
			return "", err
		}
	}
	sub := ""
	if nics := inst.GetNetworkInterfaces(); len(nics) > 0 {
		sub = nics[0].GetSubnetwork()
	}
	account := ""
	if sas := inst.GetServiceAccounts(); len(sas) > 0 {
		account = sas[0].GetEmail()
	}
	tags := slices.Clone(inst.GetTags().GetItems())
	slices.Sort(tags)
	switch {
	case nc.Status.Image != "" && rec.Image != nc.Status.Image:
		return DriftImage, nil
	case nc.Status.Subnetwork != "" && !sameResource(sub, nc.Status.Subnetwork):
		return DriftSubnetwork, nil
	case account != nc.Spec.ServiceAccount:
		return DriftServiceAccount, nil
	case boot != nil && !slices.Equal(tags, expectedTags(nc, boot)):
		return DriftNetworkTags, nil
	case rec.DiskType != diskTypeFor(nc, lastSegment(inst.GetMachineType())) || rec.DiskSizeGiB != diskSize(nc):
		return DriftBootDisk, nil
	case rec.SpecHash != specHash(nc):
		return DriftNodeClass, nil
	}
	return "", nil
}

// sameResource compares two resource references that may be full URLs or
// partial paths.
func sameResource(a, b string) bool {
	trim := func(s string) string {
		if i := indexOf(s, "projects/"); i >= 0 {
			return s[i:]
		}
		return s
	}
	return trim(a) == trim(b)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
