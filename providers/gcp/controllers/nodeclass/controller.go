// Package nodeclass resolves a GCENodeClass into its status: the GKE node
// image for the cluster's version (or the pinned one), the subnetwork, and
// the node pool template whose bootstrap metadata VMs copy. Conditions say
// what is missing, in words a GKE admin can act on.
package nodeclass

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"google.golang.org/api/iterator"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
)

// Name is the controller's name.
const Name = "gcp.nodeclass"

// DefaultResync is how often a node class is resolved again: GKE publishes
// new node images and upgrades clusters without any change to the object.
const DefaultResync = 5 * time.Minute

// Condition reasons.
const (
	ReasonResolved = "Resolved"
	ReasonNotFound = "NotFound"
	ReasonAPIError = "APIError"
	ReasonNotReady = "NotReady"
	ReasonReady    = "Ready"
)

// imageProjects are GKE's public node image projects per image type.
var imageProjects = map[string]string{gcpv1.ImageCOS: "gke-node-images", gcpv1.ImageUbuntu: "ubuntu-os-gke-cloud"}

// Deps are the controller's collaborators.
type Deps struct {
	// Client may be nil when the controller is registered with a manager.
	Client  client.Client
	Clients *gcpprovider.Clients
	Project string
	Region  string
	// Cluster is the GKE cluster's name; Location its region or zone
	// (defaults to Region).
	Cluster  string
	Location string
	Clock    clock.PassiveClock
	// Resync defaults to DefaultResync.
	Resync time.Duration
	// SkipNameValidation lets tests start several managers in one process.
	SkipNameValidation bool
}

// Controller reconciles GCENodeClass status.
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
	if d.Location == "" {
		d.Location = d.Region
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
	if err := builder.ControllerManagedBy(mgr).Named(Name).For(&gcpv1.GCENodeClass{}).
		WithOptions(controller.Options{SkipNameValidation: &c.d.SkipNameValidation}).
		Complete(reconcile.AsReconciler[*gcpv1.GCENodeClass](mgr.GetClient(), c)); err != nil {
		return fmt.Errorf("registering %s: %w", Name, err)
	}
	return nil
}

// cluster is what the controller needs from GKE's cluster object.
type cluster struct {
	version    string
	subnetwork string
}

