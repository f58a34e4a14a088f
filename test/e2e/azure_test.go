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

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/providers/azure"
	azv1 "github.com/stowage-k8s/stowage/providers/azure/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure/azuretest"
	"github.com/stowage-k8s/stowage/providers/azure/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// azWait bounds each wait; it is a deadline, never an assertion about speed.
const azWait = 3 * time.Minute

// azKubeletLatency is how long a VM's kubelet takes to register its Node
// after the VM is running: above zero, as in production.
const azKubeletLatency = 2 * time.Second

// azCluster is the local control plane with the whole operator running
// against the in-process Azure; the operator can be stopped and started
// again, as a controller restart.
type azCluster struct {
	cp      *controlplane.ControlPlane
	c       client.Client
	cloud   *azuretest.Cloud
	clients *azure.Clients
	kubelet *azuretest.Kubelet

	mu   sync.Mutex
	stop context.CancelFunc
	done chan error
}

var azLogOnce sync.Once

func azStart(t *testing.T) *azCluster {
	t.Helper()
	azLogOnce.Do(func() {
		out := io.Discard
		if testing.Verbose() {
			out = os.Stderr
		}
		o := operator.DefaultOptions()
		o.LogLevel = "debug"
		logger, err := operator.NewLogger(o, out)
		if err != nil {
			t.Fatal(err)
		}
		log.SetLogger(logger)
	})
	// No "in progress" answers: the in-process Azure finishes at once, so
	// the provider's production poll period never delays a launch.
	cloud, err := azuretest.New(azuretest.Options{LROPolls: -1})
	if err != nil {
		t.Fatal(err)
	}
	clients, err := cloud.Clients()
	if err != nil {
		t.Fatal(err)
	}
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	if err := azv1.AddToScheme(cp.Scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cp.Config, client.Options{Scheme: cp.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	cl := &azCluster{cp: cp, c: c, cloud: cloud, clients: clients}
	cl.kubelet = cloud.StartKubelet(c, azKubeletLatency)
	t.Cleanup(func() {
		cl.halt(t)
		cl.kubelet.Stop()
		for _, err := range cl.kubelet.Errors() {
			t.Errorf("stand-in kubelet: %v", err)
		}
	})
	cl.startOperator(t)
	return cl
}

// startOperator builds the operator as cmd/stowage does for
// --cloud-provider=azure, with production defaults, and runs it.
func (cl *azCluster) startOperator(t *testing.T) {
	t.Helper()
	opts := operator.DefaultOptions()
	opts.CloudProvider = azure.Name
	opts.ClusterName = "azure-e2e"
	opts.LeaderElection = true
	opts.LeaderElectionNamespace = metav1.NamespaceDefault
	opts.MetricsAddr = "0"
	opts.HealthProbeAddr = "0"
	source := azure.NewInterruptionSource(azure.InterruptionOptions{ClusterName: opts.ClusterName,
		ResourceGroup: cl.cloud.ResourceGroup(), VMs: cl.clients.VMs, SkipNameValidation: true})
	ca := "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="
	factory := func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
		if err := azv1.AddToScheme(d.Client.Scheme()); err != nil {
			return nil, err
		}
		return azure.New(azure.Options{
			ClusterName: d.ClusterName, SubscriptionID: cl.cloud.SubscriptionID(), ResourceGroup: cl.cloud.ResourceGroup(),
			Location: cl.cloud.Location(), VMs: cl.clients.VMs, NICs: cl.clients.NICs, Disks: cl.clients.Disks,
			SKUs: cl.clients.SKUs, PPGs: cl.clients.PPGs, Reservations: cl.clients.Reservations, Prices: cl.clients.Prices,
			Kube: d.Client, Clock: d.Clock, APIServer: cl.cp.Config.Host, CABundle: ca,
			BootstrapToken: "abcdef.0123456789abcdef", Interruption: source,
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	op, err := operator.New(ctx, cl.cp.Config, opts,
		operator.WithSkipNameValidation(),
		operator.WithProvider(azure.Name, factory),
		operator.WithController(nodeclass.NewController(nodeclass.Deps{Images: cl.clients.GalleryImages, Subnets: cl.clients.Subnets,
			ReservationGroups: cl.clients.ReservationGroups, PPGs: cl.clients.PPGs, Location: cl.cloud.Location(), SkipNameValidation: true})),
		operator.WithController(source))
	if err != nil {
		cancel()
		t.Fatalf("building the operator: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- op.Start(ctx) }()
	cl.mu.Lock()
	cl.stop, cl.done = cancel, done
	cl.mu.Unlock()
}

// launchGhost launches a VM tagged for this cluster for a NodeClaim that
// does not exist, and returns its name.
func (cl *azCluster) launchGhost(t *testing.T) string {
	t.Helper()
	p, err := azure.New(azure.Options{
		ClusterName: "azure-e2e", SubscriptionID: cl.cloud.SubscriptionID(), ResourceGroup: cl.cloud.ResourceGroup(),
		Location: cl.cloud.Location(), VMs: cl.clients.VMs, NICs: cl.clients.NICs, Disks: cl.clients.Disks, SKUs: cl.clients.SKUs,
		Prices: cl.clients.Prices, Kube: cl.c, APIServer: cl.cp.Config.Host, CABundle: "Q0E=", BootstrapToken: "abcdef.0123456789abcdef",
	})
	if err != nil {
		t.Fatal(err)
	}
	ghost := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "ghost-0", UID: "ghost-uid", Labels: map[string]string{v1.LabelNodePool: "ghost"}},
		Spec: v1.NodeClaimSpec{NodeClassRef: &v1.NodeClassReference{Group: azv1.Group, Kind: azv1.Kind, Name: "default"},
			Offerings: []v1.OfferingChoice{{InstanceType: "Standard_D2s_v5", Zone: "eastus-1", CapacityType: v1.CapacityTypeOnDemand}}},
	}
	if _, err := p.Create(context.Background(), ghost); err != nil {
		t.Fatal(err)
	}
	return ghost.Name
}

// halt stops the operator, as a crash would look to the cluster.
func (cl *azCluster) halt(t *testing.T) {
	t.Helper()
	cl.mu.Lock()
	stop, done := cl.stop, cl.done
	cl.stop, cl.done = nil, nil
	cl.mu.Unlock()
	if stop == nil {
		return
	}
	stop()
	if err := <-done; err != nil {
		t.Errorf("operator: %v", err)
	}
}

func azEventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), azWait)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if ctx.Err() == nil {
			last = err
		}
		return err == nil && ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

// azNodeClass creates an AKSNodeClass in the cluster's subnet.
func (cl *azCluster) azNodeClass(t *testing.T, name string, mutate ...func(*azv1.AKSNodeClass)) *azv1.AKSNodeClass {
	t.Helper()
	// The locally built API server reports no release version, so the
	// kubelet version is pinned rather than taken from it.
	nc := &azv1.AKSNodeClass{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: azv1.AKSNodeClassSpec{SubnetID: cl.cloud.SubnetID(), KubernetesVersion: "1.37.2"}}
	for _, m := range mutate {
		m(nc)
	}
	if err := cl.c.Create(context.Background(), nc); err != nil {
		t.Fatal(err)
	}
	return nc
}

func (cl *azCluster) waitReady(t *testing.T, name string) {
	t.Helper()
	azEventually(t, "AKSNodeClass "+name+" Ready", func(ctx context.Context) (bool, error) {
		nc := &azv1.AKSNodeClass{}
		err := cl.c.Get(ctx, client.ObjectKey{Name: name}, nc)
		return err == nil && conditions.IsTrue(nc.Status.Conditions, azv1.ConditionReady), err
	})
}

// azPool is a NodePool of the node class, tainted with its own name so only
// its test's pods land on it.
func azPool(name, nodeClass string, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodePool {
	return &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			NodeClassRef: &v1.NodeClassReference{Group: azv1.Group, Kind: azv1.Kind, Name: nodeClass},
			Requirements: reqs,
			Taints:       []corev1.Taint{{Key: name, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
			ExpireAfter:  v1.Never,
		}}},
	}
}

func azReq(key string, values ...string) v1.NodeSelectorRequirementWithMinValues {
	return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: corev1.NodeSelectorOpIn, Values: values}
}

