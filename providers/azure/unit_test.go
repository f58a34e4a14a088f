package azure

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
)

func TestGPUOf(t *testing.T) {
	tests := []struct {
		size      string
		vcpu, cap int
		want      *skuGPU
		known     bool
	}{
		{"Standard_NC4as_T4_v3", 4, 1, &skuGPU{"nvidia", "t4", 1, 16384}, true},
		{"Standard_NC64as_T4_v3", 64, 4, &skuGPU{"nvidia", "t4", 4, 16384}, true},
		{"Standard_NV6ads_A10_v5", 6, 0, &skuGPU{"nvidia", "a10", 1, 4096}, true},
		{"Standard_NV18ads_A10_v5", 18, 1, &skuGPU{"nvidia", "a10", 1, 12288}, true},
		{"Standard_NV36adms_A10_v5", 36, 1, &skuGPU{"nvidia", "a10", 1, 24576}, true},
		{"Standard_NV72ads_A10_v5", 72, 2, &skuGPU{"nvidia", "a10", 2, 24576}, true},
		{"Standard_ND96asr_v4", 96, 8, &skuGPU{"nvidia", "a100", 8, 40960}, true},
		{"Standard_ND96amsr_A100_v4", 96, 8, &skuGPU{"nvidia", "a100", 8, 81920}, true},
		{"Standard_NC40ads_H100_v5", 40, 1, &skuGPU{"nvidia", "h100-nvl", 1, 96256}, true},
		{"Standard_NC80adis_H100_v5", 80, 2, &skuGPU{"nvidia", "h100-nvl", 2, 96256}, true},
		{"Standard_ND96isr_H200_v5", 96, 8, &skuGPU{"nvidia", "h200", 8, 144384}, true},
		{"Standard_D4s_v5", 4, 0, nil, true},
		{"Standard_ND96isr_MI300X_v5", 96, 8, nil, false},
	}
	for _, tt := range tests {
		got, known := gpuOf(tt.size, tt.vcpu, tt.cap)
		if known != tt.known || !cmp.Equal(got, tt.want) {
			t.Errorf("gpuOf(%s) = %+v, %v; want %+v, %v", tt.size, got, known, tt.want, tt.known)
		}
	}
	for size, want := range map[string]string{"Standard_NC24ads_A100_v4": "NCads_A100_v4", "Standard_D2s_v5": "Ds_v5", "Basic_A0": "Basic_A"} {
		if got := sizeFamily(size); got != want {
			t.Errorf("sizeFamily(%s) = %s, want %s", size, got, want)
		}
	}
}

// respErr is an ARM error as the SDK returns it, with a body.
func respErr(status int, code, message string) error {
	body := fmt.Sprintf(`{"error":{"code":%q,"message":%q}}`, code, message)
	resp := &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: &http.Request{Method: http.MethodPut, URL: mustURL("https://management.azure.com/x")}}
	return fmt.Errorf("creating VM: %w", &azcore.ResponseError{ErrorCode: code, StatusCode: status, RawResponse: resp})
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err     error
		class   capacityClass
		od, spt time.Duration
	}{
		{respErr(409, "ZonalAllocationFailed", "no capacity"), stockout, StockoutTTL, StockoutTTL},
		{respErr(409, "AllocationFailed", ""), stockout, StockoutTTL, StockoutTTL},
		{respErr(409, "OverconstrainedZonalAllocationRequest", ""), constrained, ConstrainedTTL, ConstrainedTTL},
		{respErr(409, "SkuNotAvailable", ""), skuUnavailable, SkuUnavailableTTL, SpotUnavailableTTL},
		{respErr(409, "QuotaExceeded", ""), quota, QuotaUnavailableTTL, QuotaUnavailableTTL},
		{respErr(409, "OperationNotAllowed", "Operation could not be completed as it results in exceeding approved standardNCASv3_T4 Family Cores quota."), quota, QuotaUnavailableTTL, QuotaUnavailableTTL},
		{respErr(409, "OperationNotAllowed", "The VM is being deleted."), notCapacity, 0, 0},
		{respErr(400, "InvalidParameter", "bad"), notCapacity, 0, 0},
		{errors.New("connection reset"), notCapacity, 0, 0},
	}
	for _, tt := range tests {
		c := classify(tt.err)
		if c != tt.class || unavailableFor(c, v1.CapacityTypeOnDemand) != tt.od || unavailableFor(c, v1.CapacityTypeSpot) != tt.spt {
			t.Errorf("classify(%v) = %v (%v/%v), want %v (%v/%v)", tt.err, c, unavailableFor(c, v1.CapacityTypeOnDemand),
				unavailableFor(c, v1.CapacityTypeSpot), tt.class, tt.od, tt.spt)
		}
	}
}

