//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	awsprovider "github.com/stowage-k8s/stowage/providers/aws"
	awsv1 "github.com/stowage-k8s/stowage/providers/aws/apis/v1"
	"github.com/stowage-k8s/stowage/providers/aws/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/aws/mototest"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// awsCluster names this run's cluster: moto may be shared (CI runs one for
// every package), so its resources are kept apart by name and tag.
var awsCluster = fmt.Sprintf("aws-e2e-%d", os.Getpid())

// placementShim is the one part of EC2 moto does not serve: placement groups
// (moto 5.2 answers CreatePlacementGroup with "not implemented"). It keeps
// them in memory and records every CreateFleet request on its way to moto,
// so the test can read what Stowage asked EC2 for.
type placementShim struct {
	*ec2.Client
	mu     sync.Mutex
	groups map[string][]ec2types.Tag
	fleets []*ec2.CreateFleetInput
}

var _ awsprovider.EC2API = (*placementShim)(nil)

func (s *placementShim) CreatePlacementGroup(_ context.Context, in *ec2.CreatePlacementGroupInput, _ ...func(*ec2.Options)) (*ec2.CreatePlacementGroupOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tags []ec2types.Tag
	for _, ts := range in.TagSpecifications {
		tags = append(tags, ts.Tags...)
	}
	s.groups[aws.ToString(in.GroupName)] = tags
	return &ec2.CreatePlacementGroupOutput{}, nil
}

func (s *placementShim) DescribePlacementGroups(context.Context, *ec2.DescribePlacementGroupsInput, ...func(*ec2.Options)) (*ec2.DescribePlacementGroupsOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &ec2.DescribePlacementGroupsOutput{}
	for name, tags := range s.groups {
		out.PlacementGroups = append(out.PlacementGroups, ec2types.PlacementGroup{GroupName: aws.String(name), Tags: tags})
	}
	return out, nil
}

func (s *placementShim) DeletePlacementGroup(_ context.Context, in *ec2.DeletePlacementGroupInput, _ ...func(*ec2.Options)) (*ec2.DeletePlacementGroupOutput, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.groups, aws.ToString(in.GroupName))
	return &ec2.DeletePlacementGroupOutput{}, nil
}

func (s *placementShim) CreateFleet(ctx context.Context, in *ec2.CreateFleetInput, opts ...func(*ec2.Options)) (*ec2.CreateFleetOutput, error) {
	s.mu.Lock()
	s.fleets = append(s.fleets, in)
	s.mu.Unlock()
	return s.Client.CreateFleet(ctx, in, opts...)
}

// fleetsFor are the CreateFleet requests made for a claim.
func (s *placementShim) fleetsFor(claim string) []*ec2.CreateFleetInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*ec2.CreateFleetInput
	for _, f := range s.fleets {
		for _, ts := range f.TagSpecifications {
			if ts.ResourceType == ec2types.ResourceTypeInstance && slices.ContainsFunc(ts.Tags, func(t ec2types.Tag) bool {
				return aws.ToString(t.Key) == awsprovider.TagNodeClaim && aws.ToString(t.Value) == claim
			}) {
				out = append(out, f)
			}
		}
	}
	return out
}

// awsEnv is the local control plane running the whole operator with the AWS
// provider pointed at moto.
type awsEnv struct {
	cp       *controlplane.ControlPlane
	c        client.Client
	api      *ec2.Client
	ssm      *ssm.Client
	iam      *iam.Client
	shim     *placementShim
	provider *awsprovider.Provider
	root     string // SSM parameter root standing in for /aws/service
	k8s      string // the API server's minor version
	subnet   string
}

