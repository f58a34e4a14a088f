package validation

import (
	"encoding/json"
	"testing"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// FuzzNodePool decodes arbitrary JSON as an informer would (tolerantly) and
// validates it: neither may panic, and a pool that validates still does
// after a round trip through JSON, so what the controller writes back is
// what it accepted.
func FuzzNodePool(f *testing.F) {
	for _, s := range []string{
		`{"metadata":{"name":"a"},"spec":{"template":{"spec":{"expireAfter":"720h","taints":[{"key":"gpu","effect":"NoSchedule"}]}}}}`,
		`{"metadata":{"name":"b"},"spec":{"limits":{"cpu":"1e400"},"template":{"spec":{"expireAfter":"99999999999999h"}}}}`,
		`{"metadata":{"name":"c"},"spec":{"weight":50,"disruption":{"consolidateAfter":"Never","budgets":[{"nodes":"10%","schedule":"0 9 * * mon-fri","duration":"8h"}]},"template":{"spec":{"requirements":[{"key":"stowage.dev/gpu-count","operator":"Gt","values":["3"]}],"terminationGracePeriod":"soon"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var np v1.NodePool
		if err := json.Unmarshal(data, &np); err != nil {
			return
		}
		if len(NodePool(&np)) > 0 {
			return
		}
		b, err := json.Marshal(&np)
		if err != nil {
			t.Fatalf("a valid pool does not encode: %v", err)
		}
		var again v1.NodePool
		if err := json.Unmarshal(b, &again); err != nil {
			t.Fatalf("a valid pool's JSON does not decode: %v\n%s", err, b)
		}
		if errs := NodePool(&again); len(errs) > 0 {
			t.Fatalf("a valid pool is invalid after a JSON round trip: %v\n%s", errs.ToAggregate(), b)
		}
	})
}
