// Package nodeclass resolves an EC2NodeClass's selectors (subnets, security
// groups, images, capacity reservations, instance profile) into its status,
// says in conditions what is missing, and cleans up what Stowage made for a
// node class once it is deleted.
package nodeclass

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// Name is the controller's name.
const Name = "aws.nodeclass"

// DefaultResync is how often a node class is resolved again: new image
// releases, subnets and reservations appear without any change to the object.
const DefaultResync = 5 * time.Minute

// finalizeRequeue is how often a deleting node class checks whether its
// NodeClaims are gone.
const finalizeRequeue = 10 * time.Second

// Condition reasons.
const (
	ReasonResolved    = "Resolved"
	ReasonNoMatch     = "NoMatch"
	ReasonAPIError    = "DescribeFailed"
	ReasonNotReady    = "NotReady"
	ReasonAllResolve  = "Ready"
	ReasonInvalid     = "Invalid"
	ReasonNotNeeded   = "NotNeeded"
	ReasonTerminating = "Terminating"
)

// Cleaner deletes what the provider made for a node class: its launch
// templates. *aws.Provider implements it.
type Cleaner interface {
	DeleteLaunchTemplates(ctx context.Context, nodeClass string) error
}

// Deps are the controller's collaborators.
type Deps struct {
	// Client may be nil when the controller is registered with a manager.
	Client client.Client
	EC2    EC2API
	// SSM reads the public image parameters aliases resolve through.
	SSM SSMAPI
	// IAM creates the instance profile for spec.role. Without it the
	// profile is assumed to exist under the role's own name.
	IAM IAMAPI
	// ClusterName names and tags the instance profiles the controller makes.
	ClusterName string
	// Join is checked on every node class: nodes cannot join without it.
	Join JoinSettings
	// KubernetesVersion is the cluster's minor version for aliases. When nil,
	// Register asks the manager's API server.
	KubernetesVersion VersionFunc
	// ParameterRoot replaces /aws/service in SSM paths. Only tests set it:
	// moto refuses parameter names under /aws.
	ParameterRoot string
	// Cleaner deletes a deleted node class's launch templates; nil skips that.
	Cleaner Cleaner
	Clock   clock.Clock
	// Resync defaults to DefaultResync.
	Resync time.Duration
}

// Controller reconciles EC2NodeClass status and deletion.
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
	if d.ParameterRoot == "" {
		d.ParameterRoot = DefaultParameterRoot
	}
	return &Controller{d: d}
}

// Name is the controller's dotted name.
func (c *Controller) Name() string { return Name }

// Register adds the controller, and its sweep of orphaned instance profiles,
// to mgr. A controller built without a client uses the manager's.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if c.d.Client == nil {
		c.d.Client = mgr.GetClient()
	}
	if c.d.KubernetesVersion == nil {
		v, err := ServerVersion(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("registering %s: %w", Name, err)
		}
		c.d.KubernetesVersion = v
	}
	if err := builder.ControllerManagedBy(mgr).Named(Name).For(&awsv1.EC2NodeClass{}).
		Complete(reconcile.AsReconciler[*awsv1.EC2NodeClass](mgr.GetClient(), c)); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	if c.d.IAM != nil {
		if err := mgr.Add(manager.RunnableFunc(c.sweepLoop)); err != nil {
			return fmt.Errorf("registering %s sweep: %w", Name, err)
		}
	}
	return nil
}

