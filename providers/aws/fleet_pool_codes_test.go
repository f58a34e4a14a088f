package aws

import (
	"context"
	"testing"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// A subnet with no free addresses, or a type EC2 does not sell in a zone
// after all, fails only that pool, as capacity does: the pool is set aside
// for a while and the claim moves on. As a plain error the claim retries the
// same pool until it times out, and the next plan picks it again.
func TestPoolErrorsThatMeanNoCapacity(t *testing.T) {
	for _, code := range []string{"InsufficientFreeAddressesInSubnet", "Unsupported"} {
		t.Run(code, func(t *testing.T) {
			e := newEnv(t)
			e.ec2.noCapacity["g5.xlarge/us-east-1a/on-demand"] = code
			c := claim("full-"+code, choice("g5.xlarge", zoneA, "on-demand"))
			_, err := e.p.Create(context.Background(), c)
			if !cloudprovider.IsInsufficientCapacity(err) {
				t.Fatalf("err = %v, want insufficient capacity naming the pool", err)
			}
			if !e.p.Unavailable().IsUnavailable(cloudprovider.ChoiceID(c.Spec.Offerings[0])) {
				t.Error("the pool is not set aside, so the solver plans it again")
			}
		})
	}
}
