// Package nodeclass resolves an AKSNodeClass into its status (the node image
// version per architecture and the kubelet version) and checks that its
// subnet and groups exist, saying in conditions what is missing. A node
// class that is not Ready gets no VMs.
package nodeclass

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
)

// Name is the controller's name.
const Name = "azure.nodeclass"

// DefaultResync is how often a node class is resolved again: AKS publishes
// node images weekly, without any change to the object.
const DefaultResync = 5 * time.Minute

// Condition reasons.
const (
	ReasonResolved = "Resolved"
	ReasonNotFound = "NotFound"
	ReasonAPIError = "AzureAPIError"
	ReasonNotUsed  = "NotUsed"
	ReasonNotReady = "NotReady"
	ReasonReady    = "Ready"
)

// Deps are the controller's collaborators.
type Deps struct {
	// Client may be nil when the controller is registered with a manager.
	Client            client.Client
	Images            CommunityGalleryImageVersionsAPI
	Subnets           SubnetsAPI
	ReservationGroups CapacityReservationGroupsAPI
	PPGs              ProximityPlacementGroupsAPI
	Location          string
	// ServerVersion returns the API server's version (e.g. v1.33.2), the
	// kubelet version when the node class does not pin one. Default: the
	// manager's discovery client.
	ServerVersion func(ctx context.Context) (string, error)
	Clock         clock.PassiveClock
	// Resync defaults to DefaultResync.
	Resync time.Duration
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Controller reconciles AKSNodeClass status.
type Controller struct {
	d Deps
}

// NewController builds the controller.
func NewController(d Deps) *Controller {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Resync <= 0 {
		d.Resync = DefaultResync
	}
	d.Location = strings.ToLower(d.Location)
	return &Controller{d: d}
}

// Name is the controller's dotted name.
func (c *Controller) Name() string { return Name }

// Register adds the controller to mgr.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if c.d.Client == nil {
		c.d.Client = mgr.GetClient()
	}
	if c.d.ServerVersion == nil {
		dc, err := discovery.NewDiscoveryClientForConfig(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("registering %s: %w", Name, err)
		}
		c.d.ServerVersion = func(context.Context) (string, error) {
			v, err := dc.ServerVersion()
			if err != nil {
				return "", err
			}
			return v.GitVersion, nil
		}
	}
	opts := controller.Options{}
	if c.d.SkipNameValidation {
		opts.SkipNameValidation = &c.d.SkipNameValidation
	}
	if err := builder.ControllerManagedBy(mgr).Named(Name).For(&azv1.AKSNodeClass{}).WithOptions(opts).
		Complete(reconcile.AsReconciler[*azv1.AKSNodeClass](mgr.GetClient(), c)); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	return nil
}

// kubeVersionRe takes major.minor.patch out of a server version such as
// v1.33.2-aks.1.
var kubeVersionRe = regexp.MustCompile(`^v?(1\.[0-9]+\.[0-9]+)`)