// Reconcile resolves every selector, sets one condition per part and Ready,
// and patches status once. A deleting node class is finalized instead.
func (c *Controller) Reconcile(ctx context.Context, nc *awsv1.EC2NodeClass) (reconcile.Result, error) {
	if !nc.DeletionTimestamp.IsZero() {
		return c.finalize(ctx, nc)
	}
	if !controllerutil.ContainsFinalizer(nc, awsv1.Finalizer) {
		before := nc.DeepCopy()
		controllerutil.AddFinalizer(nc, awsv1.Finalizer)
		if err := c.d.Client.Patch(ctx, nc, client.MergeFrom(before)); err != nil {
			return reconcile.Result{}, fmt.Errorf("adding finalizer to EC2NodeClass %s: %w", nc.Name, client.IgnoreNotFound(err))
		}
	}
	logger := log.FromContext(ctx).WithValues("ec2nodeclass", nc.Name)
	before := nc.DeepCopy()
	s := status{nc: nc, clock: c.d.Clock}
	var apiErrs []error

	subnets, err := resolveSubnets(ctx, c.d.EC2, nc.Spec.SubnetSelectorTerms)
	switch {
	case err != nil:
		apiErrs = append(apiErrs, err)
		s.apiError(awsv1.ConditionSubnetsReady, err)
	case len(subnets) == 0:
		nc.Status.Subnets = nil
		s.set(awsv1.ConditionSubnetsReady, false, ReasonNoMatch, "no subnet matches spec.subnetSelectorTerms: "+termsString(nc.Spec.SubnetSelectorTerms))
	default:
		nc.Status.Subnets = subnets
		s.set(awsv1.ConditionSubnetsReady, true, ReasonResolved, fmt.Sprintf("%d subnets in %d zones", len(subnets), zoneCount(subnets)))
	}

	groups, err := resolveSecurityGroups(ctx, c.d.EC2, nc.Spec.SecurityGroupSelectorTerms)
	switch {
	case err != nil:
		apiErrs = append(apiErrs, err)
		s.apiError(awsv1.ConditionSecurityGroupsReady, err)
	case len(groups) == 0:
		nc.Status.SecurityGroups = nil
		s.set(awsv1.ConditionSecurityGroupsReady, false, ReasonNoMatch, "no security group matches spec.securityGroupSelectorTerms: "+termsString(nc.Spec.SecurityGroupSelectorTerms))
	default:
		nc.Status.SecurityGroups = make([]awsv1.SecurityGroup, len(groups))
		for i, g := range groups {
			nc.Status.SecurityGroups[i] = awsv1.SecurityGroup{ID: aws.ToString(g.GroupId), Name: aws.ToString(g.GroupName)}
		}
		s.set(awsv1.ConditionSecurityGroupsReady, true, ReasonResolved, fmt.Sprintf("%d security groups", len(groups)))
	}
	switch {
	case nc.Spec.EFA == awsv1.EFADisabled:
		s.set(awsv1.ConditionEFAReady, true, ReasonNotNeeded, "spec.efa is Disabled")
	case err == nil && len(groups) > 0:
		ok, msg := efaReady(groups)
		s.set(awsv1.ConditionEFAReady, ok, map[bool]string{true: ReasonResolved, false: ReasonInvalid}[ok], msg)
	}

	if err := c.resolveImages(ctx, &s); err != nil {
		apiErrs = append(apiErrs, err)
	}

	if len(nc.Spec.CapacityReservationSelectorTerms) == 0 {
		nc.Status.CapacityReservations = nil
		s.set(awsv1.ConditionCapacityReservationsReady, true, ReasonNotNeeded, "no spec.capacityReservationSelectorTerms: no reservation is used")
	} else if res, err := resolveReservations(ctx, c.d.EC2, nc.Spec.CapacityReservationSelectorTerms); err != nil {
		apiErrs = append(apiErrs, err)
		s.apiError(awsv1.ConditionCapacityReservationsReady, err)
	} else {
		nc.Status.CapacityReservations = res
		s.set(awsv1.ConditionCapacityReservationsReady, true, ReasonResolved, fmt.Sprintf("%d active reservations", len(res)))
	}

	if err := c.resolveInstanceProfile(ctx, &s); err != nil {
		apiErrs = append(apiErrs, err)
	}

	if nc.Family() == awsv1.AMIFamilyCustom {
		s.set(awsv1.ConditionJoinSettingsReady, true, ReasonNotNeeded, "amiFamily Custom: spec.userData joins the node")
	} else if err := c.d.Join.Validate(); err != nil {
		s.set(awsv1.ConditionJoinSettingsReady, false, ReasonInvalid, err.Error())
	} else {
		s.set(awsv1.ConditionJoinSettingsReady, true, ReasonResolved, "cluster endpoint, CA bundle and service CIDR are set")
	}

	var notReady []string
	for _, cond := range []string{awsv1.ConditionSubnetsReady, awsv1.ConditionSecurityGroupsReady, awsv1.ConditionAMIsReady,
		awsv1.ConditionInstanceProfileReady, awsv1.ConditionCapacityReservationsReady, awsv1.ConditionJoinSettingsReady} {
		if !conditions.IsTrue(nc.Status.Conditions, cond) {
			notReady = append(notReady, cond+": "+conditions.Get(nc.Status.Conditions, cond).Message)
		}
	}
	if len(notReady) == 0 {
		s.set(awsv1.ConditionReady, true, ReasonAllResolve, "subnets, security groups, images, instance profile and join settings resolved")
	} else {
		s.set(awsv1.ConditionReady, false, ReasonNotReady, strings.Join(notReady, "; "))
	}

	if err := c.d.Client.Status().Patch(ctx, nc, client.MergeFrom(before)); err != nil {
		return reconcile.Result{}, fmt.Errorf("patching EC2NodeClass %s status: %w", nc.Name, client.IgnoreNotFound(err))
	}
	if len(apiErrs) > 0 {
		// Let the workqueue back off; status already says what failed.
		logger.Error(apiErrs[0], "resolving EC2NodeClass", "failures", len(apiErrs))
		return reconcile.Result{}, fmt.Errorf("resolving EC2NodeClass %s: %w", nc.Name, apiErrs[0])
	}
	return reconcile.Result{RequeueAfter: c.d.Resync}, nil
}

