package contract

import (
	"strings"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TestDeleteOfAnotherResourceGroupIsNotFound: Get reports a providerID in
// another resource group as not found, so its claim is let go; Delete must
// agree (never touching that VM), or termination retries it forever and the
// claim never loses its finalizer.
func TestDeleteOfAnotherResourceGroupIsNotFound(t *testing.T) {
	e := newEnv(t)
	e.nodeClass(t, "gpu")
	c := claim("elsewhere", "gpu", offering("Standard_NC4as_T4_v3", "eastus-1", v1.CapacityTypeOnDemand))
	c.Status.ProviderID = "azure:///subscriptions/" + e.cloud.SubscriptionID() +
		"/resourceGroups/mc_other-rg_other-aks_eastus/providers/Microsoft.Compute/virtualMachines/elsewhere"
	if _, err := e.provider.Get(e.ctx, c.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Fatalf("Get = %v, want not found", err)
	}
	err := e.provider.Delete(e.ctx, c)
	if !cloudprovider.IsNotFound(err) {
		t.Fatalf("Delete = %v, want not found like Get", err)
	}
	for _, op := range e.cloud.Operations() {
		if strings.Contains(op, "Delete") {
			t.Errorf("Delete called %s", op)
		}
	}
}
