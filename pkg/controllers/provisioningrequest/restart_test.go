package provisioningrequest

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/controllers/provisioning"
	"github.com/stowage-k8s/stowage/pkg/solver"
	"github.com/stowage-k8s/stowage/pkg/state"
)

type restartTypes struct{}

func (restartTypes) InstanceTypes(context.Context, *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	return []*cloudprovider.InstanceType{{
		Name: "p5.48xlarge",
		Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("192"), corev1.ResourceMemory: resource.MustParse("2048Gi"),
			corev1.ResourcePods: resource.MustParse("110"), v1.ResourceNvidiaGPU: resource.MustParse("8")},
		Offerings: []cloudprovider.Offering{{Zone: "z", CapacityType: v1.CapacityTypeOnDemand, PricePerHour: 98.32, Available: true}},
	}}, nil
}

// leader is one replica's provisioning and ProvisioningRequest controllers
// over a shared API server, each with its own in-memory view.
type leader struct {
	cluster *state.Cluster
	prs     *Controller
	prov    *provisioning.Controller
}

func (e *env) leader(t *testing.T) *leader {
	t.Helper()
	l := &leader{cluster: state.NewCluster(e.clock)}
	l.cluster.UpdateNodePool(&v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"},
		Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{ExpireAfter: v1.Never}}}})
	claims := &v1.NodeClaimList{}
	if err := e.c.List(context.Background(), claims); err != nil {
		t.Fatal(err)
	}
	for i := range claims.Items {
		l.cluster.UpdateNodeClaim(&claims.Items[i])
	}
	l.prs = NewController(Deps{Client: e.c, Cluster: l.cluster, Clock: e.clock})
	l.prov = provisioning.NewController(provisioning.Deps{Client: e.c, Cluster: l.cluster, CloudProvider: restartTypes{},
		Solver: provisioning.SolverFunc(func(ctx context.Context, s *solver.Snapshot) (*solver.Plan, error) { return solver.Solve(ctx, s) }),
		Clock:  e.clock, Demands: l.prs})
	return l
}

func (l *leader) step(t *testing.T, e *env) {
	t.Helper()
	pr := e.get(t, "job")
	if _, err := l.prs.Reconcile(context.Background(), pr); err != nil {
		t.Fatal(err)
	}
	if _, err := l.prov.Schedule(context.Background(), provisioning.Window{Opened: e.clock.Now(), Closed: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	pr = e.get(t, "job")
	if _, err := l.prs.Reconcile(context.Background(), pr); err != nil {
		t.Fatal(err)
	}
}

// A best-effort-atomic request is Provisioned only once all its machines
// launched, and a machine that cannot be bought makes it plan again (up to
// MaxAttempts), not fail. A leader change while the machines launch loses
// the request's in-memory phase and booking: the new leader plans the
// stand-ins again, finds them room on the very machines still launching,
// and calls the request Provisioned (CapacityIsFound) before anything
// launched; a machine that then fails to launch revokes the capacity for
// good instead of replanning.
func TestBestEffortAtomicRequestSurvivesALeaderChange(t *testing.T) {
	const class = provreqv1.ProvisioningClassBestEffortAtomicScaleUp
	e := newEnv(t, template("workers", "8"), request("job", class, podSet("workers", 2)))
	old := e.leader(t)
	old.step(t, e)
	claims := &v1.NodeClaimList{}
	if err := e.c.List(context.Background(), claims); err != nil {
		t.Fatal(err)
	}
	if len(claims.Items) != 2 || conds(e.get(t, "job"))[provreqv1.Provisioned] != "False/Provisioning" {
		t.Fatalf("setup: %d claims, conditions %v; want 2 machines being bought", len(claims.Items), conds(e.get(t, "job")))
	}

	// The leader changes before either machine launched.
	l := e.leader(t)
	l.step(t, e)
	if err := e.c.List(context.Background(), claims); err != nil {
		t.Fatal(err)
	}
	if len(claims.Items) != 2 {
		t.Errorf("%d claims after the leader change, want the 2 already bought", len(claims.Items))
	}
	got := conds(e.get(t, "job"))[provreqv1.Provisioned]
	if got == "True/CapacityIsFound" || got == "True/CapacityIsProvisioned" {
		t.Errorf("Provisioned = %s after the leader change, though neither machine has launched", got)
	}

	// One machine runs out of capacity at launch: the lifecycle deletes it
	// and its gang sibling.
	for i := range claims.Items {
		c := &claims.Items[i]
		if err := e.c.Delete(context.Background(), c); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		l.cluster.DeleteNodeClaim(c.Name)
	}
	if _, err := l.prs.Reconcile(context.Background(), e.get(t, "job")); err != nil {
		t.Fatal(err)
	}
	c := conds(e.get(t, "job"))
	if c[provreqv1.CapacityRevoked] != "" || c[provreqv1.Failed] != "" {
		t.Errorf("conditions %v after a launch failure: want the request planned again (Replanning), as without a leader change", c)
	}
}