// status sets conditions at the node class's generation.
type status struct {
	nc    *awsv1.EC2NodeClass
	clock clock.PassiveClock
}

// apiError records that cond could not be resolved now. A condition that
// is True for the current spec stays so: its values in the status are still
// right, and a throttled describe must not stop every launch of the class
// until the next reconcile (the error is returned and retried).
func (s status) apiError(cond string, err error) {
	if c := conditions.Get(s.nc.Status.Conditions, cond); c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == s.nc.Generation {
		return
	}
	s.set(cond, false, ReasonAPIError, err.Error())
}

func (s status) set(cond string, ok bool, reason, msg string) {
	st := metav1.ConditionTrue
	if !ok {
		st = metav1.ConditionFalse
	}
	conditions.Set(&s.nc.Status.Conditions, s.clock, s.nc.Generation, cond, st, reason, msg)
}

func (c *Controller) resolveImages(ctx context.Context, s *status) error {
	nc := s.nc
	k8s := ""
	if hasAlias(nc.Spec.AMISelectorTerms) {
		if c.d.KubernetesVersion == nil {
			err := fmt.Errorf("spec.amiSelectorTerms: %w: no version source configured", errNoKubernetesVersion)
			s.apiError(awsv1.ConditionAMIsReady, err)
			return err
		}
		v, err := c.d.KubernetesVersion(ctx)
		if err != nil {
			err = fmt.Errorf("spec.amiSelectorTerms: %w: %w", errNoKubernetesVersion, err)
			s.apiError(awsv1.ConditionAMIsReady, err)
			return err
		}
		k8s = v
		if c.d.SSM == nil {
			err := errors.New("spec.amiSelectorTerms: aliases resolve through SSM, and no SSM client is configured")
			s.apiError(awsv1.ConditionAMIsReady, err)
			return err
		}
	}
	amis, err := imageResolver{ec2: c.d.EC2, ssm: c.d.SSM, root: c.d.ParameterRoot}.resolve(ctx, nc.Spec.AMISelectorTerms, k8s)
	switch {
	case errors.Is(err, errNoImage):
		// Nothing published for this version: a fact, not an outage.
		nc.Status.AMIs = nil
		s.set(awsv1.ConditionAMIsReady, false, ReasonNoMatch, err.Error())
	case err != nil:
		s.apiError(awsv1.ConditionAMIsReady, err)
		return err
	case len(amis) == 0:
		nc.Status.AMIs = nil
		s.set(awsv1.ConditionAMIsReady, false, ReasonNoMatch, "no available image matches spec.amiSelectorTerms: "+amiTermsString(nc.Spec.AMISelectorTerms))
	default:
		nc.Status.AMIs = amis
		nc.Status.KubernetesVersion = k8s
		msg := fmt.Sprintf("%d images", len(amis))
		if k8s != "" {
			msg += " for Kubernetes " + k8s
		}
		s.set(awsv1.ConditionAMIsReady, true, ReasonResolved, msg)
	}
	return nil
}

func (c *Controller) resolveInstanceProfile(ctx context.Context, s *status) error {
	nc := s.nc
	switch {
	case nc.Spec.InstanceProfile != "":
		nc.Status.InstanceProfile = nc.Spec.InstanceProfile
		s.set(awsv1.ConditionInstanceProfileReady, true, ReasonResolved, "spec.instanceProfile is used as is")
	case c.d.IAM == nil:
		// No IAM access: the profile must exist under the role's name (docs/aws.md).
		nc.Status.InstanceProfile = nc.Spec.Role
		s.set(awsv1.ConditionInstanceProfileReady, true, ReasonResolved, "assuming an instance profile named like spec.role exists")
	default:
		name, err := ensureInstanceProfile(ctx, c.d.IAM, c.d.ClusterName, nc)
		if err != nil {
			s.apiError(awsv1.ConditionInstanceProfileReady, err)
			return err
		}
		nc.Status.InstanceProfile = name
		s.set(awsv1.ConditionInstanceProfileReady, true, ReasonResolved, "instance profile "+name+" holds role "+nc.Spec.Role)
	}
	return nil
}

