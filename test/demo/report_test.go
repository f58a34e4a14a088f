package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stowage-k8s/stowage/pricing"
)

func TestCheapestOnDemand(t *testing.T) {
	catalog, err := pricing.Load("aws/us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	req := func(kv ...string) corev1.ResourceList {
		out := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
		}
		return out
	}
	tests := []struct {
		name    string
		req     corev1.ResourceList
		want    float64
		wantErr bool
	}{
		// 8 CPUs do not fit an 8-vCPU machine once the kubelet reserves its share.
		{"inference pod", req("cpu", "8", "memory", "16Gi", "nvidia.com/gpu", "1"), 0.95, false},
		{"too big for any machine", req("cpu", "1000"), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cheapestOnDemand(catalog, tt.req)
			if ok == tt.wantErr {
				t.Fatalf("cheapestOnDemand() ok = %v, want %v", ok, !tt.wantErr)
			}
			if ok && got != tt.want {
				t.Errorf("cheapestOnDemand() = %.4f, want %.4f", got, tt.want)
			}
		})
	}
}

func TestChoices(t *testing.T) {
	tests := []struct {
		offerings, pods int
		want            string
	}{
		{1, 1, "the only offering that holds its pod"},
		{1, 3, "the only offering that holds its 3 pods"},
		{20, 1, "the cheapest offering that holds its pod, 19 more kept as launch fallbacks"},
		{2, 4, "the cheapest offering that holds its 4 pods, 1 more kept as a launch fallback"},
	}
	for _, tt := range tests {
		if got := choices(tt.offerings, tt.pods); got != tt.want {
			t.Errorf("choices(%d, %d) = %q, want %q", tt.offerings, tt.pods, got, tt.want)
		}
	}
}
