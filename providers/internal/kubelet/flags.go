// Package kubelet formats the kubelet flag values the providers write into
// their nodes' bootstrap data (EKS NodeConfig, AKS custom data, GKE kube-env).
package kubelet

import (
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// MapFlag is the value of a map-valued flag such as --node-labels or
// --kube-reserved: key=value pairs sorted by key, comma-separated.
func MapFlag(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

// TaintFlag is the value of --register-with-taints: key=value:effect, or
// key:effect for a taint without a value, comma-separated in order.
func TaintFlag(taints []corev1.Taint) string {
	parts := make([]string, 0, len(taints))
	for _, t := range taints {
		if t.Value == "" {
			parts = append(parts, t.Key+":"+string(t.Effect))
		} else {
			parts = append(parts, t.Key+"="+t.Value+":"+string(t.Effect))
		}
	}
	return strings.Join(parts, ",")
}

// MaySetLabel reports whether the kubelet accepts key in --node-labels. It
// refuses keys in the kubernetes.io and k8s.io domains (and their
// subdomains) other than a few well-known labels and the kubelet. and
// node. namespaces, and does not start at all when given one; the
// lifecycle controller puts such labels on the Node after it registers.
// This is the kubelet's own rule (k8s.io/kubelet/pkg/apis IsKubeletLabel).
func MaySetLabel(key string) bool {
	domain, _, ok := strings.Cut(key, "/")
	if !ok {
		return true
	}
	within := func(d string) bool { return domain == d || strings.HasSuffix(domain, "."+d) }
	if !within("kubernetes.io") && !within("k8s.io") {
		return true
	}
	switch key {
	case corev1.LabelHostname, corev1.LabelTopologyZone, corev1.LabelTopologyRegion, corev1.LabelFailureDomainBetaZone,
		corev1.LabelFailureDomainBetaRegion, corev1.LabelInstanceType, corev1.LabelInstanceTypeStable,
		corev1.LabelOSStable, corev1.LabelArchStable, "beta.kubernetes.io/os", "beta.kubernetes.io/arch":
		return true
	}
	return within("kubelet.kubernetes.io") || within("node.kubernetes.io")
}
