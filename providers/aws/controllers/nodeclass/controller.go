// Package nodeclass resolves an EC2NodeClass's selectors (subnets, security
// groups, images) into its status, and says in conditions what is missing.
package nodeclass

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
)

// Name is the controller's name.
const Name = "aws.nodeclass"

// DefaultResync is how often a node class is resolved again: new AMI
// releases and subnets appear without any change to the object.
const DefaultResync = 5 * time.Minute

// Condition reasons.
const (
	ReasonResolved   = "Resolved"
	ReasonNoMatch    = "NoMatch"
	ReasonAPIError   = "DescribeFailed"
	ReasonNotReady   = "NotReady"
	ReasonAllResolve = "Ready"
)

// Deps are the controller's collaborators.
type Deps struct {
	// Client may be nil when the controller is registered with a manager.
	Client client.Client
	EC2    EC2API
	// IAM creates the instance profile for spec.role. Without it the
	// profile is assumed to exist under the role's own name.
	IAM IAMAPI
	// ClusterName names and tags the instance profiles the controller makes.
	ClusterName string
	Clock       clock.PassiveClock
	// Resync defaults to DefaultResync.
	Resync time.Duration
}

// Controller reconciles EC2NodeClass status.
type Controller struct {
	client  client.Client
	ec2     EC2API
	iam     IAMAPI
	cluster string
	clock   clock.PassiveClock
	resync  time.Duration
}

// NewController builds the controller.
func NewController(d Deps) *Controller {
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Resync <= 0 {
		d.Resync = DefaultResync
	}
	return &Controller{client: d.Client, ec2: d.EC2, iam: d.IAM, cluster: d.ClusterName, clock: d.Clock, resync: d.Resync}
}

// Name is the controller's dotted name.
func (c *Controller) Name() string { return Name }

// Register adds the controller to mgr. A controller built without a client
// uses the manager's.
func (c *Controller) Register(_ context.Context, mgr manager.Manager) error {
	if c.client == nil {
		c.client = mgr.GetClient()
	}
	if err := builder.ControllerManagedBy(mgr).Named(Name).For(&awsv1.EC2NodeClass{}).
		Complete(reconcile.AsReconciler[*awsv1.EC2NodeClass](mgr.GetClient(), c)); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	return nil
}