// Reconcile resolves the cluster, image, subnetwork and bootstrap template,
// sets one condition per part and Ready, and patches status once.
func (c *Controller) Reconcile(ctx context.Context, nc *gcpv1.GCENodeClass) (reconcile.Result, error) {
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
	// unavailable records that cond could not be resolved now (throttling,
	// an outage, a passing API error). A condition True for the current spec
	// stays so, with its values in the status: a failed read must not stop
	// every launch of the class until the next reconcile. The error is
	// returned and retried.
	unavailable := func(cond string, err error) {
		if cur := conditions.Get(nc.Status.Conditions, cond); cur != nil && cur.Status == metav1.ConditionTrue && cur.ObservedGeneration == nc.Generation {
			return
		}
		set(cond, false, ReasonAPIError, err.Error())
	}
	// fail records a lookup error and reports whether the thing is gone (a
	// 404: the spec's fault, whose resolved values must go).
	fail := func(cond string, err error, notFoundMsg string) bool {
		if isNotFound(err) {
			set(cond, false, ReasonNotFound, notFoundMsg)
			return true
		}
		apiErrs = append(apiErrs, err)
		unavailable(cond, err)
		return false
	}

	cl, clErr := c.cluster(ctx)
	// clDown: the cluster could not be read now, so what it decides (the
	// image for its version, its subnetwork) is unknown, not missing.
	clDown := clErr != nil && !isNotFound(clErr)
	if clErr != nil {
		fail(gcpv1.ConditionBootstrapReady, clErr, fmt.Sprintf("GKE cluster %s not found in project %s, location %s (check --gcp-cluster and --gcp-location)",
			c.d.Cluster, c.d.Project, c.d.Location))
	}

	// Image.
	switch img, name, err := c.resolveImage(ctx, nc, cl); {
	case err != nil:
		if fail(gcpv1.ConditionImageReady, err, "image "+nc.Spec.Image.Name+" not found in project "+imageProject(nc)) {
			nc.Status.Image, nc.Status.ImageName = "", ""
		}
	case img == "" && clDown:
		unavailable(gcpv1.ConditionImageReady, clErr)
	case img == "":
		nc.Status.Image, nc.Status.ImageName = "", ""
		msg := "waiting for the GKE cluster's version"
		if cl != nil {
			msg = fmt.Sprintf("no %s image for GKE version %s in project %s", nc.Spec.Image.Type, cl.version, imageProject(nc))
		}
		set(gcpv1.ConditionImageReady, false, ReasonNotFound, msg)
	default:
		nc.Status.Image, nc.Status.ImageName = img, name
		if cl != nil {
			nc.Status.ClusterVersion = cl.version
		}
		set(gcpv1.ConditionImageReady, true, ReasonResolved, "image "+name)
	}

	// Subnetwork.
	subName := nc.Spec.Subnetwork
	if subName == "" && cl != nil {
		subName = cl.subnetwork
	}
	switch {
	case subName == "" && clDown:
		unavailable(gcpv1.ConditionSubnetworkReady, clErr)
	case subName == "":
		set(gcpv1.ConditionSubnetworkReady, false, ReasonNotReady, "waiting for the GKE cluster's subnetwork")
	default:
		project, region, name := c.d.Project, c.d.Region, subName
		if parts := strings.Split(subName, "/"); len(parts) == 6 {
			project, region, name = parts[1], parts[3], parts[5]
		}
		sn, err := c.d.Clients.Subnetworks.Get(ctx, &computepb.GetSubnetworkRequest{Project: project, Region: region, Subnetwork: name})
		if err != nil {
			if fail(gcpv1.ConditionSubnetworkReady, err, fmt.Sprintf("subnetwork %s not found in project %s, region %s", name, project, region)) {
				nc.Status.Subnetwork, nc.Status.Network = "", ""
			}
		} else {
			nc.Status.Subnetwork, nc.Status.Network = sn.GetSelfLink(), sn.GetNetwork()
			set(gcpv1.ConditionSubnetworkReady, true, ReasonResolved, "subnetwork "+sn.GetName())
		}
	}

	// Bootstrap.
	if clErr == nil {
		url, err := gcpprovider.FindBootstrapTemplate(ctx, c.d.Clients, c.d.Project, c.d.Cluster, nc.Spec.BootstrapNodePool)
		if err != nil {
			if strings.HasPrefix(err.Error(), "no instance template") {
				nc.Status.BootstrapTemplate = ""
				set(gcpv1.ConditionBootstrapReady, false, ReasonNotFound, err.Error()+"; the cluster needs at least one GKE node pool")
			} else {
				apiErrs = append(apiErrs, err)
				unavailable(gcpv1.ConditionBootstrapReady, err)
			}
		} else {
			nc.Status.BootstrapTemplate = url
			set(gcpv1.ConditionBootstrapReady, true, ReasonResolved, "GKE version "+cl.version+", template "+url[strings.LastIndex(url, "/")+1:])
		}
	}

	var notReady []string
	for _, cond := range []string{gcpv1.ConditionImageReady, gcpv1.ConditionSubnetworkReady, gcpv1.ConditionBootstrapReady} {
		if !conditions.IsTrue(nc.Status.Conditions, cond) {
			notReady = append(notReady, cond+": "+conditions.Get(nc.Status.Conditions, cond).Message)
		}
	}
	if len(notReady) == 0 {
		set(gcpv1.ConditionReady, true, ReasonReady, "image, subnetwork and GKE bootstrap resolved")
	} else {
		set(gcpv1.ConditionReady, false, ReasonNotReady, strings.Join(notReady, "; "))
	}
	if err := c.d.Client.Status().Patch(ctx, nc, client.MergeFrom(before)); err != nil {
		return reconcile.Result{}, fmt.Errorf("patching GCENodeClass %s status: %w", nc.Name, client.IgnoreNotFound(err))
	}
	if len(apiErrs) > 0 {
		log.FromContext(ctx).Error(apiErrs[0], "resolving GCENodeClass", "gcenodeclass", nc.Name, "failures", len(apiErrs))
		return reconcile.Result{}, fmt.Errorf("resolving GCENodeClass %s: %w", nc.Name, apiErrs[0])
	}
	return reconcile.Result{RequeueAfter: c.d.Resync}, nil
}