// TestAWSOnMoto runs Stowage's operator with the AWS provider against moto
// on the local control plane, with production defaults: images matched to
// the cluster's version through SSM, an image change reported as drift, a
// node class with a bad subnet that buys nothing, a p5 gang launched with
// EFA into one placement group, and cleanup after the node class goes.
func TestAWSOnMoto(t *testing.T) {
	lifeLogOnce.Do(func() {
		// The same logger the lifecycle suite installs: stderr with -v only.
		out := io.Discard
		if testing.Verbose() {
			out = os.Stderr
		}
		log.SetLogger(zap.New(zap.UseDevMode(true), zap.WriteTo(out)))
	})
	e := awsStart(t)
	ctx := context.Background()

	// Images: the cluster's version and a newer one that must not be picked.
	current := awsImage(ctx, t, e.api, "current")
	newer := awsImage(ctx, t, e.api, "newer-version")
	next := awsImage(ctx, t, e.api, "next-release")
	gpu := awsImage(ctx, t, e.api, "current-nvidia")
	next2 := awsVersion(t, e.k8s, 1)
	e.publish(ctx, t, e.k8s, "standard", current)
	e.publish(ctx, t, e.k8s, "nvidia", gpu)
	e.publish(ctx, t, next2, "standard", newer)

	nc := awsNodeClass("default", e.subnet)
	// The pool the test's claims belong to: consolidation off (their nodes
	// stay empty), one node disrupted at a time, and no minimum lifetime (the
	// nodes advertise a GPU, which would otherwise protect them for 10 minutes).
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: lifeClaim("x").Labels[v1.LabelNodePool]}, Spec: v1.NodePoolSpec{
		Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: nc.Name},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn,
				Values: []string{"m5.large", "p5.48xlarge"}}},
			ExpireAfter: v1.Never,
		}},
		Disruption: v1.Disruption{ConsolidateAfter: v1.Never, Budgets: []v1.Budget{{Nodes: "1"}}, MinNodeLifetime: &metav1.Duration{}},
	}}
	provCreate(t, e.c, nc, pool)
	awsWaitReady(t, e.c, nc.Name, true)

	var c1 *v1.NodeClaim
	t.Run("version-matched image", func(t *testing.T) {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(nc), nc); err != nil {
			t.Fatal(err)
		}
		if nc.Status.KubernetesVersion != e.k8s {
			t.Errorf("status.kubernetesVersion = %q, want the API server's %q", nc.Status.KubernetesVersion, e.k8s)
		}
		var std []string
		for _, a := range nc.Status.AMIs {
			if a.Arch == "amd64" && a.Variant == awsv1.VariantStandard {
				std = append(std, a.ID)
			}
		}
		if !slices.Equal(std, []string{current}) {
			t.Fatalf("standard amd64 images = %v, want %s for Kubernetes %s (not %s, published for %s)", std, current, e.k8s, newer, next2)
		}
		c1 = awsClaim("aws-cpu", nc.Name, lifeOffering("m5.large", "us-east-1a", v1.CapacityTypeOnDemand))
		if err := e.c.Create(ctx, c1); err != nil {
			t.Fatal(err)
		}
		c1 = awsWaitLaunched(t, e.c, c1.Name)
		if got := aws.ToString(awsInstance(ctx, t, e.api, c1.Status.ProviderID).ImageId); got != current {
			t.Errorf("moto instance booted %s, want %s", got, current)
		}
		awsRegisterNode(ctx, t, e.c, c1, "")
		c1 = lifeWaitReady(t, e.c, c1.Name)
	})

	t.Run("image change is drift", func(t *testing.T) {
		if c1 == nil {
			t.Skip("no machine launched")
		}
		if got, err := e.provider.IsDrifted(ctx, c1); err != nil || got != "" {
			t.Fatalf("IsDrifted before the release = %q, %v; want none", got, err)
		}
		// Amazon publishes a new release under the same parameter. The
		// controller resolves it at its next resync (5 minutes); touching the
		// node class reconciles it now.
		e.publish(ctx, t, e.k8s, "standard", next)
		awsTouch(ctx, t, e.c, nc.Name)
		lifeEventually(t, "the node class resolving the new release", func(ctx context.Context) (bool, error) {
			got := &awsv1.EC2NodeClass{}
			if err := e.c.Get(ctx, client.ObjectKeyFromObject(nc), got); err != nil {
				return false, err
			}
			return slices.ContainsFunc(got.Status.AMIs, func(a awsv1.AMI) bool { return a.ID == next }), nil
		})
		if got, err := e.provider.IsDrifted(ctx, c1); err != nil || got != awsprovider.DriftImage {
			t.Errorf("IsDrifted after the release = %q, %v; want %s", got, err, awsprovider.DriftImage)
		}
		// The core marks the claim Drifted (checked every minute) and rolls
		// it within the pool's budget: the empty drifted node goes, its
		// machine is terminated, and a new machine boots the new release.
		lifeEventually(t, "nodeclaim "+c1.Name+" Drifted with ImageDrift", func(ctx context.Context) (bool, error) {
			got := &v1.NodeClaim{}
			if err := e.c.Get(ctx, client.ObjectKeyFromObject(c1), got); err != nil {
				return client.IgnoreNotFound(err) == nil, client.IgnoreNotFound(err)
			}
			d := conditions.Get(got.Status.Conditions, v1.ConditionDrifted)
			return d != nil && d.Status == metav1.ConditionTrue && d.Reason == string(awsprovider.DriftImage), nil
		})
		lifeWaitGone(t, e.c, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: c1.Name}})
		if state := awsInstance(ctx, t, e.api, c1.Status.ProviderID).State.Name; state != ec2types.InstanceStateNameTerminated &&
			state != ec2types.InstanceStateNameShuttingDown {
			t.Errorf("the drifted machine is %s, want terminated", state)
		}
		c2 := awsClaim("aws-cpu-2", nc.Name, lifeOffering("m5.large", "us-east-1a", v1.CapacityTypeOnDemand))
		if err := e.c.Create(ctx, c2); err != nil {
			t.Fatal(err)
		}
		c2 = awsWaitLaunched(t, e.c, c2.Name)
		if got := aws.ToString(awsInstance(ctx, t, e.api, c2.Status.ProviderID).ImageId); got != next {
			t.Errorf("the new machine booted %s, want the new release %s", got, next)
		}
		c1 = c2
	})

	t.Run("bad subnet buys nothing", func(t *testing.T) {
		typo := awsNodeClass("typo", "subnet-0000000000dead")
		pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "typo"}, Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: "typo"},
			Requirements: []v1.NodeSelectorRequirementWithMinValues{{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: []string{"m5.large"}}},
			ExpireAfter:  v1.Never,
		}}}}
		pod := provPod("default", "needs-typo", map[string]string{v1.LabelNodePool: "typo"}, nil, "cpu", "500m")
		provCreate(t, e.c, typo, pool, pod)
		awsWaitReady(t, e.c, typo.Name, false)
		got := &awsv1.EC2NodeClass{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(typo), got); err != nil {
			t.Fatal(err)
		}
		if msg := conditions.Get(got.Status.Conditions, awsv1.ConditionSubnetsReady).Message; !strings.Contains(msg, "id subnet-0000000000dead") {
			t.Errorf("SubnetsReady message %q does not name the subnet", msg)
		}
		// Several batches pass with the pod pending and nothing is bought.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			claims, err := provClaims(ctx, e.c, "typo")
			if err != nil {
				t.Fatal(err)
			}
			if len(claims) != 0 {
				t.Fatalf("a NodeClaim was made for a node class that cannot launch: %s", claims[0].Name)
			}
			time.Sleep(time.Second)
		}
		if n := len(awsInstancesOfPool(ctx, t, e.api, "typo")); n != 0 {
			t.Fatalf("%d machines bought for the typo pool", n)
		}
		// Fixing the selector is enough: the same pod gets a machine, which
		// shows the provisioner was looking all along.
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(typo), got); err != nil {
			t.Fatal(err)
		}
		fixed := got.DeepCopy()
		fixed.Spec.SubnetSelectorTerms = []awsv1.SelectorTerm{{ID: e.subnet}}
		if err := e.c.Patch(ctx, fixed, client.MergeFrom(got)); err != nil {
			t.Fatal(err)
		}
		awsWaitReady(t, e.c, typo.Name, true)
		var claim v1.NodeClaim
		lifeEventually(t, "a machine for the pod once the subnet is fixed", func(ctx context.Context) (bool, error) {
			claims, err := provClaims(ctx, e.c, "typo")
			if err != nil || len(claims) == 0 {
				return false, err
			}
			claim = claims[0]
			return claim.Status.ProviderID != "", nil
		})
		if n := len(awsInstancesOfPool(ctx, t, e.api, "typo")); n != 1 {
			t.Errorf("%d machines for one pending pod, want 1", n)
		}
		for _, o := range []client.Object{pod, pool} {
			if err := e.c.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				t.Fatal(err)
			}
		}
		if err := e.c.Delete(ctx, &claim); client.IgnoreNotFound(err) != nil {
			t.Fatal(err)
		}
		lifeWaitGone(t, e.c, &claim)
		if err := e.c.Delete(ctx, typo); err != nil {
			t.Fatal(err)
		}
		lifeWaitGone(t, e.c, typo)
	})

	var gang []*v1.NodeClaim
	t.Run("p5 gang with EFA in one placement group", func(t *testing.T) {
		for i := range 2 {
			g := awsClaim(fmt.Sprintf("llama-%d", i), nc.Name, lifeOffering("p5.48xlarge", "us-east-1a", v1.CapacityTypeOnDemand))
			g.Spec.Placement = &v1.Placement{Group: "llama"}
			g.Spec.Resources.Requests[awsprovider.ResourceEFA] = resource.MustParse("32")
			if err := e.c.Create(ctx, g); err != nil {
				t.Fatal(err)
			}
			gang = append(gang, g)
		}
		group := "stowage-" + awsCluster + "-llama"
		for i, g := range gang {
			gang[i] = awsWaitLaunched(t, e.c, g.Name)
			fleets := e.shim.fleetsFor(g.Name)
			if len(fleets) != 1 {
				t.Fatalf("%s: %d CreateFleet requests, want 1", g.Name, len(fleets))
			}
			cfgs := fleets[0].LaunchTemplateConfigs
			if len(cfgs) != 1 || len(cfgs[0].Overrides) != 1 {
				t.Fatalf("%s: launch request %+v, want one p5 override", g.Name, cfgs)
			}
			if pg := cfgs[0].Overrides[0].Placement; pg == nil || aws.ToString(pg.GroupName) != group {
				t.Errorf("%s: override placement %+v, want %s", g.Name, pg, group)
			}
			lt := awsTemplate(ctx, t, e.api, aws.ToString(cfgs[0].LaunchTemplateSpecification.LaunchTemplateName))
			efa := 0
			for _, ni := range lt.NetworkInterfaces {
				if aws.ToString(ni.InterfaceType) == string(ec2types.NetworkInterfaceTypeEfaOnly) {
					efa++
				}
			}
			if efa != 32 || len(lt.NetworkInterfaces) != 33 || len(lt.SecurityGroupIds) != 0 {
				t.Errorf("%s: template has %d interfaces (%d EFA-only) and groups %v; want the primary and 32 EFA-only, groups on the interfaces",
					g.Name, len(lt.NetworkInterfaces), efa, lt.SecurityGroupIds)
			}
		}
		e.shim.mu.Lock()
		groups := len(e.shim.groups)
		tags := e.shim.groups[group]
		e.shim.mu.Unlock()
		if groups != 1 || !slices.ContainsFunc(tags, func(t ec2types.Tag) bool {
			return aws.ToString(t.Key) == awsprovider.TagCluster && aws.ToString(t.Value) == awsCluster
		}) {
			t.Errorf("placement groups: %d, %s tagged %v; want one, tagged with the cluster", groups, group, tags)
		}
	})

	t.Run("cleanup after the node class is deleted", func(t *testing.T) {
		if err := e.c.Delete(ctx, nc); err != nil {
			t.Fatal(err)
		}
		// The finalizer holds the class while claims use it.
		time.Sleep(2 * time.Second)
		held := &awsv1.EC2NodeClass{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(nc), held); err != nil {
			t.Fatalf("node class gone while claims use it: %v", err)
		}
		if err := e.c.Delete(ctx, pool); err != nil {
			t.Fatal(err)
		}
		for _, c := range append([]*v1.NodeClaim{c1}, gang...) {
			if c == nil {
				continue
			}
			if err := e.c.Delete(ctx, c); client.IgnoreNotFound(err) != nil {
				t.Fatal(err)
			}
		}
		for _, c := range append([]*v1.NodeClaim{c1}, gang...) {
			if c != nil {
				lifeWaitGone(t, e.c, c)
			}
		}
		// Finalizing requeues every 10 s until moto no longer lists the
		// machines; on a loaded CI run that once outlasted lifeWait.
		holdEventually(t, "EC2NodeClass deleted", func(ctx context.Context) (bool, error) {
			err := e.c.Get(ctx, client.ObjectKeyFromObject(held), held)
			return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
		})
		if list, err := e.provider.List(ctx); err != nil || len(list) != 0 {
			t.Errorf("provider still lists %d machines (%v)", len(list), err)
		}
		out, err := e.api.DescribeLaunchTemplates(ctx, &ec2.DescribeLaunchTemplatesInput{Filters: []ec2types.Filter{
			{Name: aws.String("tag:" + awsprovider.TagCluster), Values: []string{awsCluster}}}})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.LaunchTemplates) != 0 {
			t.Errorf("%d launch templates left after the node class went", len(out.LaunchTemplates))
		}
		profile := nodeclass.InstanceProfileName(awsCluster, "StowageNode-"+awsCluster)
		if _, err := e.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(profile)}); err == nil {
			t.Errorf("instance profile %s outlived its node class", profile)
		}
	})
}

