//go:build unix

package e2e

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/operator"
	"github.com/stowage-k8s/stowage/pkg/utils/conditions"
	"github.com/stowage-k8s/stowage/providers/fake"
	gcpprovider "github.com/stowage-k8s/stowage/providers/gcp"
	gcpv1 "github.com/stowage-k8s/stowage/providers/gcp/apis/v1"
	"github.com/stowage-k8s/stowage/providers/gcp/controllers/nodeclass"
	"github.com/stowage-k8s/stowage/providers/gcp/gcetest"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// gcpBootDelay is how long a fake GKE VM takes from insert to its kubelet
// registering: above zero, as in production.
const gcpBootDelay = 3 * time.Second

// gcpCluster is the local control plane with the whole operator running the
// GCP provider against gcetest's fake Compute Engine, and a stand-in for
// the VMs' kubelets and GKE's cloud-controller-manager.
type gcpCluster struct {
	cp  *controlplane.ControlPlane
	c   client.Client
	srv *gcetest.Server
	op  *gcpOperator
}

type gcpOperator struct {
	cancel   context.CancelFunc
	done     chan error
	provider *gcpprovider.Provider
}

var gcpLogOnce sync.Once

func gcpStart(t *testing.T) *gcpCluster {
	t.Helper()
	gcpLogOnce.Do(func() {
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
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	srv := gcetest.Start(gcetest.Options{})
	t.Cleanup(srv.Close)
	srv.Seed()
	gc := &gcpCluster{cp: cp, c: cp.Client, srv: srv}
	if err := gcpv1.AddToScheme(cp.Client.Scheme()); err != nil {
		t.Fatal(err)
	}
	gc.op = gc.startOperator(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); gc.kubelets(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return gc
}

// startOperator runs the operator as `stowage controller --cloud-provider
// gcp --gcp-endpoint ...` does, with production defaults.
func (gc *gcpCluster) startOperator(t *testing.T) *gcpOperator {
	t.Helper()
	clients, err := gcpprovider.NewClients(context.Background(), gcpprovider.ClientConfig{Endpoint: gc.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	opts := operator.DefaultOptions()
	opts.CloudProvider = gcpprovider.Name
	opts.ClusterName = gc.srv.Cluster
	opts.LeaderElection = false
	opts.MetricsAddr = "0"
	opts.HealthProbeAddr = "0"
	o := &gcpOperator{done: make(chan error, 1)}
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel = cancel
	op, err := operator.New(ctx, gc.cp.Config, opts,
		operator.WithSkipNameValidation(),
		operator.WithProvider(gcpprovider.Name, func(_ context.Context, d operator.ProviderDeps) (cloudprovider.CloudProvider, error) {
			if err := gcpv1.AddToScheme(d.Client.Scheme()); err != nil {
				return nil, err
			}
			p, err := gcpprovider.New(gcpprovider.Options{ClusterName: d.ClusterName, Project: gc.srv.Project, Region: gc.srv.Region,
				Clients: clients, Kube: d.Client, Clock: d.Clock})
			o.provider = p
			close(ready)
			return p, err
		}),
		operator.WithController(nodeclass.NewController(nodeclass.Deps{Clients: clients, Project: gc.srv.Project, Region: gc.srv.Region, Cluster: gc.srv.Cluster,
			SkipNameValidation: true})))
	if err != nil {
		cancel()
		t.Fatalf("building the operator: %v", err)
	}
	<-ready
	go func() { o.done <- op.Start(ctx); clients.Close() }()
	t.Cleanup(func() { o.stop(t) })
	return o
}

func (o *gcpOperator) stop(t *testing.T) {
	if o.cancel == nil {
		return
	}
	o.cancel()
	o.cancel = nil
	if err := <-o.done; err != nil {
		t.Errorf("operator: %v", err)
	}
}

// kubelets plays each VM's kubelet and GKE's cloud-controller-manager: a
// VM's Node registers gcpBootDelay after its insert, with the labels and
// taints Stowage wrote into its kube-env, and a Node whose VM is gone is
// deleted, as the cloud-controller-manager does.
func (gc *gcpCluster) kubelets(ctx context.Context) {
	capacity := map[string]*cloudprovider.InstanceType{}
	_ = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		live := map[string]bool{}
		for _, inst := range gc.srv.Instances() {
			pid := gcpprovider.ProviderID(gc.srv.Project, lastPathSegment(inst.GetZone()), inst.GetName())
			live[pid] = true
			created, _ := time.Parse(time.RFC3339Nano, inst.GetCreationTimestamp())
			if time.Since(created) < gcpBootDelay {
				continue
			}
			err := gc.c.Get(ctx, client.ObjectKey{Name: inst.GetName()}, &corev1.Node{})
			if !apierrors.IsNotFound(err) {
				continue
			}
			if len(capacity) == 0 && gc.op.provider != nil {
				its, _ := gc.op.provider.InstanceTypes(ctx, nil)
				for _, it := range its {
					capacity[it.Name] = it
				}
			}
			if node := gcpNode(inst, pid, capacity); node != nil {
				_ = gc.c.Create(ctx, node)
			}
		}
		nodes := &corev1.NodeList{}
		if err := gc.c.List(ctx, nodes); err == nil {
			for i := range nodes.Items {
				n := &nodes.Items[i]
				if strings.HasPrefix(n.Spec.ProviderID, "gce://") && !live[n.Spec.ProviderID] {
					_ = gc.c.Delete(ctx, n)
				}
			}
		}
		return false, nil
	})
}

// gcpNode is the Node a GKE kubelet registers from the VM's kube-env.
func gcpNode(inst *computepb.Instance, providerID string, types map[string]*cloudprovider.InstanceType) *corev1.Node {
	env := ""
	for _, it := range inst.GetMetadata().GetItems() {
		if it.GetKey() == "kube-env" {
			env = it.GetValue()
		}
	}
	values := map[string]string{}
	for _, line := range strings.Split(env, "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok {
			values[k] = strings.Trim(v, "'")
		}
	}
	labels := map[string]string{corev1.LabelHostname: inst.GetName()}
	for _, kv := range strings.Split(values["NODE_LABELS"], ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			labels[k] = v
		}
	}
	var taints []corev1.Taint
	for _, t := range strings.Split(values["NODE_TAINTS"], ",") {
		kv, effect, ok := strings.Cut(t, ":")
		if !ok {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		taints = append(taints, corev1.Taint{Key: k, Value: v, Effect: corev1.TaintEffect(effect)})
	}
	it := types[labels[v1.LabelInstanceType]]
	if it == nil {
		return nil
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: inst.GetName(), Labels: labels, Annotations: map[string]string{fake.KwokAnnotation: fake.KwokAnnotationValue}},
		Spec:       corev1.NodeSpec{ProviderID: providerID, Taints: taints},
		Status:     corev1.NodeStatus{Capacity: it.Capacity.DeepCopy(), Allocatable: it.Allocatable()},
	}
}

func lastPathSegment(s string) string { return s[strings.LastIndex(s, "/")+1:] }

func gcpNodeClass(name string, mutate ...func(*gcpv1.GCENodeClass)) *gcpv1.GCENodeClass {
	nc := &gcpv1.GCENodeClass{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: gcpv1.GCENodeClassSpec{ServiceAccount: "stowage-nodes@stowage-test.iam.gserviceaccount.com"}}
	for _, m := range mutate {
		m(nc)
	}
	return nc
}

func gcpPool(name, class string, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodePool {
	p := provPool(name, name, nil, reqs...)
	p.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: gcpv1.Group, Kind: gcpv1.Kind, Name: class}
	p.Spec.Disruption.ConsolidateAfter = v1.Never
	return p
}

// gcpInstances are the live VMs of a NodePool.
func (gc *gcpCluster) instances(pool string) []*computepb.Instance {
	var out []*computepb.Instance
	for _, inst := range gc.srv.Instances() {
		if inst.GetLabels()[gcpprovider.LabelNodePool] == pool {
			out = append(out, inst)
		}
	}
	return out
}

func (gc *gcpCluster) inserted(pool string) int {
	n := 0
	for _, inst := range gc.srv.Inserted() {
		if inst.GetLabels()[gcpprovider.LabelNodePool] == pool {
			n++
		}
	}
	return n
}

// runningOn waits until the pods of ns are Running and returns their nodes.
func (gc *gcpCluster) runningOn(t *testing.T, ns string, n int) []string {
	t.Helper()
	var nodes []string
	provEventually(t, fmt.Sprintf("%d pods Running in %s", n, ns), func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := gc.c.List(ctx, pods, client.InNamespace(ns)); err != nil {
			return false, err
		}
		nodes = nodes[:0]
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning {
				nodes = append(nodes, p.Spec.NodeName)
			}
		}
		return len(nodes) == n && len(pods.Items) == n, nil
	})
	return nodes
}

