package gcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/internal/kubelet"
)

// bootstrap is what a GKE node pool's instance template carries for joining
// the cluster: its metadata (kube-env, cluster-name, configure-sh, ...) and
// its network tags (GKE's firewall rules match the node tag).
type bootstrap struct {
	URL      string
	Metadata map[string]string
	Tags     []string
	// PodRange is the secondary range VPC-native clusters take pod IPs from.
	PodRange string
}

// Metadata keys of GKE's node bootstrap.
const (
	metaKubeEnv     = "kube-env"
	metaKubeLabels  = "kube-labels"
	metaClusterName = "cluster-name"
	// metaLaunch records what Stowage launched the VM with, for drift.
	metaLaunch = "stowage-launch"
)

// GKE labels that belong to one node pool and must not be copied.
var poolOnlyLabels = []string{"cloud.google.com/gke-nodepool", "cloud.google.com/gke-boot-disk",
	"cloud.google.com/gke-os-distribution", "cloud.google.com/machine-family", "cloud.google.com/gke-accelerator",
	"cloud.google.com/gke-gpu-driver-version"}

// FindBootstrapTemplate returns the URL of the newest instance template of
// the GKE cluster's node pools (of pool, when set), identified by the
// cluster-name metadata GKE writes into them.
func FindBootstrapTemplate(ctx context.Context, c *Clients, project, cluster, pool string) (string, error) {
	it := c.InstanceTemplates.List(ctx, &computepb.ListInstanceTemplatesRequest{Project: project, Filter: strPtr(`name eq "gke-.*"`)})
	best, bestTime := "", ""
	for {
		t, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("listing instance templates: %w", err)
		}
		md := metadataMap(t.GetProperties().GetMetadata())
		if md[metaClusterName] != cluster || md[metaKubeEnv] == "" {
			continue
		}
		if pool != "" && t.GetProperties().GetLabels()["goog-k8s-node-pool-name"] != pool &&
			!strings.Contains(md[metaKubeLabels], "cloud.google.com/gke-nodepool="+pool) {
			continue
		}
		if t.GetCreationTimestamp() >= bestTime {
			best, bestTime = t.GetSelfLink(), t.GetCreationTimestamp()
		}
	}
	if best == "" {
		where := "any node pool"
		if pool != "" {
			where = "node pool " + pool
		}
		return "", fmt.Errorf("no instance template with GKE bootstrap metadata for cluster %s (%s)", cluster, where)
	}
	return best, nil
}

// bootstrapFor reads (once) the template a node class resolved.
func (p *Provider) bootstrapFor(ctx context.Context, url string) (*bootstrap, error) {
	p.mu.Lock()
	b, ok := p.templates[url]
	p.mu.Unlock()
	if ok {
		return b, nil
	}
	t, err := p.opts.Clients.InstanceTemplates.Get(ctx, &computepb.GetInstanceTemplateRequest{Project: p.opts.Project, InstanceTemplate: lastSegment(url)})
	if err != nil {
		return nil, fmt.Errorf("reading instance template %s: %w", lastSegment(url), err)
	}
	b = &bootstrap{URL: url, Metadata: metadataMap(t.GetProperties().GetMetadata()), Tags: t.GetProperties().GetTags().GetItems()}
	for _, ni := range t.GetProperties().GetNetworkInterfaces() {
		for _, r := range ni.GetAliasIpRanges() {
			b.PodRange = r.GetSubnetworkRangeName()
		}
	}
	if b.Metadata[metaKubeEnv] == "" {
		return nil, fmt.Errorf("instance template %s has no kube-env metadata", lastSegment(url))
	}
	p.mu.Lock()
	p.templates[url] = b
	p.mu.Unlock()
	return b, nil
}

func metadataMap(md *computepb.Metadata) map[string]string {
	out := map[string]string{}
	for _, it := range md.GetItems() {
		out[it.GetKey()] = it.GetValue()
	}
	return out
}

// joinSettings are the per-VM parts of the bootstrap.
type joinSettings struct {
	Labels  map[string]string
	Taints  []corev1.Taint
	Kubelet *gcpv1.Kubelet
}