// awsStart starts moto, the control plane and the operator with the AWS
// provider and the EC2NodeClass controller, with production defaults.
func awsStart(t *testing.T) *awsEnv {
	t.Helper()
	moto, err := mototest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(moto.Stop)
	ctx := context.Background()
	e := &awsEnv{api: moto.EC2(), ssm: moto.SSM(), iam: moto.IAM(), root: "/stowage-e2e/" + awsCluster}
	e.shim = &placementShim{Client: e.api, groups: map[string][]ec2types.Tag{}}
	e.subnet = awsMakeNetwork(ctx, t, e.api)
	role := "StowageNode-" + awsCluster
	if _, err := e.iam.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(role),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)}); err != nil {
		t.Fatal(err)
	}

	// kwok plays the kubelet of the nodes the test registers: without its
	// heartbeats the node lifecycle controller marks them NotReady, and a
	// NotReady node takes the pool's whole disruption budget.
	e.cp = controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	e.c = e.cp.Client
	if err := awsv1.AddToScheme(e.c.Scheme()); err != nil {
		t.Fatal(err)
	}
	version, err := nodeclass.ServerVersion(e.cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	if e.k8s, err = version(ctx); err != nil {
		t.Fatal(err)
	}
	ca, err := mototest.CABundle()
	if err != nil {
		t.Fatal(err)
	}
	join := nodeclass.JoinSettings{Endpoint: e.cp.Config.Host, CABundle: ca, CIDR: "10.96.0.0/12"}

	opts := operator.DefaultOptions()
	opts.CloudProvider = awsprovider.Name
	opts.ClusterName = awsCluster
	opts.MetricsAddr = "0"
	opts.HealthProbeAddr = "0"
	runCtx, cancel := context.WithCancel(ctx)
	var once sync.Once
	op, err := operator.New(runCtx, e.cp.Config, opts,
		operator.WithSkipNameValidation(),
		operator.WithProvider(awsprovider.Name, func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
			if err := awsv1.AddToScheme(d.Client.Scheme()); err != nil {
				return nil, err
			}
			p, err := awsprovider.New(awsprovider.Options{ClusterName: d.ClusterName, Region: mototest.Region, EC2: e.shim, Kube: d.Client, Clock: d.Clock,
				ClusterEndpoint: join.Endpoint, ClusterCABundle: join.CABundle, ClusterCIDR: join.CIDR})
			once.Do(func() { e.provider = p })
			return p, err
		}),
		operator.WithController(nodeclass.NewController(nodeclass.Deps{EC2: e.api, IAM: e.iam, SSM: e.ssm, ParameterRoot: e.root,
			ClusterName: awsCluster, Join: join, Cleaner: cleanerFunc(func(ctx context.Context, class string) error {
				return e.provider.DeleteLaunchTemplates(ctx, class)
			})})))
	if err != nil {
		cancel()
		t.Fatalf("building the operator: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- op.Start(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("operator: %v", err)
		}
	})
	return e
}

