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