// azDeployment is a Deployment of GPU pods for a pool (tolerating its taint).
func azDeployment(ns, name, pool string, replicas int32, gpus string, labels map[string]string) *appsv1.Deployment {
	l := map[string]string{"app": name}
	for k, v := range labels {
		l[k] = v
	}
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("4Gi"),
		v1.ResourceNvidiaGPU: resource.MustParse(gpus)}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: l},
				Spec: corev1.PodSpec{
					NodeSelector:                  map[string]string{v1.LabelNodePool: pool},
					Tolerations:                   []corev1.Toleration{{Key: pool, Operator: corev1.TolerationOpExists}},
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					Containers: []corev1.Container{{Name: "main", Image: "example/app:1",
						Resources: corev1.ResourceRequirements{Requests: req, Limits: corev1.ResourceList{v1.ResourceNvidiaGPU: req[v1.ResourceNvidiaGPU]}}}},
				},
			},
		},
	}
}

// azState counts a pool's live VMs, NodeClaims, Nodes and the app's Running pods.
type azState struct {
	vms     []azuretest.VM
	claims  []v1.NodeClaim
	nodes   []corev1.Node
	running []corev1.Pod
}

func (cl *azCluster) state(ctx context.Context, ns, app, pool string) (azState, error) {
	var s azState
	for _, vm := range cl.cloud.VMs() {
		if vm.Tags[azure.TagNodePool] == pool {
			s.vms = append(s.vms, vm)
		}
	}
	claims := &v1.NodeClaimList{}
	if err := cl.c.List(ctx, claims, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		return s, err
	}
	for _, c := range claims.Items {
		if c.DeletionTimestamp == nil {
			s.claims = append(s.claims, c)
		}
	}
	nodes := &corev1.NodeList{}
	if err := cl.c.List(ctx, nodes, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		return s, err
	}
	for _, n := range nodes.Items {
		if n.DeletionTimestamp == nil {
			s.nodes = append(s.nodes, n)
		}
	}
	pods := &corev1.PodList{}
	if err := cl.c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": app}); err != nil {
		return s, err
	}
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			s.running = append(s.running, p)
		}
	}
	return s, nil
}