type cleanerFunc func(context.Context, string) error

func (f cleanerFunc) DeleteLaunchTemplates(ctx context.Context, class string) error {
	return f(ctx, class)
}

// publish writes an image parameter where Amazon's would be, under the test
// root (moto refuses names under /aws).
func (e *awsEnv) publish(ctx context.Context, t *testing.T, k8s, variant, image string) {
	t.Helper()
	name := fmt.Sprintf("%s/eks/optimized-ami/%s/amazon-linux-2023/x86_64/%s/recommended/image_id", e.root, k8s, variant)
	if _, err := e.ssm.PutParameter(ctx, &ssm.PutParameterInput{Name: aws.String(name), Value: aws.String(image),
		Type: ssmtypes.ParameterTypeString, DataType: aws.String("aws:ec2:image"), Overwrite: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
}

// awsVersion is the minor version delta releases after k8s ("1.37", 1 -> "1.38").
func awsVersion(t *testing.T, k8s string, delta int) string {
	t.Helper()
	var major, minor int
	if _, err := fmt.Sscanf(k8s, "%d.%d", &major, &minor); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d.%d", major, minor+delta)
}

func awsNodeClass(name, subnet string) *awsv1.EC2NodeClass {
	sel := map[string]string{"stowage.dev/discovery": awsCluster}
	return &awsv1.EC2NodeClass{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: awsv1.EC2NodeClassSpec{
			AMISelectorTerms:           []awsv1.AMISelectorTerm{{Alias: "al2023@latest"}},
			SubnetSelectorTerms:        []awsv1.SelectorTerm{{ID: subnet}},
			SecurityGroupSelectorTerms: []awsv1.SelectorTerm{{Tags: sel}},
			Role:                       "StowageNode-" + awsCluster,
		},
	}
}

func awsClaim(name, class string, offerings ...v1.OfferingChoice) *v1.NodeClaim {
	c := lifeClaim(name, offerings...)
	c.Spec.NodeClassRef = &v1.NodeClassReference{Group: awsv1.Group, Kind: awsv1.Kind, Name: class}
	return c
}

func awsWaitReady(t *testing.T, c client.Client, name string, want bool) {
	t.Helper()
	lifeEventually(t, fmt.Sprintf("EC2NodeClass %s Ready=%v", name, want), func(ctx context.Context) (bool, error) {
		nc := &awsv1.EC2NodeClass{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
			return false, err
		}
		r := nc.ReadyCondition()
		return r != nil && (r.Status == metav1.ConditionTrue) == want, nil
	})
}

func awsWaitLaunched(t *testing.T, c client.Client, name string) *v1.NodeClaim {
	t.Helper()
	claim := &v1.NodeClaim{}
	lifeEventually(t, "nodeclaim "+name+" launched", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, claim); err != nil {
			return false, err
		}
		if claim.Status.ProviderID != "" {
			return true, nil
		}
		if l := conditions.Get(claim.Status.Conditions, v1.ConditionLaunched); l != nil {
			return false, fmt.Errorf("not launched: %s", l.Message)
		}
		return false, nil
	})
	return claim
}