// finalize waits until no NodeClaim uses the node class, deletes its launch
// templates and, when no other node class shares it, its instance profile,
// then lets the object go.
func (c *Controller) finalize(ctx context.Context, nc *awsv1.EC2NodeClass) (reconcile.Result, error) {
	if !controllerutil.ContainsFinalizer(nc, awsv1.Finalizer) {
		return reconcile.Result{}, nil
	}
	claims := &v1.NodeClaimList{}
	if err := c.d.Client.List(ctx, claims); err != nil {
		return reconcile.Result{}, fmt.Errorf("listing nodeclaims of EC2NodeClass %s: %w", nc.Name, err)
	}
	var using []string
	for _, cl := range claims.Items {
		if ref := cl.Spec.NodeClassRef; ref != nil && ref.Group == awsv1.Group && ref.Kind == awsv1.Kind && ref.Name == nc.Name {
			using = append(using, cl.Name)
		}
	}
	if len(using) > 0 {
		before := nc.DeepCopy()
		status{nc: nc, clock: c.d.Clock}.set(awsv1.ConditionReady, false, ReasonTerminating,
			fmt.Sprintf("deleting: waiting for %d nodeclaims to terminate (%s)", len(using), strings.Join(firstN(using, 5), ", ")))
		if err := c.d.Client.Status().Patch(ctx, nc, client.MergeFrom(before)); err != nil {
			return reconcile.Result{}, client.IgnoreNotFound(err)
		}
		return reconcile.Result{RequeueAfter: finalizeRequeue}, nil
	}
	if c.d.Cleaner != nil {
		if err := c.d.Cleaner.DeleteLaunchTemplates(ctx, nc.Name); err != nil {
			return reconcile.Result{}, fmt.Errorf("deleting launch templates of EC2NodeClass %s: %w", nc.Name, err)
		}
	}
	if profile := nc.Status.InstanceProfile; c.d.IAM != nil && nc.Spec.InstanceProfile == "" && managedProfile(c.d.ClusterName, profile) {
		shared, err := c.profileShared(ctx, nc.Name, profile)
		if err != nil {
			return reconcile.Result{}, err
		}
		if !shared {
			gone, err := deleteInstanceProfileIfUnused(ctx, c.d.IAM, c.d.EC2, c.d.ClusterName, profile)
			if err != nil {
				return reconcile.Result{}, fmt.Errorf("EC2NodeClass %s: %w", nc.Name, err)
			}
			if !gone {
				log.FromContext(ctx).Info("instance profile still in use by a machine; waiting", "ec2nodeclass", nc.Name, "instanceProfile", profile)
				return reconcile.Result{RequeueAfter: finalizeRequeue}, nil
			}
		}
	}
	before := nc.DeepCopy()
	controllerutil.RemoveFinalizer(nc, awsv1.Finalizer)
	if err := c.d.Client.Patch(ctx, nc, client.MergeFrom(before)); err != nil {
		return reconcile.Result{}, fmt.Errorf("removing finalizer from EC2NodeClass %s: %w", nc.Name, client.IgnoreNotFound(err))
	}
	log.FromContext(ctx).Info("cleaned up after EC2NodeClass", "ec2nodeclass", nc.Name)
	return reconcile.Result{}, nil
}

// profileShared reports whether another node class launches with profile.
func (c *Controller) profileShared(ctx context.Context, except, profile string) (bool, error) {
	list := &awsv1.EC2NodeClassList{}
	if err := c.d.Client.List(ctx, list); err != nil {
		return false, fmt.Errorf("listing EC2NodeClasses: %w", err)
	}
	for _, o := range list.Items {
		if o.Name != except && (o.Status.InstanceProfile == profile || o.Spec.Role != "" && InstanceProfileName(c.d.ClusterName, o.Spec.Role) == profile) {
			return true, nil
		}
	}
	return false, nil
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], "...")
	}
	return s
}

func zoneCount(subnets []awsv1.Subnet) int {
	zones := map[string]bool{}
	for _, s := range subnets {
		zones[s.Zone] = true
	}
	return len(zones)
}

func termsString(terms []awsv1.SelectorTerm) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		parts[i] = describeTerm(t.ID, t.Tags)
	}
	return strings.Join(parts, "; ")
}

func amiTermsString(terms []awsv1.AMISelectorTerm) string {
	parts := make([]string, len(terms))
	for i, t := range terms {
		parts[i] = describeAMITerm(t)
	}
	return strings.Join(parts, "; ")
}