func (c *Controller) cluster(ctx context.Context) (*cluster, error) {
	name := fmt.Sprintf("projects/%s/locations/%s/clusters/%s", c.d.Project, c.d.Location, c.d.Cluster)
	got, err := c.d.Clients.Container.Projects.Locations.Clusters.Get(name).Context(ctx).Do()
	if err != nil {
		return nil, fmt.Errorf("reading GKE cluster %s: %w", name, err)
	}
	v := got.CurrentNodeVersion
	if v == "" {
		v = got.CurrentMasterVersion
	}
	return &cluster{version: v, subnetwork: got.Subnetwork}, nil
}

func imageProject(nc *gcpv1.GCENodeClass) string {
	if nc.Spec.Image.Project != "" {
		return nc.Spec.Image.Project
	}
	t := nc.Spec.Image.Type
	if t == "" {
		t = gcpv1.ImageCOS
	}
	return imageProjects[t]
}

var versionPart = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)-gke\.(\d+)$`)

// imagePrefix is the name prefix of GKE's images for a cluster version:
// 1.30.6-gke.1029000 -> gke-1306-gke1029000-.
func imagePrefix(version string) string {
	m := versionPart.FindStringSubmatch(version)
	if m == nil {
		return ""
	}
	return "gke-" + m[1] + m[2] + m[3] + "-gke" + m[4] + "-"
}

// resolveImage returns the pinned image, or the newest ready GKE image of
// the class's type for the cluster's version ("" when none matches).
func (c *Controller) resolveImage(ctx context.Context, nc *gcpv1.GCENodeClass, cl *cluster) (url, name string, err error) {
	project := imageProject(nc)
	if nc.Spec.Image.Name != "" {
		img, err := c.d.Clients.Images.Get(ctx, &computepb.GetImageRequest{Project: project, Image: nc.Spec.Image.Name})
		if err != nil {
			return "", "", fmt.Errorf("reading image %s/%s: %w", project, nc.Spec.Image.Name, err)
		}
		return img.GetSelfLink(), img.GetName(), nil
	}
	if cl == nil {
		return "", "", nil
	}
	prefix := imagePrefix(cl.version)
	if prefix == "" {
		return "", "", fmt.Errorf("GKE version %q is not major.minor.patch-gke.N", cl.version)
	}
	kind := "cos"
	if nc.Spec.Image.Type == gcpv1.ImageUbuntu {
		kind = "ubuntu"
	}
	filter := fmt.Sprintf(`name eq "%s.*"`, prefix)
	it := c.d.Clients.Images.List(ctx, &computepb.ListImagesRequest{Project: project, Filter: &filter})
	best, bestTime := (*computepb.Image)(nil), ""
	for {
		img, err := it.Next()
		if errors.Is(err, iterator.Done) {
			break
		}
		if err != nil {
			return "", "", fmt.Errorf("listing images in %s: %w", project, err)
		}
		if !strings.HasPrefix(img.GetName(), prefix+kind) || img.GetStatus() != "READY" ||
			(img.GetDeprecated().GetState() != "" && img.GetDeprecated().GetState() != "ACTIVE") {
			continue
		}
		if img.GetCreationTimestamp() > bestTime {
			best, bestTime = img, img.GetCreationTimestamp()
		}
	}
	if best == nil {
		return "", "", nil
	}
	return best.GetSelfLink(), best.GetName(), nil
}

func isNotFound(err error) bool { return gcpprovider.IsNotFound(err) }