// awsTouch annotates a node class, which makes its controller resolve it now.
func awsTouch(ctx context.Context, t *testing.T, c client.Client, name string) {
	t.Helper()
	nc := &awsv1.EC2NodeClass{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(nc.DeepCopy())
	if nc.Annotations == nil {
		nc.Annotations = map[string]string{}
	}
	nc.Annotations["e2e.stowage.dev/touched"] = time.Now().Format(time.RFC3339Nano)
	if err := c.Patch(ctx, nc, patch); err != nil {
		t.Fatal(err)
	}
}

func awsInstancesOfPool(ctx context.Context, t *testing.T, api *ec2.Client, pool string) []ec2types.Instance {
	t.Helper()
	out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{
		{Name: aws.String("tag:" + awsprovider.TagCluster), Values: []string{awsCluster}},
		{Name: aws.String("tag:" + awsprovider.TagNodePool), Values: []string{pool}},
		{Name: aws.String("instance-state-name"), Values: []string{"pending", "running"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var insts []ec2types.Instance
	for _, r := range out.Reservations {
		insts = append(insts, r.Instances...)
	}
	return insts
}

func awsTemplate(ctx context.Context, t *testing.T, api *ec2.Client, name string) *ec2types.ResponseLaunchTemplateData {
	t.Helper()
	out, err := api.DescribeLaunchTemplateVersions(ctx, &ec2.DescribeLaunchTemplateVersionsInput{LaunchTemplateName: aws.String(name), Versions: []string{"$Latest"}})
	if err != nil || len(out.LaunchTemplateVersions) == 0 {
		t.Fatalf("reading launch template %s: %v", name, err)
	}
	return out.LaunchTemplateVersions[0].LaunchTemplateData
}

// awsRegisterNode plays the kubelet: it registers a Ready Node with the
// instance's providerID and the capacity the claim expects.
func awsRegisterNode(ctx context.Context, t *testing.T, c client.Client, claim *v1.NodeClaim, name string) *corev1.Node {
	t.Helper()
	if name == "" {
		name = "ip-" + claim.Name + ".ec2.internal"
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name},
			Annotations: map[string]string{controlplane.KwokNodeAnnotation: controlplane.KwokNodeAnnotationValue}},
		Spec: corev1.NodeSpec{ProviderID: claim.Status.ProviderID,
			Taints: []corev1.Taint{v1.UnregisteredTaint}},
	}
	if err := c.Create(ctx, node); err != nil {
		t.Fatal(err)
	}
	capacity := claim.Status.Capacity.DeepCopy()
	if capacity == nil {
		capacity = corev1.ResourceList{}
	}
	capacity[v1.ResourceNvidiaGPU] = resource.MustParse("1")
	allocatable := claim.Status.Allocatable.DeepCopy()
	if allocatable == nil {
		allocatable = capacity.DeepCopy()
	}
	allocatable[v1.ResourceNvidiaGPU] = resource.MustParse("1")
	// A merge patch carries no resourceVersion: the registration controller
	// may already be labelling the node.
	base := node.DeepCopy()
	node.Status = corev1.NodeStatus{
		Capacity: capacity, Allocatable: allocatable,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
	}
	if err := c.Status().Patch(ctx, node, client.MergeFrom(base)); err != nil {
		t.Fatal(err)
	}
	return node
}

func awsInstance(ctx context.Context, t *testing.T, api *ec2.Client, providerID string) ec2types.Instance {
	t.Helper()
	id, err := awsprovider.ParseProviderID(providerID)
	if err != nil {
		t.Fatal(err)
	}
	out, err := api.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil || len(out.Reservations) == 0 || len(out.Reservations[0].Instances) == 0 {
		t.Fatalf("describing %s: %v", id, err)
	}
	return out.Reservations[0].Instances[0]
}

// awsImage makes an x86_64 image in moto (moto's RegisterImage leaves the
// architecture empty; an image made from an instance carries it).
func awsImage(ctx context.Context, t *testing.T, api *ec2.Client, name string) string {
	t.Helper()
	base, err := api.DescribeImages(ctx, &ec2.DescribeImagesInput{Owners: []string{"amazon"},
		Filters: []ec2types.Filter{{Name: aws.String("architecture"), Values: []string{"x86_64"}}}})
	if err != nil || len(base.Images) == 0 {
		t.Fatalf("moto has no x86_64 image: %v", err)
	}
	src, err := api.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: base.Images[0].ImageId, MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	img, err := api.CreateImage(ctx, &ec2.CreateImageInput{InstanceId: src.Instances[0].InstanceId, Name: aws.String(awsCluster + "-" + name)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.TerminateInstances(ctx, &ec2.TerminateInstancesInput{InstanceIds: []string{aws.ToString(src.Instances[0].InstanceId)}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(img.ImageId)
}

// awsMakeNetwork makes a subnet in us-east-1a and a tagged security group in
// moto, and returns the subnet ID.
func awsMakeNetwork(ctx context.Context, t *testing.T, api *ec2.Client) string {
	t.Helper()
	tags := []ec2types.Tag{{Key: aws.String("stowage.dev/discovery"), Value: aws.String(awsCluster)}}
	vpc, err := api.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	sn, err := api.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: vpc.Vpc.VpcId, AvailabilityZone: aws.String("us-east-1a"), CidrBlock: aws.String("10.1.1.0/24"),
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSubnet, Tags: tags}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.CreateSecurityGroup(ctx, &ec2.CreateSecurityGroupInput{GroupName: aws.String("nodes"), Description: aws.String("nodes"), VpcId: vpc.Vpc.VpcId,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSecurityGroup, Tags: tags}}}); err != nil {
		t.Fatal(err)
	}
	return aws.ToString(sn.Subnet.SubnetId)
}
