package azure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v8"
	"sigs.k8s.io/controller-runtime/pkg/log"
)

// Proximity placement groups for claims of one placement group (a training
// gang): Stowage creates one per group on demand, named from the cluster and
// the group, and removes it once no VM uses it.
const (
	placementSweepInterval = 5 * time.Minute
	// placementGrace keeps a new, still empty group from being swept before
	// its first VM lands.
	placementGrace = 10 * time.Minute
	maxPPGName     = 80
)

// placementTracker counts launches in flight per proximity placement group,
// so a group is never deleted under a VM about to join it.
type placementTracker struct {
	mu       sync.Mutex
	inflight map[string]int // by lower-case group name
}

func (t *placementTracker) hold(name string) (release func()) {
	key := strings.ToLower(name)
	t.mu.Lock()
	t.inflight[key]++
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.inflight[key]--; t.inflight[key] <= 0 {
			delete(t.inflight, key)
		}
	}
}

func (t *placementTracker) busy(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.inflight[strings.ToLower(name)] > 0
}

// ppgName is the proximity placement group of a cluster's placement group.
func ppgName(cluster, group string) string {
	n := "stowage-" + cluster + "-" + group
	if len(n) <= maxPPGName {
		return n
	}
	sum := sha256.Sum256([]byte(n))
	return n[:maxPPGName-9] + "-" + hex.EncodeToString(sum[:])[:8]
}

// ensurePPG returns the ID of the group's proximity placement group,
// creating it in the zone of the first VM and with the size as its intent,
// so Azure picks a datacenter that has that size.
func (p *Provider) ensurePPG(ctx context.Context, group, zone, size string) (string, error) {
	if p.opts.PPGs == nil {
		return "", fmt.Errorf("placement group %s: no proximity placement group client configured", group)
	}
	name := ppgName(p.opts.ClusterName, group)
	got, err := p.opts.PPGs.Get(ctx, p.opts.ResourceGroup, name, nil)
	if err == nil {
		return deref(got.ID), nil
	}
	if !isNotFound(err) {
		return "", fmt.Errorf("reading proximity placement group %s: %w", name, err)
	}
	ppg := armcompute.ProximityPlacementGroup{
		Location: strPtr(p.opts.Location),
		Tags: toTags(map[string]string{TagCluster: p.opts.ClusterName, TagPlacementGroup: group,
			TagCreated: p.clock.Now().UTC().Format(time.RFC3339)}),
		Properties: &armcompute.ProximityPlacementGroupProperties{
			ProximityPlacementGroupType: toPtr(armcompute.ProximityPlacementGroupTypeStandard),
			Intent:                      &armcompute.ProximityPlacementGroupPropertiesIntent{VMSizes: []*string{strPtr(size)}},
		},
	}
	if z := azureZone(zone); z != "" {
		ppg.Zones = []*string{strPtr(z)}
	}
	created, err := p.opts.PPGs.CreateOrUpdate(ctx, p.opts.ResourceGroup, name, ppg, nil)
	if err != nil {
		return "", fmt.Errorf("creating proximity placement group %s: %w", name, err)
	}
	log.FromContext(ctx).Info("created proximity placement group", "name", name, "placementGroup", group, "zone", zone)
	return deref(created.ID), nil
}

// releasePPG deletes the group's proximity placement group if no VM uses it
// and no launch is about to.
func (p *Provider) releasePPG(ctx context.Context, group string) {
	name := ppgName(p.opts.ClusterName, group)
	if p.opts.PPGs == nil || p.placement.busy(name) {
		return
	}
	got, err := p.opts.PPGs.Get(ctx, p.opts.ResourceGroup, name, nil)
	if err != nil {
		if !isNotFound(err) {
			log.FromContext(ctx).Error(err, "reading proximity placement group; the sweep retries", "name", name)
		}
		return
	}
	if err := p.deleteIfUnused(ctx, &got.ProximityPlacementGroup, 0); err != nil {
		log.FromContext(ctx).Error(err, "removing proximity placement group; the sweep retries", "name", name)
	}
}

// deleteIfUnused deletes one of this cluster's proximity placement groups
// when it has no VMs, no launch in flight, and is older than grace.
func (p *Provider) deleteIfUnused(ctx context.Context, ppg *armcompute.ProximityPlacementGroup, grace time.Duration) error {
	tags := tagMap(ppg.Tags)
	name := deref(ppg.Name)
	if tags[TagCluster] != p.opts.ClusterName || tags[TagPlacementGroup] == "" || p.placement.busy(name) {
		return nil
	}
	if ppg.Properties != nil && len(ppg.Properties.VirtualMachines) > 0 {
		return nil
	}
	if grace > 0 {
		created, err := time.Parse(time.RFC3339, tags[TagCreated])
		if err == nil && p.clock.Since(created) < grace {
			return nil
		}
	}
	if _, err := p.opts.PPGs.Delete(ctx, p.opts.ResourceGroup, name, nil); err != nil && !isNotFound(err) {
		return fmt.Errorf("deleting proximity placement group %s: %w", name, err)
	}
	log.FromContext(ctx).Info("removed unused proximity placement group", "name", name, "placementGroup", tags[TagPlacementGroup])
	return nil
}

// sweepPlacementGroups removes this cluster's empty proximity placement
// groups, for those a crash or a failed launch left behind.
func (p *Provider) sweepPlacementGroups(ctx context.Context) error {
	if p.opts.PPGs == nil {
		return nil
	}
	pager := p.opts.PPGs.NewListByResourceGroupPager(p.opts.ResourceGroup, nil)
	var errs []error
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing proximity placement groups: %w", err)
		}
		for _, ppg := range page.Value {
			if ppg == nil {
				continue
			}
			if err := p.deleteIfUnused(ctx, ppg, placementGrace); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