// TestGCPOnFakeGCE runs Stowage's operator with the GCP provider on the
// local control plane against the fake Compute Engine: a broken node class
// buys nothing, a 1-GPU pod gets the cheapest 1-GPU machine (n1 + T4 here),
// a stockout falls back to another zone, an 8-GPU gang lands in one zone,
// a placement group shares one compact policy, and a preempted spot VM is
// drained and replaced. Machines, NodeClaims and Nodes are counted.
func TestGCPOnFakeGCE(t *testing.T) {
	gc := gcpStart(t)
	ctx := context.Background()
	c := gc.c
	for _, ns := range []string{"bad", "infer", "stock", "train", "spot"} {
		provCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}

	// A node class naming a missing subnetwork is not Ready and buys nothing.
	provCreate(t, c, gcpNodeClass("bad", func(nc *gcpv1.GCENodeClass) { nc.Spec.Subnetwork = "no-such-subnet" }),
		gcpNodeClass("default"), gcpPool("bad", "bad", provReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "e2-standard-4")))
	provCreate(t, c, provPod("bad", "app", nil, []string{"bad"}, "cpu", "1"))
	provEventually(t, "GCENodeClass bad False with the reason", func(ctx context.Context) (bool, error) {
		nc := &gcpv1.GCENodeClass{}
		err := c.Get(ctx, client.ObjectKey{Name: "bad"}, nc)
		cond := conditions.Get(nc.Status.Conditions, gcpv1.ConditionSubnetworkReady)
		return err == nil && cond != nil && cond.Status == metav1.ConditionFalse && cond.Reason == nodeclass.ReasonNotFound &&
			strings.Contains(cond.Message, "no-such-subnet"), err
	})
	provEventually(t, "GCENodeClass default Ready", func(ctx context.Context) (bool, error) {
		nc := &gcpv1.GCENodeClass{}
		err := c.Get(ctx, client.ObjectKey{Name: "default"}, nc)
		return err == nil && conditions.IsTrue(nc.Status.Conditions, gcpv1.ConditionReady), err
	})

	// 1 GPU: the cheapest 1-GPU offering on-demand wins, n1 + T4 or g2.
	provCreate(t, c, gcpPool("infer", "default", provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand),
		provReq(v1.LabelInstanceFamily, corev1.NodeSelectorOpIn, "n1", "g2")))
	provCreate(t, c, provPod("infer", "llm", nil, []string{"infer", "nvidia.com/gpu"}, "cpu", "2", "memory", "8Gi", "nvidia.com/gpu", "1"))
	gc.runningOn(t, "infer", 1)
	its, err := gc.op.provider.InstanceTypes(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	cheapest, best := "", math.Inf(1)
	for _, it := range its {
		fam := it.Labels[v1.LabelInstanceFamily]
		if it.GPU == nil || it.GPU.Count != 1 || (fam != "n1" && fam != "g2") || it.Capacity.Memory().Value() < 10<<30 {
			continue
		}
		for _, o := range it.Offerings {
			if o.CapacityType == v1.CapacityTypeOnDemand && o.PricePerHour < best {
				cheapest, best = it.Name, o.PricePerHour
			}
		}
	}
	insts := gc.instances("infer")
	if len(insts) != 1 || gc.inserted("infer") != 1 {
		t.Fatalf("infer pool has %d machines (%d inserted), want 1", len(insts), gc.inserted("infer"))
	}
	if got := insts[0].GetLabels()[gcpprovider.LabelInstanceType]; got != cheapest || !strings.HasPrefix(cheapest, "n1-") {
		t.Errorf("1-GPU pod got %s, the cheapest 1-GPU machine is %s ($%.3f/h)", got, cheapest, best)
	}

	// Stockout in two zones: the machine comes from the third.
	for _, z := range []string{"us-central1-a", "us-central1-b"} {
		gc.srv.Stockout(z, "g2-standard-8", true)
	}
	provCreate(t, c, gcpPool("stock", "default", provReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "g2-standard-8"),
		provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)))
	provCreate(t, c, provPod("stock", "render", nil, []string{"stock", "nvidia.com/gpu"}, "cpu", "4", "nvidia.com/gpu", "1"))
	gc.runningOn(t, "stock", 1)
	if insts := gc.instances("stock"); len(insts) != 1 || lastPathSegment(insts[0].GetZone()) != "us-central1-c" || gc.inserted("stock") != 1 {
		t.Errorf("stock pool machines = %d (inserted %d), want one in us-central1-c", len(insts), gc.inserted("stock"))
	}

	// An 8-GPU gang of two lands on a3 machines in one zone.
	provCreate(t, c, gcpPool("train", "default", provReq(v1.LabelInstanceFamily, corev1.NodeSelectorOpIn, "a3"),
		provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)))
	for i := range 2 {
		p := provPod("train", fmt.Sprintf("worker-%d", i), nil, []string{"train", "nvidia.com/gpu"}, "cpu", "32", "memory", "256Gi", "nvidia.com/gpu", "8")
		p.Labels = map[string]string{v1.LabelPodGroup: "llm", v1.LabelPodGroupSize: "2"}
		provCreate(t, c, p)
	}
	gc.runningOn(t, "train", 2)
	train := gc.instances("train")
	if len(train) != 2 || gc.inserted("train") != 2 || train[0].GetZone() != train[1].GetZone() {
		t.Fatalf("gang machines = %d (inserted %d), want 2 in one zone", len(train), gc.inserted("train"))
	}
	for _, inst := range train {
		if !strings.HasPrefix(lastPathSegment(inst.GetMachineType()), "a3-") {
			t.Errorf("gang got %s", inst.GetMachineType())
		}
	}

	// Claims of one placement group share one compact policy in one zone.
	var placed []string
	for i, zones := range [][]string{{"us-central1-b", "us-central1-a"}, {"us-central1-a", "us-central1-b"}} {
		claim := lifeClaim(fmt.Sprintf("placed-%d", i), lifeOffering("a2-highgpu-8g", zones[0], v1.CapacityTypeOnDemand),
			lifeOffering("a2-highgpu-8g", zones[1], v1.CapacityTypeOnDemand))
		claim.Labels = map[string]string{v1.LabelNodePool: "placed"}
		claim.Spec.NodeClassRef = &v1.NodeClassReference{Group: gcpv1.Group, Kind: gcpv1.Kind, Name: "default"}
		claim.Spec.Placement = &v1.Placement{Group: "run-42"}
		provCreate(t, c, claim)
		placed = append(placed, claim.Name)
	}
	provEventually(t, "both placed claims launched", func(ctx context.Context) (bool, error) {
		return len(gc.instances("placed")) == 2, nil
	})
	pl := gc.instances("placed")
	// The training gang above has a compact policy of its own.
	var policies []*computepb.ResourcePolicy
	for _, rp := range gc.srv.ResourcePolicies() {
		if strings.HasSuffix(rp.GetName(), "-run-42") {
			policies = append(policies, rp)
		}
	}
	if len(policies) != 1 || pl[0].GetZone() != pl[1].GetZone() || len(pl[0].GetResourcePolicies()) != 1 ||
		lastPathSegment(pl[0].GetResourcePolicies()[0]) != policies[0].GetName() || lastPathSegment(pl[1].GetResourcePolicies()[0]) != policies[0].GetName() {
		t.Errorf("placed machines in %s and %s with policies %v / %v; %d policies exist, want one shared", pl[0].GetZone(), pl[1].GetZone(),
			pl[0].GetResourcePolicies(), pl[1].GetResourcePolicies(), len(policies))
	}
	for _, name := range placed {
		if err := c.Delete(ctx, &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}

	// A preempted spot VM is drained and replaced.
	provCreate(t, c, gcpPool("spot", "default", provReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "g2-standard-4"),
		provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeSpot)))
	provCreate(t, c, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "spot", Name: "batch"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "batch"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "batch"}},
				Spec: provPod("spot", "x", nil, []string{"spot", "nvidia.com/gpu"}, "cpu", "2", "nvidia.com/gpu", "1").Spec},
		},
	})
	first := gc.runningOn(t, "spot", 1)[0]
	if err := gc.srv.Preempt(first); err != nil {
		t.Fatal(err)
	}
	provEventually(t, "the spot pod Running on a replacement", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace("spot")); err != nil {
			return false, err
		}
		claims, err := provClaims(ctx, c, "spot")
		return err == nil && len(pods.Items) == 1 && pods.Items[0].Status.Phase == corev1.PodRunning && pods.Items[0].Spec.NodeName != first &&
			len(claims) == 1 && len(gc.instances("spot")) == 1, err
	})
	if n := gc.inserted("spot"); n != 2 {
		t.Errorf("spot pool bought %d machines, want the first and one replacement", n)
	}

	// Nothing was ever bought for the broken class, and every pool's
	// machines, claims and nodes agree.
	if n := gc.inserted("bad"); n != 0 {
		t.Errorf("%d machines bought for a node class that is not Ready", n)
	}
	provEventually(t, "claims, nodes and machines agree", func(ctx context.Context) (bool, error) {
		for pool, want := range map[string]int{"infer": 1, "stock": 1, "train": 2, "spot": 1, "placed": 0} {
			claims, err := provClaims(ctx, c, pool)
			if err != nil {
				return false, err
			}
			nodes := &corev1.NodeList{}
			if err := c.List(ctx, nodes, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
				return false, err
			}
			if len(claims) != want || len(nodes.Items) != want || len(gc.instances(pool)) != want {
				return false, fmt.Errorf("pool %s: %d claims, %d nodes, %d machines, want %d", pool, len(claims), len(nodes.Items), len(gc.instances(pool)), want)
			}
		}
		return true, nil
	})
}