// nodeMetadata is the VM's metadata: the template's bootstrap with the
// claim's labels and taints written into kube-env (NODE_LABELS,
// NODE_TAINTS, KUBELET_ARGS) and kube-labels, so the kubelet registers the
// node with them by itself.
func nodeMetadata(b *bootstrap, j joinSettings) (map[string]string, error) {
	out := maps.Clone(b.Metadata)
	env, err := parseKubeEnv(b.Metadata[metaKubeEnv])
	if err != nil {
		return nil, err
	}
	labels := parseLabelList(env.get("NODE_LABELS"))
	for _, k := range poolOnlyLabels {
		delete(labels, k)
	}
	maps.Copy(labels, j.Labels)
	labelStr := kubelet.MapFlag(labels)
	env.set("NODE_LABELS", labelStr)
	taints := make([]string, 0, len(j.Taints))
	for _, t := range j.Taints {
		taints = append(taints, fmt.Sprintf("%s=%s:%s", t.Key, t.Value, t.Effect))
	}
	env.set("NODE_TAINTS", strings.Join(taints, ","))
	if k := j.Kubelet; k != nil {
		args := env.get("KUBELET_ARGS")
		if k.MaxPods != nil {
			args = setFlag(args, "--max-pods", strconv.Itoa(int(*k.MaxPods)))
		}
		if len(k.KubeReserved) > 0 {
			args = setFlag(args, "--kube-reserved", kubelet.MapFlag(k.KubeReserved))
		}
		if len(k.SystemReserved) > 0 {
			args = setFlag(args, "--system-reserved", kubelet.MapFlag(k.SystemReserved))
		}
		env.set("KUBELET_ARGS", args)
	}
	out[metaKubeEnv] = env.String()
	out[metaKubeLabels] = labelStr
	return out, nil
}

// kubeEnv is GKE's kube-env: one "KEY: value" per line, values optionally
// single-quoted. Order is kept so a diff against the template is readable.
type kubeEnv struct {
	keys   []string
	values map[string]string
}

func parseKubeEnv(s string) (*kubeEnv, error) {
	e := &kubeEnv{values: map[string]string{}}
	for i, line := range strings.Split(s, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			if strings.HasSuffix(line, ":") {
				k, v, ok = strings.TrimSuffix(line, ":"), "", true
			}
		}
		if !ok || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("kube-env line %d is not KEY: value", i+1)
		}
		e.keys = append(e.keys, k)
		e.values[k] = unquote(v)
	}
	return e, nil
}

func unquote(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	return v
}

func (e *kubeEnv) get(k string) string { return e.values[k] }

func (e *kubeEnv) set(k, v string) {
	if _, ok := e.values[k]; !ok {
		e.keys = append(e.keys, k)
	}
	e.values[k] = v
}

func (e *kubeEnv) String() string {
	var b strings.Builder
	for _, k := range e.keys {
		v := e.values[k]
		if v == "" || strings.ContainsAny(v, ":#'\"{}[]&*!|>%@`") || strings.HasPrefix(v, " ") {
			v = "'" + strings.ReplaceAll(v, "'", "''") + "'"
		}
		b.WriteString(k + ": " + v + "\n")
	}
	return b.String()
}

func parseLabelList(s string) map[string]string {
	out := map[string]string{}
	for _, kv := range strings.Split(s, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok && k != "" {
			out[k] = v
		}
	}
	return out
}

// setFlag replaces or appends --name=value in a kubelet argument string.
func setFlag(args, name, value string) string {
	fields := strings.Fields(args)
	out := fields[:0]
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		if f == name && i+1 < len(fields) {
			i++
			continue
		}
		if strings.HasPrefix(f, name+"=") {
			continue
		}
		out = append(out, f)
	}
	return strings.Join(append(out, name+"="+value), " ")
}

// kubeletLabels are the claim's labels the kubelet may set on its own Node:
// the NodeRestriction admission plugin refuses other kubernetes.io labels,
// which the core's registration sets instead.
func kubeletLabels(claim *v1.NodeClaim) map[string]string {
	out := map[string]string{}
	for k, v := range claim.Labels {
		if kubelet.MaySetLabel(k) {
			out[k] = v
		}
	}
	return out
}

func strPtr(s string) *string { return &s }

func lastSegment(url string) string { return url[strings.LastIndex(url, "/")+1:] }
