package pricing

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestKubeReservedCPU(t *testing.T) {
	// Expected values worked by hand from the tier table.
	tests := []struct {
		vcpu int
		want int64
	}{
		{1, 60},
		{2, 70},
		{3, 75},
		{4, 80},
		{8, 90},
		{96, 310},
		{192, 550},
	}
	for _, tt := range tests {
		if got := kubeReservedCPUMilli(tt.vcpu); got != tt.want {
			t.Errorf("kubeReservedCPUMilli(%d) = %dm, want %dm", tt.vcpu, got, tt.want)
		}
	}
}

func TestKubeReservedMemory(t *testing.T) {
	tests := []struct {
		name      string
		f         func(int64, int) int64
		memoryMiB int64
		maxPods   int
		want      int64
	}{
		{"eks m5.large", eksReservedMemory, 8 << 10, 29, 574},
		{"eks p5.48xlarge", eksReservedMemory, 2 << 20, 100, 1355},
		{"gke under 1GiB", gkeReservedMemory, 614, 110, 255},
		{"gke 4GiB", gkeReservedMemory, 4 << 10, 110, 1024},
		{"gke 16GiB", gkeReservedMemory, 16 << 10, 110, 1024 + 819 + 819},
		{"gke 256GiB", gkeReservedMemory, 256 << 10, 110, 1024 + 819 + 819 + 6881 + 2621},
		{"aks 110 pods", aksReservedMemory, 64 << 10, 110, 2250},
		{"aks capped at a quarter", aksReservedMemory, 4 << 10, 110, 1024},
	}
	for _, tt := range tests {
		if got := tt.f(tt.memoryMiB, tt.maxPods); got != tt.want {
			t.Errorf("%s: reserved %d MiB, want %d MiB", tt.name, got, tt.want)
		}
	}
}

func TestOverhead(t *testing.T) {
	got := overhead("aws", 2, 8<<10, 29)
	want := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("70m"),
		corev1.ResourceMemory: resource.MustParse("674Mi"), // 574Mi kube-reserved + 100Mi eviction
	}
	total := got.Total()
	for k, w := range want {
		if q := total[k]; q.Cmp(w) != 0 {
			t.Errorf("total overhead %s = %s, want %s", k, q.String(), w.String())
		}
	}
	if diff := cmp.Diff([]corev1.ResourceName{corev1.ResourceMemory}, keys(got.EvictionThreshold)); diff != "" {
		t.Errorf("eviction threshold resources (-want +got):\n%s", diff)
	}
}

func keys(l corev1.ResourceList) []corev1.ResourceName {
	var out []corev1.ResourceName
	for k := range l {
		out = append(out, k)
	}
	return out
}