// settled waits until the app's pods all run, one per VM, with exactly as
// many VMs, NodeClaims and Nodes: nothing bought twice, nothing leaked.
func (cl *azCluster) settled(t *testing.T, ns, app, pool string, want int) azState {
	t.Helper()
	var s azState
	azEventually(t, fmt.Sprintf("%d pods of %s Running on %d VMs of pool %s", want, app, want, pool), func(ctx context.Context) (bool, error) {
		var err error
		s, err = cl.state(ctx, ns, app, pool)
		if err != nil {
			return false, err
		}
		if len(s.running) != want || len(s.vms) != want || len(s.claims) != want || len(s.nodes) != want {
			return false, fmt.Errorf("%d running, %d VMs, %d claims, %d nodes", len(s.running), len(s.vms), len(s.claims), len(s.nodes))
		}
		return true, nil
	})
	return s
}

// cleanup deletes the app and the pool's claims, and waits until their VMs,
// NICs and disks are gone.
func (cl *azCluster) cleanup(t *testing.T, ns, app, pool string) {
	t.Helper()
	ctx := context.Background()
	if err := cl.c.Delete(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: app}}); client.IgnoreNotFound(err) != nil {
		t.Fatal(err)
	}
	if err := cl.c.DeleteAllOf(ctx, &v1.NodeClaim{}, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		t.Fatal(err)
	}
	azEventually(t, "pool "+pool+"'s VMs, NICs and disks gone", func(ctx context.Context) (bool, error) {
		s, err := cl.state(ctx, ns, app, pool)
		if err != nil || len(s.vms)+len(s.claims)+len(s.nodes) != 0 {
			return false, err
		}
		for _, list := range [][]string{cl.cloud.NICs(), cl.cloud.Disks()} {
			for _, name := range list {
				if strings.HasPrefix(name, pool+"-") {
					return false, fmt.Errorf("%s still exists", name)
				}
			}
		}
		return true, nil
	})
}