// Reconcile resolves the node class, sets one condition per part and Ready,
// and patches status once.
func (c *Controller) Reconcile(ctx context.Context, nc *azv1.AKSNodeClass) (reconcile.Result, error) {
	if !nc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	before := nc.DeepCopy()
	set := func(cond string, ok bool, reason, msg string) {
		status := metav1.ConditionTrue
		if !ok {
			status = metav1.ConditionFalse
		}
		conditions.Set(&nc.Status.Conditions, c.d.Clock, nc.Generation, cond, status, reason, msg)
	}
	var apiErrs []error
	// unavailable records an outage (throttling, a passing API error) the
	// workqueue retries. A condition True for the current spec stays so: what
	// it resolved is still right, and a throttled read must not stop every
	// launch of the class until the next reconcile.
	unavailable := func(cond string, err error, msg string) {
		apiErrs = append(apiErrs, err)
		if cur := conditions.Get(nc.Status.Conditions, cond); cur != nil && cur.Status == metav1.ConditionTrue && cur.ObservedGeneration == nc.Generation {
			return
		}
		set(cond, false, ReasonAPIError, msg)
	}
	// failed records a lookup error: NotFound is the spec's fault, anything
	// else an outage.
	failed := func(cond string, err error) {
		if errors.Is(err, errNotFound) {
			set(cond, false, ReasonNotFound, err.Error())
			return
		}
		unavailable(cond, err, err.Error())
	}

	if images, err := resolveImages(ctx, c.d.Images, c.d.Location, nc.Spec.Image, c.d.Clock.Now()); err != nil {
		if errors.Is(err, errNotFound) {
			nc.Status.Images = nil
		}
		failed(azv1.ConditionImageReady, err)
	} else {
		nc.Status.Images = images
		set(azv1.ConditionImageReady, true, ReasonResolved, fmt.Sprintf("%s %s", familyOf(nc), images[0].Version))
	}

	if prefix, err := checkSubnet(ctx, c.d.Subnets, nc.Spec.SubnetID); err != nil {
		failed(azv1.ConditionSubnetReady, err)
	} else {
		set(azv1.ConditionSubnetReady, true, ReasonResolved, "subnet "+prefix)
	}

	if id := nc.Spec.CapacityReservationGroup; id == "" {
		set(azv1.ConditionCapacityReservationGroupReady, true, ReasonNotUsed, "no capacity reservation group")
	} else if err := checkGroup(ctx, id, "capacity reservation group", func(ctx context.Context, rg, name string) error {
		_, err := c.d.ReservationGroups.Get(ctx, rg, name, nil)
		return err
	}); err != nil {
		failed(azv1.ConditionCapacityReservationGroupReady, err)
	} else {
		set(azv1.ConditionCapacityReservationGroupReady, true, ReasonResolved, "reserved VMs are offered first")
	}

	if id := nc.Spec.ProximityPlacementGroup; id == "" {
		set(azv1.ConditionProximityPlacementGroupReady, true, ReasonNotUsed, "placement groups of claims get their own proximity placement group")
	} else if err := checkGroup(ctx, id, "proximity placement group", func(ctx context.Context, rg, name string) error {
		_, err := c.d.PPGs.Get(ctx, rg, name, nil)
		return err
	}); err != nil {
		failed(azv1.ConditionProximityPlacementGroupReady, err)
	} else {
		set(azv1.ConditionProximityPlacementGroupReady, true, ReasonResolved, "every VM joins it")
	}

	if v := nc.Spec.KubernetesVersion; v != "" {
		nc.Status.KubernetesVersion = v
		set(azv1.ConditionKubernetesVersionReady, true, ReasonResolved, "spec.kubernetesVersion "+v)
	} else if sv, err := c.d.ServerVersion(ctx); err != nil {
		unavailable(azv1.ConditionKubernetesVersionReady, err, "reading the API server's version: "+err.Error())
	} else if m := kubeVersionRe.FindStringSubmatch(sv); m == nil {
		set(azv1.ConditionKubernetesVersionReady, false, ReasonNotFound, fmt.Sprintf("API server version %q is not 1.x.y; set spec.kubernetesVersion", sv))
	} else {
		nc.Status.KubernetesVersion = m[1]
		set(azv1.ConditionKubernetesVersionReady, true, ReasonResolved, "the API server's version "+m[1])
	}

	var notReady []string
	for _, cond := range []string{azv1.ConditionImageReady, azv1.ConditionSubnetReady, azv1.ConditionCapacityReservationGroupReady,
		azv1.ConditionProximityPlacementGroupReady, azv1.ConditionKubernetesVersionReady} {
		if !conditions.IsTrue(nc.Status.Conditions, cond) {
			notReady = append(notReady, cond+": "+conditions.Get(nc.Status.Conditions, cond).Message)
		}
	}
	if len(notReady) == 0 {
		set(azv1.ConditionReady, true, ReasonReady, "image, subnet, groups and Kubernetes version resolved")
	} else {
		set(azv1.ConditionReady, false, ReasonNotReady, strings.Join(notReady, "; "))
	}

	if err := c.d.Client.Status().Patch(ctx, nc, client.MergeFrom(before)); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(fmt.Errorf("patching AKSNodeClass %s status: %w", nc.Name, err))
	}
	if was, now := conditions.Get(before.Status.Conditions, azv1.ConditionReady), conditions.Get(nc.Status.Conditions, azv1.ConditionReady); was == nil || was.Status != now.Status {
		log.FromContext(ctx).Info("AKSNodeClass resolved", "aksnodeclass", nc.Name, "ready", now.Status, "message", now.Message)
	}
	if len(apiErrs) > 0 {
		log.FromContext(ctx).Error(apiErrs[0], "resolving AKSNodeClass", "aksnodeclass", nc.Name, "failures", len(apiErrs))
		return reconcile.Result{}, fmt.Errorf("resolving AKSNodeClass %s: %w", nc.Name, apiErrs[0])
	}
	return reconcile.Result{RequeueAfter: c.d.Resync}, nil
}

func familyOf(nc *azv1.AKSNodeClass) string {
	if nc.Spec.Image.Family == "" {
		return azv1.ImageFamilyUbuntu2204
	}
	return nc.Spec.Image.Family
}