func TestNamesAndProviderIDs(t *testing.T) {
	if got := vmName("gpu-a1b2c"); got != "gpu-a1b2c" {
		t.Errorf("vmName = %s", got)
	}
	long := "training-pool-with-a-very-long-name.example-" + strings.Repeat("x", 40)
	got := vmName(long)
	if len(got) > maxVMName || strings.Contains(got, ".") || got != vmName(long) || got == vmName(long+"y") {
		t.Errorf("vmName(long) = %s: must be short, dot-free, stable and distinct", got)
	}
	pid := providerID("sub", "MC_rg_aks_eastus", "gpu-1")
	if pid != "azure:///subscriptions/sub/resourceGroups/mc_rg_aks_eastus/providers/Microsoft.Compute/virtualMachines/gpu-1" {
		t.Errorf("providerID = %s", pid)
	}
	rg, name, err := ParseProviderID(pid)
	if err != nil || rg != "mc_rg_aks_eastus" || name != "gpu-1" {
		t.Errorf("ParseProviderID = %s %s %v", rg, name, err)
	}
	for _, bad := range []string{"aws:///us-east-1a/i-1", "azure:///subscriptions/s/resourceGroups/r/providers/Microsoft.Network/networkInterfaces/n", "azure://nope"} {
		if _, _, err := ParseProviderID(bad); !errors.Is(err, ErrInvalidProviderID) {
			t.Errorf("ParseProviderID(%s) = %v", bad, err)
		}
	}
	if got := ppgName("c", strings.Repeat("g", 63)); len(got) > maxPPGName {
		t.Errorf("ppgName too long: %d", len(got))
	}
	for label, want := range map[string]string{"eastus-1": "1", "westeurope-3": "3", noZone: ""} {
		if got := azureZone(label); got != want {
			t.Errorf("azureZone(%s) = %q, want %q", label, got, want)
		}
	}
}

func TestCustomDataRoundTrip(t *testing.T) {
	jc := joinConfig{
		APIServer: "https://aks.example:443", CABundle: "Q0E=", BootstrapToken: "abcdef.0123456789abcdef", ClusterDNS: "10.0.0.10",
		KubernetesVersion: "1.33.2", ProviderID: providerID("sub", "rg", "vm-1"),
		Labels:  map[string]string{"team": "ml", v1.LabelNodePool: "gpu"},
		Taints:  []corev1.Taint{v1.UnregisteredTaint, {Key: "nvidia.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}},
		MaxPods: 110, KubeReserved: map[string]string{"cpu": "80m", "memory": "2250Mi"},
		Kubelet: &azv1.KubeletConfiguration{CPUManagerPolicy: "static", TopologyManagerPolicy: "single-numa-node"},
	}
	b64, err := renderCustomData(jc)
	if err != nil {
		t.Fatal(err)
	}
	nb, err := ParseCustomData(b64)
	if err != nil {
		t.Fatal(err)
	}
	want := &NodeBootstrap{APIServer: jc.APIServer, BootstrapToken: jc.BootstrapToken, KubernetesVersion: "1.33.2", ProviderID: jc.ProviderID,
		Labels: jc.Labels, Taints: jc.Taints, MaxPods: 110, KubeReserved: jc.KubeReserved}
	if diff := cmp.Diff(want, nb); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	missing := jc
	missing.BootstrapToken, missing.CABundle = "", ""
	if _, err := renderCustomData(missing); !errors.Is(err, ErrBootstrap) || !strings.Contains(err.Error(), "bootstrap token") ||
		!strings.Contains(err.Error(), "cluster CA bundle") {
		t.Errorf("missing settings: %v, want an error naming them", err)
	}
}

func TestEventFromCondition(t *testing.T) {
	at := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	cond := func(typ, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: corev1.NodeConditionType(typ), Status: corev1.ConditionTrue, Message: msg, LastTransitionTime: metav1.NewTime(at)}
	}
	tests := []struct {
		cond     corev1.NodeCondition
		kind     cloudprovider.InterruptionKind
		deadline time.Time
		ok       bool
	}{
		{cond(ConditionPreemptionScheduled, ""), cloudprovider.InterruptionSpotReclaim, at.Add(30 * time.Second), true},
		{cond(ConditionPreemptScheduled, "NotBefore: Fri, 04 Dec 2026 12:00:45 GMT"), cloudprovider.InterruptionSpotReclaim, at.Add(45 * time.Second), true},
		{cond(ConditionVMEventScheduled, "Preempt event scheduled"), cloudprovider.InterruptionSpotReclaim, at.Add(30 * time.Second), true},
		{cond(ConditionVMEventScheduled, "Redeploy scheduled at 2026-12-06T01:00:00Z"), cloudprovider.InterruptionScheduledMaintenance, time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC), true},
		{cond(ConditionVMEventScheduled, "Reboot event scheduled"), cloudprovider.InterruptionScheduledMaintenance, time.Time{}, true},
		{cond(ConditionVMEventScheduled, "Freeze event scheduled"), "", time.Time{}, false},
	}
	for _, tt := range tests {
		ev, ok := eventFromCondition("azure:///x", tt.cond)
		if ok != tt.ok || (ok && (ev.Kind != tt.kind || !ev.Deadline.Equal(tt.deadline))) {
			t.Errorf("%s %q = %+v, %v; want %s at %v", tt.cond.Type, tt.cond.Message, ev, ok, tt.kind, tt.deadline)
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
