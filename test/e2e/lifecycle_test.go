//go:build unix

package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/fake"
)

// TestLifecycle drives hand-made NodeClaims through the real API server, the
// fake cloud and kwok: launch, capacity fallback, registration, and a crash
// in the middle of a launch.
func TestLifecycle(t *testing.T) {
	cl := lifeStartCluster(t)
	c := cl.cp.Client
	ctx := context.Background()
	mgr := lifeStartManager(t, cl.cp, cl.cloud, cl.cloud.Unavailable())

	t.Run("becomes ready", func(t *testing.T) {
		claim := lifeClaim("life-ready", lifeOffering("g5.xlarge", "us-east-1a", v1.CapacityTypeSpot))
		if err := c.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
		claim = lifeWaitReady(t, c, claim.Name)
		if claim.Status.InstanceType != "g5.xlarge" || claim.Status.Zone != "us-east-1a" ||
			claim.Status.CapacityType != v1.CapacityTypeSpot || claim.Status.PricePerHour == "" {
			t.Errorf("status does not describe the launch: %+v", claim.Status)
		}
		node := &corev1.Node{}
		if err := c.Get(ctx, client.ObjectKey{Name: claim.Status.NodeName}, node); err != nil {
			t.Fatalf("node %q: %v", claim.Status.NodeName, err)
		}
		if node.Spec.ProviderID != claim.Status.ProviderID {
			t.Errorf("node providerID %s, claim %s", node.Spec.ProviderID, claim.Status.ProviderID)
		}
		for k, want := range map[string]string{v1.LabelNodePool: "e2e", "team": "ml", v1.LabelNodeClaim: claim.Name,
			v1.LabelRegistered: "true", v1.LabelInitialized: "true", v1.LabelCapacityType: v1.CapacityTypeSpot} {
			if got := node.Labels[k]; got != want {
				t.Errorf("node label %s = %q, want %q", k, got, want)
			}
		}
		for _, taint := range node.Spec.Taints {
			if taint.Key == v1.UnregisteredTaintKey {
				t.Errorf("unregistered taint left on node: %v", node.Spec.Taints)
			}
		}
		if !slices.Contains(node.Finalizers, v1.TerminationFinalizer) {
			t.Errorf("node finalizers = %v, want the termination finalizer", node.Finalizers)
		}
		if n := lifeMachinesOf(t, cl.cloud, claim.Name); n != 1 {
			t.Errorf("%d machines for the claim, want 1", n)
		}
	})

	t.Run("falls back past a capacity error", func(t *testing.T) {
		failing := lifeOffering("g5.xlarge", "us-east-1b", v1.CapacityTypeSpot)
		cl.cloud.InjectInsufficientCapacity(cloudprovider.ChoiceID(failing))
		claim := lifeClaim("life-fallback", failing, lifeOffering("g5.xlarge", "us-east-1c", v1.CapacityTypeOnDemand))
		if err := c.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
		claim = lifeWaitReady(t, c, claim.Name)
		if claim.Status.Zone != "us-east-1c" || claim.Status.CapacityType != v1.CapacityTypeOnDemand {
			t.Errorf("launched %s/%s, want the fallback us-east-1c/on-demand", claim.Status.Zone, claim.Status.CapacityType)
		}
		// status.unavailableOfferings is filled only when the provider reports
		// the offerings it walked past (see the lifecycle unit tests); the fake
		// cloud does not report them yet.
	})

	t.Run("no capacity anywhere deletes the claim", func(t *testing.T) {
		failing := lifeOffering("g5.xlarge", "us-east-1d", v1.CapacityTypeSpot)
		cl.cloud.InjectInsufficientCapacity(cloudprovider.ChoiceID(failing))
		claim := lifeClaim("life-nocapacity", failing)
		if err := c.Create(ctx, claim); err != nil {
			t.Fatal(err)
		}
		lifeWaitGone(t, c, claim)
		if n := lifeMachinesOf(t, cl.cloud, claim.Name); n != 0 {
			t.Errorf("%d machines for a claim that never launched", n)
		}
	})

	t.Run("unowned machine is garbage collected", func(t *testing.T) {
		ghost := lifeClaim("life-ghost", lifeOffering("m5.large", "us-east-1a", v1.CapacityTypeOnDemand))
		ghost.UID = "ghost-uid"
		if _, err := cl.cloud.Create(ctx, ghost); err != nil {
			t.Fatal(err)
		}
		lifeEventually(t, "ghost machine deleted", func(context.Context) (bool, error) {
			return lifeMachinesOf(t, cl.cloud, ghost.Name) == 0, nil
		})
	})
	mgr.halt(t)

	// A controller that dies after the cloud launched but before the claim
	// recorded it must, once restarted, adopt that machine rather than buy a
	// second one; and a claim deleted while no controller ran must not leak it.
	t.Run("crash mid-launch", func(t *testing.T) {
		for _, deleteWhileDown := range []bool{false, true} {
			name := "life-crash"
			if deleteWhileDown {
				name = "life-crash-deleted"
			}
			crashing := &lifeCrashingCloud{CloudProvider: lifeNewCloud(t, cl.cp), launched: make(chan string, 1)}
			first := lifeStartManager(t, cl.cp, crashing, nil)
			claim := lifeClaim(name, lifeOffering("g5.xlarge", "us-east-1a", v1.CapacityTypeOnDemand))
			if err := c.Create(ctx, claim); err != nil {
				t.Fatal(err)
			}
			var launched string
			select {
			case launched = <-crashing.launched:
			case <-time.After(lifeWait):
				t.Fatal("the crashing controller never launched a machine")
			}
			first.halt(t)
			if err := c.Get(ctx, client.ObjectKeyFromObject(claim), claim); err != nil {
				t.Fatal(err)
			}
			if claim.Status.ProviderID != "" || !slices.Contains(claim.Finalizers, v1.TerminationFinalizer) {
				t.Fatalf("crash must leave a claim with its finalizer and no providerID, got %q %v",
					claim.Status.ProviderID, claim.Finalizers)
			}
			if deleteWhileDown {
				if err := c.Delete(ctx, claim); err != nil {
					t.Fatal(err)
				}
			}

			restarted := lifeNewCloud(t, cl.cp)
			second := lifeStartManager(t, cl.cp, restarted, restarted.Unavailable())
			if deleteWhileDown {
				lifeWaitGone(t, c, claim)
			} else {
				claim = lifeWaitReady(t, c, name)
				if claim.Status.ProviderID != launched {
					t.Errorf("restarted controller recorded %s, want the machine launched before the crash %s",
						claim.Status.ProviderID, launched)
				}
			}
			want := 1
			if deleteWhileDown {
				want = 0
			}
			if n := lifeMachinesOf(t, restarted, name); n != want {
				t.Errorf("%d machines for %s, want %d", n, name, want)
			}
			nodes := &corev1.NodeList{}
			if err := c.List(ctx, nodes); err != nil {
				t.Fatal(err)
			}
			count := 0
			for _, n := range nodes.Items {
				if n.Spec.ProviderID == launched && n.DeletionTimestamp.IsZero() {
					count++
				}
			}
			if count != want {
				t.Errorf("%d live nodes for machine %s, want %d", count, launched, want)
			}
			second.halt(t)
		}
	})
}

// lifeCrashingCloud launches, then hangs until the process "dies": the
// machine exists but the controller never learns of it.
type lifeCrashingCloud struct {
	cloudprovider.CloudProvider
	launched chan string
}

func (c *lifeCrashingCloud) Create(ctx context.Context, claim *v1.NodeClaim) (*v1.NodeClaim, error) {
	out, err := c.CloudProvider.Create(ctx, claim)
	if err != nil {
		return nil, err
	}
	select {
	case c.launched <- out.Status.ProviderID:
	default:
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// lifeMachinesOf counts the cloud's machines labelled for the claim.
func lifeMachinesOf(t *testing.T, cloud *fake.Cloud, claim string) int {
	t.Helper()
	n := 0
	for _, m := range lifeMachines(t, cloud) {
		if m.Labels[v1.LabelNodeClaim] == claim {
			n++
		}
	}
	return n
}
