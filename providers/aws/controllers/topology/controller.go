// Package topology records where in EC2's network each AWS machine sits:
// the network nodes DescribeInstanceTopology reports, in the NodeClaim's
// status.topology, so people and schedulers can see which machines of a
// training gang share a switch.
package topology

import (
	"context"
	"fmt"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// Name is the controller's name.
const Name = "aws.topology"

// Retry is how often a machine EC2 has no topology for yet is asked again,
// for at most GiveUpAfter after its launch: instances report topology once
// running, and types without topology never do.
const (
	Retry       = 30 * time.Second
	GiveUpAfter = 15 * time.Minute
)

// Source reports network nodes by providerID. *aws.Provider implements it.
type Source interface {
	NetworkTopology(ctx context.Context, providerIDs []string) (map[string][]string, error)
}

// Deps are the controller's collaborators.
type Deps struct {
	// Client may be nil when the controller is registered with a manager.
	Client client.Client
	Source Source
	Clock  clock.PassiveClock
}

// Controller fills status.topology of launched AWS NodeClaims.
type Controller struct{ d Deps }

// NewController builds the controller.
func NewController(d Deps) *Controller {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	return &Controller{d: d}
}

// Name is the controller's dotted name.
func (c *Controller) Name() string { return Name }

// Register adds the controller to mgr.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if c.d.Client == nil {
		c.d.Client = mgr.GetClient()
	}
	if err := builder.ControllerManagedBy(mgr).Named(Name).For(&v1.NodeClaim{}).
		Complete(reconcile.AsReconciler[*v1.NodeClaim](mgr.GetClient(), c)); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	return nil
}

// Reconcile asks EC2 once per claim until it answers or gives up.
func (c *Controller) Reconcile(ctx context.Context, claim *v1.NodeClaim) (reconcile.Result, error) {
	ref := claim.Spec.NodeClassRef
	if ref == nil || ref.Group != awsv1.Group || claim.Status.ProviderID == "" || len(claim.Status.Topology) > 0 || !claim.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	nodes, err := c.d.Source.NetworkTopology(ctx, []string{claim.Status.ProviderID})
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("topology of nodeclaim %s: %w", claim.Name, err)
	}
	if got := nodes[claim.Status.ProviderID]; len(got) > 0 {
		before := claim.DeepCopy()
		claim.Status.Topology = got
		if err := c.d.Client.Status().Patch(ctx, claim, client.MergeFrom(before)); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
		return reconcile.Result{}, nil
	}
	launched := conditions.Get(claim.Status.Conditions, v1.ConditionLaunched)
	if launched != nil && c.d.Clock.Since(launched.LastTransitionTime.Time) > GiveUpAfter {
		return reconcile.Result{}, nil // a type EC2 has no topology for
	}
	return reconcile.Result{RequeueAfter: Retry}, nil
}
