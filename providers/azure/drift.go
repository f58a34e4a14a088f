package azure

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
)

// Drift reasons, the Drifted condition's reason on a NodeClaim.
const (
	DriftImage             cloudprovider.DriftReason = "ImageDrift"
	DriftSubnet            cloudprovider.DriftReason = "SubnetDrift"
	DriftOSDisk            cloudprovider.DriftReason = "OSDiskDrift"
	DriftSecurity          cloudprovider.DriftReason = "SecurityDrift"
	DriftKubelet           cloudprovider.DriftReason = "KubeletDrift"
	DriftKubernetesVersion cloudprovider.DriftReason = "KubernetesVersionDrift"
	DriftGPUDriver         cloudprovider.DriftReason = "GPUDriverDrift"
	DriftSSHKey            cloudprovider.DriftReason = "SSHKeyDrift"
)

// driftAspects are the parts of a node class a running VM cannot take on
// without being replaced, in the order drift reports them. Tags, the
// capacity reservation group and the placement group are left out: changing
// them must not roll the fleet.
var driftAspects = []struct {
	key    string
	reason cloudprovider.DriftReason
	value  func(nc *azv1.AKSNodeClass) any
}{
	{"subnet", DriftSubnet, func(nc *azv1.AKSNodeClass) any { return strings.ToLower(nc.Spec.SubnetID) }},
	{"osdisk", DriftOSDisk, func(nc *azv1.AKSNodeClass) any { return nc.Spec.OSDisk }},
	{"security", DriftSecurity, func(nc *azv1.AKSNodeClass) any { return nc.Spec.Security }},
	{"kubelet", DriftKubelet, func(nc *azv1.AKSNodeClass) any { return []any{nc.Spec.Kubelet, maxPods(nc)} }},
	{"k8s", DriftKubernetesVersion, func(nc *azv1.AKSNodeClass) any { return nc.Status.KubernetesVersion }},
	{"gpu", DriftGPUDriver, func(nc *azv1.AKSNodeClass) any { return nc.Spec.GPU }},
	{"ssh", DriftSSHKey, func(nc *azv1.AKSNodeClass) any { return nc.Spec.SSHPublicKey }},
}

// nodeClassHash is the VM tag recording what the node class was at launch:
// a short hash per aspect, "subnet=1a2b3c4d;osdisk=...".
func nodeClassHash(nc *azv1.AKSNodeClass) string {
	parts := make([]string, 0, len(driftAspects))
	for _, a := range driftAspects {
		parts = append(parts, a.key+"="+shortHash(a.value(nc)))
	}
	return strings.Join(parts, ";")
}

func shortHash(v any) string {
	b, _ := json.Marshal(v) // plain data: cannot fail
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])[:8]
}

func parseNodeClassHash(tag string) map[string]string {
	out := map[string]string{}
	for _, part := range strings.Split(tag, ";") {
		if k, v, ok := strings.Cut(part, "="); ok {
			out[k] = v
		}
	}
	return out
}

// vmFacts is what drift compares, remembered from the VM so a drift pass
// over the fleet costs no Azure calls.
type vmFacts struct {
	hash, image, size string
}

func (p *Provider) remember(pid string, f vmFacts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.vmFacts[strings.ToLower(pid)] = f
}

func (p *Provider) forget(pid string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.vmFacts, strings.ToLower(pid))
}

func (p *Provider) facts(ctx context.Context, pid string) (vmFacts, bool, error) {
	p.mu.Lock()
	f, ok := p.vmFacts[strings.ToLower(pid)]
	p.mu.Unlock()
	if ok {
		return f, true, nil
	}
	if _, err := p.Get(ctx, pid); err != nil {
		if cloudprovider.IsNotFound(err) {
			return vmFacts{}, false, nil
		}
		return vmFacts{}, false, err
	}
	p.mu.Lock()
	f, ok = p.vmFacts[strings.ToLower(pid)]
	p.mu.Unlock()
	return f, ok, nil
}

// IsDrifted implements cloudprovider.DriftChecker: a VM whose image is not
// the node class's current one for its architecture, or whose subnet, OS
// disk, security settings, kubelet settings, Kubernetes version, GPU driver
// handling or SSH key changed since launch, is drifted. A node class that
// is not Ready rolls nothing.
func (p *Provider) IsDrifted(ctx context.Context, claim *v1.NodeClaim) (cloudprovider.DriftReason, error) {
	if claim.Status.ProviderID == "" || claim.Spec.NodeClassRef == nil {
		return "", nil
	}
	nc, err := p.nodeClass(ctx, claim.Spec.NodeClassRef)
	if err != nil {
		return "", fmt.Errorf("checking drift of nodeclaim %s: %w", claim.Name, err)
	}
	if ready(nc) != nil {
		return "", nil
	}
	p.refresh(ctx) // the size's architecture comes from the catalog
	f, ok, err := p.facts(ctx, claim.Status.ProviderID)
	if err != nil || !ok {
		return "", err
	}
	if it := p.lookupType(f.size); it != nil && f.image != "" {
		if img, ok := imageFor(nc, it.Labels[v1.LabelArch]); ok && !strings.EqualFold(img.ID, f.image) {
			return DriftImage, nil
		}
	}
	if f.hash == "" {
		return "", nil // launched before hashes were recorded
	}
	was := parseNodeClassHash(f.hash)
	for _, a := range driftAspects {
		if old, ok := was[a.key]; ok && old != shortHash(a.value(nc)) {
			return a.reason, nil
		}
	}
	return "", nil
}