// TestGCPRestartMidLaunchBuysOne crashes the controller after Compute
// Engine created the VM but before the insert answered: the restarted
// controller adopts that VM instead of buying a second.
func TestGCPRestartMidLaunchBuysOne(t *testing.T) {
	gc := gcpStart(t)
	c := gc.c
	release := make(chan struct{})
	inserted := make(chan string, 1)
	gc.srv.AfterInsert(func(name string) {
		select {
		case inserted <- name:
		default:
		}
		<-release
	})
	provCreate(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crash"}}, gcpNodeClass("default"),
		gcpPool("crash", "default", provReq(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "g2-standard-4"),
			provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)))
	provCreate(t, c, provPod("crash", "app", nil, []string{"crash", "nvidia.com/gpu"}, "cpu", "1", "nvidia.com/gpu", "1"))
	var name string
	select {
	case name = <-inserted:
	case <-time.After(provWait):
		t.Fatal("no insert")
	}
	stopped := make(chan struct{})
	go func() { gc.op.stop(t); close(stopped) }() // the crash: the insert's answer never arrives
	time.Sleep(500 * time.Millisecond)
	gc.srv.AfterInsert(nil)
	close(release)
	<-stopped
	claims, err := provClaims(context.Background(), c, "crash")
	if err != nil || len(claims) != 1 || claims[0].Status.ProviderID != "" {
		t.Fatalf("before the restart: %d claims (%v), want one without a providerID", len(claims), err)
	}
	gc.op = gc.startOperator(t)
	gc.runningOn(t, "crash", 1)
	provEventually(t, "the claim records the VM made before the crash", func(ctx context.Context) (bool, error) {
		claims, err := provClaims(ctx, c, "crash")
		return err == nil && len(claims) == 1 && strings.HasSuffix(claims[0].Status.ProviderID, "/"+name), err
	})
	if n := gc.inserted("crash"); n != 1 || len(gc.instances("crash")) != 1 {
		t.Errorf("%d machines bought (%d live), want exactly one", n, len(gc.instances("crash")))
	}
}