// Reconcile resolves every selector, sets one condition per part and Ready,
// and patches status once.
func (c *Controller) Reconcile(ctx context.Context, nc *awsv1.EC2NodeClass) (reconcile.Result, error) {
	if !nc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}
	logger := log.FromContext(ctx).WithValues("ec2nodeclass", nc.Name)
	before := nc.DeepCopy()
	gen := nc.Generation
	set := func(cond string, ok bool, reason, msg string) {
		status := metav1.ConditionTrue
		if !ok {
			status = metav1.ConditionFalse
		}
		conditions.Set(&nc.Status.Conditions, c.clock, gen, cond, status, reason, msg)
	}
	var apiErrs []error

	subnets, err := resolveSubnets(ctx, c.ec2, nc.Spec.SubnetSelectorTerms)
	switch {
	case err != nil:
		apiErrs = append(apiErrs, err)
		set(awsv1.ConditionSubnetsReady, false, ReasonAPIError, err.Error())
	case len(subnets) == 0:
		nc.Status.Subnets = nil
		set(awsv1.ConditionSubnetsReady, false, ReasonNoMatch, "no subnet matches spec.subnetSelectorTerms: "+termsString(nc.Spec.SubnetSelectorTerms))
	default:
		nc.Status.Subnets = subnets
		set(awsv1.ConditionSubnetsReady, true, ReasonResolved, fmt.Sprintf("%d subnets in %d zones", len(subnets), zoneCount(subnets)))
	}

	groups, err := resolveSecurityGroups(ctx, c.ec2, nc.Spec.SecurityGroupSelectorTerms)
	switch {
	case err != nil:
		apiErrs = append(apiErrs, err)
		set(awsv1.ConditionSecurityGroupsReady, false, ReasonAPIError, err.Error())
	case len(groups) == 0:
		nc.Status.SecurityGroups = nil
		set(awsv1.ConditionSecurityGroupsReady, false, ReasonNoMatch, "no security group matches spec.securityGroupSelectorTerms: "+termsString(nc.Spec.SecurityGroupSelectorTerms))
	default:
		nc.Status.SecurityGroups = groups
		set(awsv1.ConditionSecurityGroupsReady, true, ReasonResolved, fmt.Sprintf("%d security groups", len(groups)))
	}

	amis, err := resolveAMIs(ctx, c.ec2, nc.Spec.AMISelectorTerms)
	switch {
	case err != nil:
		apiErrs = append(apiErrs, err)
		set(awsv1.ConditionAMIsReady, false, ReasonAPIError, err.Error())
	case len(amis) == 0:
		nc.Status.AMIs = nil
		set(awsv1.ConditionAMIsReady, false, ReasonNoMatch, "no available image matches spec.amiSelectorTerms: "+amiTermsString(nc.Spec.AMISelectorTerms))
	default:
		nc.Status.AMIs = amis
		set(awsv1.ConditionAMIsReady, true, ReasonResolved, fmt.Sprintf("%d images", len(amis)))
	}

	switch {
	case nc.Spec.InstanceProfile != "":
		nc.Status.InstanceProfile = nc.Spec.InstanceProfile
		set(awsv1.ConditionInstanceProfileReady, true, ReasonResolved, "spec.instanceProfile is used as is")
	case c.iam == nil:
		// No IAM access: the profile must exist under the role's name (docs/aws.md).
		nc.Status.InstanceProfile = nc.Spec.Role
		set(awsv1.ConditionInstanceProfileReady, true, ReasonResolved, "assuming an instance profile named like spec.role exists")
	default:
		name, err := ensureInstanceProfile(ctx, c.iam, c.cluster, nc)
		if err != nil {
			apiErrs = append(apiErrs, err)
			set(awsv1.ConditionInstanceProfileReady, false, ReasonAPIError, err.Error())
		} else {
			nc.Status.InstanceProfile = name
			set(awsv1.ConditionInstanceProfileReady, true, ReasonResolved, "instance profile "+name+" holds role "+nc.Spec.Role)
		}
	}

	var notReady []string
	for _, cond := range []string{awsv1.ConditionSubnetsReady, awsv1.ConditionSecurityGroupsReady, awsv1.ConditionAMIsReady, awsv1.ConditionInstanceProfileReady} {
		if !conditions.IsTrue(nc.Status.Conditions, cond) {
			notReady = append(notReady, cond+": "+conditions.Get(nc.Status.Conditions, cond).Message)
		}
	}
	if len(notReady) == 0 {
		set(awsv1.ConditionReady, true, ReasonAllResolve, "subnets, security groups, images and instance profile resolved")
	} else {
		set(awsv1.ConditionReady, false, ReasonNotReady, strings.Join(notReady, "; "))
	}

	if err := c.client.Status().Patch(ctx, nc, client.MergeFrom(before)); err != nil {
		return reconcile.Result{}, fmt.Errorf("patching EC2NodeClass %s status: %w", nc.Name, client.IgnoreNotFound(err))
	}
	if len(apiErrs) > 0 {
		// Let the workqueue back off; status already says what failed.
		logger.Error(apiErrs[0], "resolving EC2NodeClass", "failures", len(apiErrs))
		return reconcile.Result{}, fmt.Errorf("resolving EC2NodeClass %s: %w", nc.Name, apiErrs[0])
	}
	return reconcile.Result{RequeueAfter: c.resync}, nil
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
		switch {
		case t.Alias != "":
			parts[i] = "alias " + t.Alias
		default:
			parts[i] = describeTerm(t.ID, t.Tags)
		}
	}
	return strings.Join(parts, "; ")
}
