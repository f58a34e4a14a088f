package gcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
)

// placementGrace keeps a new placement policy from being cleaned up before
// the VM it was made for exists.
const placementGrace = 10 * time.Minute

// placementGroup is the claim's placement group when its node class keeps
// groups together, else "".
func placementGroup(claim *v1.NodeClaim, nc *gcpv1.GCENodeClass) string {
	if claim.Spec.Placement == nil || claim.Spec.Placement.Group == "" || nc.Spec.Placement.Type == "None" {
		return ""
	}
	return claim.Spec.Placement.Group
}

// policyPrefix starts the name of every placement policy of this cluster.
func (p *Provider) policyPrefix() string {
	sum := sha256.Sum256([]byte(p.opts.ClusterName))
	return "stowage-" + hex.EncodeToString(sum[:])[:8] + "-"
}

// PolicyName is the compact placement policy of a placement group.
func (p *Provider) PolicyName(group string) string {
	name := p.policyPrefix() + strings.Trim(nameUnsafe.ReplaceAllString(strings.ToLower(group), "-"), "-")
	if len(name) > 63 || !validName.MatchString(name) {
		sum := sha256.Sum256([]byte(group))
		name = p.policyPrefix() + hex.EncodeToString(sum[:])[:16]
	}
	return name
}

// ensurePlacementPolicy returns the URL of the group's compact placement
// policy, creating it if needed.
func (p *Provider) ensurePlacementPolicy(ctx context.Context, group string) (string, error) {
	cl := p.opts.Clients.ResourcePolicies
	name := p.PolicyName(group)
	got, err := cl.Get(ctx, &computepb.GetResourcePolicyRequest{Project: p.opts.Project, Region: p.opts.Region, ResourcePolicy: name})
	if err == nil {
		return got.GetSelfLink(), nil
	}
	if !isNotFound(err) {
		return "", fmt.Errorf("reading placement policy %s: %w", name, err)
	}
	op, err := cl.Insert(ctx, &computepb.InsertResourcePolicyRequest{Project: p.opts.Project, Region: p.opts.Region,
		ResourcePolicyResource: &computepb.ResourcePolicy{
			Name:                 &name,
			Description:          strPtr(fmt.Sprintf("Stowage compact placement for group %s of cluster %s", group, p.opts.ClusterName)),
			GroupPlacementPolicy: &computepb.ResourcePolicyGroupPlacementPolicy{Collocation: strPtr("COLLOCATED")},
		}})
	if err == nil {
		err = wait(ctx, op)
	}
	if err != nil && !isAlreadyExists(err) {
		return "", fmt.Errorf("creating placement policy %s: %w", name, err)
	}
	log.FromContext(ctx).WithName(Name).Info("created compact placement policy", "policy", name, "group", group)
	return fmt.Sprintf("projects/%s/regions/%s/resourcePolicies/%s", p.opts.Project, p.opts.Region, name), nil
}

// lockGroup holds the group's launch lock until the returned func is called.
func (p *Provider) lockGroup(group string) func() {
	p.mu.Lock()
	l, ok := p.groupLocks[group]
	if !ok {
		l = &sync.Mutex{}
		p.groupLocks[group] = l
	}
	p.mu.Unlock()
	l.Lock()
	return l.Unlock
}

// groupZone is the zone the group's VMs run in, or "" before the first.
func (p *Provider) groupZone(ctx context.Context, group string) (string, error) {
	insts, err := p.listInstances(ctx, map[string]string{LabelCluster: p.labelValue, LabelPlacementGroup: LabelValue(group)})
	if err != nil {
		return "", fmt.Errorf("finding placement group %s: %w", group, err)
	}
	for _, inst := range insts {
		return lastSegment(inst.GetZone()), nil
	}
	return "", nil
}

// CleanupPlacementPolicies deletes this cluster's placement policies that no
// VM uses any more (and that are older than a few minutes, so a policy made
// for a launch in progress survives).
func (p *Provider) CleanupPlacementPolicies(ctx context.Context) error {
	insts, err := p.listInstances(ctx, map[string]string{LabelCluster: p.labelValue})
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, inst := range insts {
		for _, rp := range inst.GetResourcePolicies() {
			used[lastSegment(rp)] = true
		}
	}
	filter := fmt.Sprintf(`name eq "%s.*"`, p.policyPrefix())
	it := p.opts.Clients.ResourcePolicies.List(ctx, &computepb.ListResourcePoliciesRequest{Project: p.opts.Project, Region: p.opts.Region, Filter: &filter})
	var errs []error
	for {
		rp, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return fmt.Errorf("listing placement policies: %w", err)
		}
		if used[rp.GetName()] || !strings.HasPrefix(rp.GetName(), p.policyPrefix()) {
			continue
		}
		if created, err := time.Parse(time.RFC3339Nano, rp.GetCreationTimestamp()); err == nil && p.clock.Since(created) < placementGrace {
			continue
		}
		op, err := p.opts.Clients.ResourcePolicies.Delete(ctx, &computepb.DeleteResourcePolicyRequest{Project: p.opts.Project, Region: p.opts.Region, ResourcePolicy: rp.GetName()})
		if err == nil {
			err = wait(ctx, op)
		}
		if err != nil && !isNotFound(err) {
			// In use by a VM launched since the list: kept, tried again next time.
			errs = append(errs, fmt.Errorf("deleting placement policy %s: %w", rp.GetName(), err))
			continue
		}
		log.FromContext(ctx).WithName(Name).Info("deleted unused placement policy", "policy", rp.GetName())
	}
	return errors.Join(errs...)
}
