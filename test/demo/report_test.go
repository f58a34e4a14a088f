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