// TestAzureOnLocalControlPlane runs the whole operator with the Azure
// provider on the in-process Azure, against the local control plane. Each
// case counts VMs, NodeClaims and Nodes, so a double buy or a leak fails.
func TestAzureOnLocalControlPlane(t *testing.T) {
	cl := azStart(t)
	ctx := context.Background()
	const ns = "azure"
	if err := cl.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	cl.azNodeClass(t, "default")
	cl.waitReady(t, "default")

	// A VM launched for a NodeClaim that never reached the API server (a
	// leak): garbage collection must delete it. Checked at the end, while
	// the other cases run.
	ghost := cl.launchGhost(t)

	t.Run("a node class naming a missing subnet or image buys nothing", func(t *testing.T) {
		cl.azNodeClass(t, "no-subnet", func(nc *azv1.AKSNodeClass) {
			nc.Spec.SubnetID = strings.Replace(nc.Spec.SubnetID, azuretest.Subnet, "gone", 1)
		})
		cl.azNodeClass(t, "no-image", func(nc *azv1.AKSNodeClass) { nc.Spec.Image.Version = "199901.01.0" })
		for name, cond := range map[string]string{"no-subnet": azv1.ConditionSubnetReady, "no-image": azv1.ConditionImageReady} {
			azEventually(t, name+" "+cond+" False", func(ctx context.Context) (bool, error) {
				nc := &azv1.AKSNodeClass{}
				if err := cl.c.Get(ctx, client.ObjectKey{Name: name}, nc); err != nil {
					return false, err
				}
				c := conditions.Get(nc.Status.Conditions, cond)
				return c != nil && c.Status == metav1.ConditionFalse && c.Reason == nodeclass.ReasonNotFound &&
					!conditions.IsTrue(nc.Status.Conditions, azv1.ConditionReady), nil
			})
		}
		if err := cl.c.Create(ctx, azPool("broken", "no-subnet")); err != nil {
			t.Fatal(err)
		}
		if err := cl.c.Create(ctx, azDeployment(ns, "stuck", "broken", 1, "1", nil)); err != nil {
			t.Fatal(err)
		}
		// Several batch windows pass; nothing may be bought for the pool.
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			s, err := cl.state(ctx, ns, "stuck", "broken")
			if err != nil {
				t.Fatal(err)
			}
			if len(s.vms)+len(s.claims) != 0 {
				t.Fatalf("%d VMs and %d claims for a node class that is not Ready", len(s.vms), len(s.claims))
			}
			time.Sleep(time.Second)
		}
		// Fixing the subnet makes it Ready and the pod gets a node.
		nc := &azv1.AKSNodeClass{}
		if err := cl.c.Get(ctx, client.ObjectKey{Name: "no-subnet"}, nc); err != nil {
			t.Fatal(err)
		}
		nc.Spec.SubnetID = cl.cloud.SubnetID()
		if err := cl.c.Update(ctx, nc); err != nil {
			t.Fatal(err)
		}
		cl.settled(t, ns, "stuck", "broken", 1)
		cl.cleanup(t, ns, "stuck", "broken")
	})

	t.Run("a 1-GPU pod gets the cheapest fitting NC size", func(t *testing.T) {
		pool := azPool("nc", "default", azReq(v1.LabelCapacityType, v1.CapacityTypeOnDemand),
			azReq(v1.LabelInstanceFamily, "NCas_T4_v3", "NCads_A100_v4", "NCads_H100_v5"))
		if err := cl.c.Create(ctx, pool); err != nil {
			t.Fatal(err)
		}
		if err := cl.c.Create(ctx, azDeployment(ns, "infer", "nc", 1, "1", nil)); err != nil {
			t.Fatal(err)
		}
		s := cl.settled(t, ns, "infer", "nc", 1)
		if got := s.vms[0].Size; got != "Standard_NC4as_T4_v3" {
			t.Errorf("bought %s, want the cheapest NC size with a GPU, Standard_NC4as_T4_v3", got)
		}
		node := s.nodes[0]
		if node.Labels[v1.LabelGPUName] != "t4" || node.Spec.ProviderID != s.claims[0].Status.ProviderID || s.vms[0].Priority != "Regular" {
			t.Errorf("node %s labels %v providerID %s, claim %s", node.Name, node.Labels, node.Spec.ProviderID, s.claims[0].Status.ProviderID)
		}
		cl.cleanup(t, ns, "infer", "nc")
	})

	t.Run("an allocation failure falls back to the next offering", func(t *testing.T) {
		for _, z := range []string{"1", "2", "3"} {
			cl.cloud.FailAllocation("Standard_NC4as_T4_v3", z, "Regular", azuretest.CodeZonalAllocationFailed, -1)
		}
		defer cl.cloud.ClearFaults()
		pool := azPool("fallback", "default", azReq(v1.LabelCapacityType, v1.CapacityTypeOnDemand),
			azReq(v1.LabelInstanceType, "Standard_NC4as_T4_v3", "Standard_NC8as_T4_v3"))
		if err := cl.c.Create(ctx, pool); err != nil {
			t.Fatal(err)
		}
		if err := cl.c.Create(ctx, azDeployment(ns, "fallback", "fallback", 1, "1", nil)); err != nil {
			t.Fatal(err)
		}
		s := cl.settled(t, ns, "fallback", "fallback", 1)
		if got := s.vms[0].Size; got != "Standard_NC8as_T4_v3" {
			t.Errorf("bought %s, want Standard_NC8as_T4_v3 after NC4as_T4_v3 failed in every zone", got)
		}
		if !slices.ContainsFunc(s.claims[0].Status.UnavailableOfferings, func(o string) bool { return strings.HasPrefix(o, "Standard_NC4as_T4_v3/") }) {
			t.Errorf("claim's unavailable offerings %v, want the failed NC4as_T4_v3", s.claims[0].Status.UnavailableOfferings)
		}
		var nics []string
		for _, n := range cl.cloud.NICs() {
			if strings.HasPrefix(n, "fallback-") {
				nics = append(nics, n)
			}
		}
		if len(nics) != 1 {
			t.Errorf("the pool's NICs %v, want one: failed VMs and their NICs are removed", nics)
		}
		cl.cleanup(t, ns, "fallback", "fallback")
	})

	t.Run("reserved VMs are used before on-demand", func(t *testing.T) {
		crg := cl.cloud.AddCapacityReservation("a100-reserved", "Standard_NC24ads_A100_v4", "1", 2)
		cl.azNodeClass(t, "reserved", func(nc *azv1.AKSNodeClass) { nc.Spec.CapacityReservationGroup = crg })
		cl.waitReady(t, "reserved")
		pool := azPool("a100", "reserved", azReq(v1.LabelInstanceType, "Standard_NC24ads_A100_v4"),
			azReq(v1.LabelCapacityType, v1.CapacityTypeReserved, v1.CapacityTypeOnDemand))
		if err := cl.c.Create(ctx, pool); err != nil {
			t.Fatal(err)
		}
		if err := cl.c.Create(ctx, azDeployment(ns, "a100", "a100", 3, "1", nil)); err != nil {
			t.Fatal(err)
		}
		s := cl.settled(t, ns, "a100", "a100", 3)
		var reserved, onDemand int
		for _, vm := range s.vms {
			if strings.EqualFold(vm.CapacityReservationGroup, crg) {
				reserved++
			} else {
				onDemand++
			}
		}
		if reserved != 2 || onDemand != 1 {
			t.Errorf("%d reserved and %d on-demand VMs, want the 2 reserved first and 1 on-demand", reserved, onDemand)
		}
		reservedClaims := 0
		for _, c := range s.claims {
			if c.Status.CapacityType == v1.CapacityTypeReserved {
				reservedClaims++
				if c.Status.Zone != "eastus-1" {
					t.Errorf("reserved claim %s in %s, want the reservation's zone eastus-1", c.Name, c.Status.Zone)
				}
			}
		}
		if reservedClaims != 2 {
			t.Errorf("%d claims record reserved capacity, want 2", reservedClaims)
		}
		cl.cleanup(t, ns, "a100", "a100")
	})

	t.Run("a 4-node gang lands in one zone and one proximity placement group", func(t *testing.T) {
		ppg := cl.cloud.AddProximityPlacementGroup("training")
		cl.azNodeClass(t, "train", func(nc *azv1.AKSNodeClass) { nc.Spec.ProximityPlacementGroup = ppg })
		cl.waitReady(t, "train")
		pool := azPool("h100", "train", azReq(v1.LabelInstanceType, "Standard_ND96isr_H100_v5"),
			azReq(v1.LabelCapacityType, v1.CapacityTypeOnDemand))
		if err := cl.c.Create(ctx, pool); err != nil {
			t.Fatal(err)
		}
		gang := map[string]string{v1.LabelPodGroup: "llm", v1.LabelPodGroupSize: "4"}
		if err := cl.c.Create(ctx, azDeployment(ns, "llm", "h100", 4, "8", gang)); err != nil {
			t.Fatal(err)
		}
		s := cl.settled(t, ns, "llm", "h100", 4)
		zones, groups := map[string]bool{}, map[string]bool{}
		for _, vm := range s.vms {
			zones[vm.Zone] = true
			groups[strings.ToLower(vm.PPG)] = true
		}
		if len(zones) != 1 || len(groups) != 1 || groups[""] {
			t.Errorf("gang VMs in zones %v and proximity placement groups %v, want one of each", zones, groups)
		}
		cl.cleanup(t, ns, "llm", "h100")
	})

	t.Run("a PreemptionScheduled condition drains and replaces", func(t *testing.T) {
		pool := azPool("spot", "default", azReq(v1.LabelInstanceType, "Standard_NC4as_T4_v3"),
			azReq(v1.LabelCapacityType, v1.CapacityTypeSpot))
		if err := cl.c.Create(ctx, pool); err != nil {
			t.Fatal(err)
		}
		if err := cl.c.Create(ctx, azDeployment(ns, "spot", "spot", 1, "1", nil)); err != nil {
			t.Fatal(err)
		}
		first := cl.settled(t, ns, "spot", "spot", 1)
		if first.vms[0].Priority != "Spot" || first.vms[0].EvictionPolicy != "Delete" {
			t.Errorf("spot VM priority %s eviction %s", first.vms[0].Priority, first.vms[0].EvictionPolicy)
		}
		node := first.nodes[0]
		stored := node.DeepCopy()
		node.Status.Conditions = append(node.Status.Conditions, corev1.NodeCondition{Type: azure.ConditionPreemptionScheduled,
			Status: corev1.ConditionTrue, Reason: "PreemptScheduled", Message: "Preempt event scheduled",
			LastTransitionTime: metav1.Now(), LastHeartbeatTime: metav1.Now()})
		if err := cl.c.Status().Patch(ctx, &node, client.MergeFrom(stored)); err != nil {
			t.Fatal(err)
		}
		var second azState
		azEventually(t, "the pod Running on a replacement and the preempted VM gone", func(ctx context.Context) (bool, error) {
			var err error
			second, err = cl.state(ctx, ns, "spot", "spot")
			if err != nil {
				return false, err
			}
			if len(second.running) != 1 || len(second.vms) != 1 || len(second.claims) != 1 || len(second.nodes) != 1 {
				return false, fmt.Errorf("%d running, %d VMs, %d claims, %d nodes", len(second.running), len(second.vms), len(second.claims), len(second.nodes))
			}
			return second.vms[0].Name != first.vms[0].Name && second.running[0].Spec.NodeName != node.Name, nil
		})
		cl.cleanup(t, ns, "spot", "spot")
	})

	t.Run("a VM no NodeClaim owns is garbage collected", func(t *testing.T) {
		azEventually(t, "the leaked VM "+ghost+" and its NIC and disk gone", func(context.Context) (bool, error) {
			for _, vm := range cl.cloud.VMs() {
				if vm.Name == ghost {
					return false, fmt.Errorf("VM %s still exists", ghost)
				}
			}
			for _, list := range [][]string{cl.cloud.NICs(), cl.cloud.Disks()} {
				for _, name := range list {
					if strings.HasPrefix(name, ghost) {
						return false, fmt.Errorf("%s still exists", name)
					}
				}
			}
			return true, nil
		})
	})

	t.Run("a controller restart mid-launch buys exactly one VM", func(t *testing.T) {
		release := cl.cloud.HoldCreates()
		defer release()
		pool := azPool("restart", "default", azReq(v1.LabelInstanceType, "Standard_NC8as_T4_v3"),
			azReq(v1.LabelCapacityType, v1.CapacityTypeOnDemand))
		if err := cl.c.Create(ctx, pool); err != nil {
			t.Fatal(err)
		}
		if err := cl.c.Create(ctx, azDeployment(ns, "restart", "restart", 1, "1", nil)); err != nil {
			t.Fatal(err)
		}
		azEventually(t, "the VM to be created and held", func(ctx context.Context) (bool, error) {
			s, err := cl.state(ctx, ns, "restart", "restart")
			return err == nil && len(s.vms) == 1 && s.vms[0].State == "Creating", err
		})
		cl.halt(t)
		s, err := cl.state(ctx, ns, "restart", "restart")
		if err != nil {
			t.Fatal(err)
		}
		if len(s.claims) != 1 || s.claims[0].Status.ProviderID != "" {
			t.Fatalf("the crash must leave one claim without a providerID, got %d: %+v", len(s.claims), s.claims)
		}
		cl.startOperator(t)
		release()
		after := cl.settled(t, ns, "restart", "restart", 1)
		if after.vms[0].Name != s.vms[0].Name || after.claims[0].Name != s.claims[0].Name {
			t.Errorf("after the restart VM %s of claim %s, want the VM %s launched before it", after.vms[0].Name, after.claims[0].Name, s.vms[0].Name)
		}
		cl.cleanup(t, ns, "restart", "restart")
	})
}
