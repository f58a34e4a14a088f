//go:build unix

package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/providers/fake"
)

// holdWait bounds every wait of these suites; it is a deadline for a
// condition to hold, never an assertion about how long something took.
const holdWait = 4 * time.Minute

// TestControllersHoldUp reproduces, each in its own NodePool and namespace
// on one cluster running the operator with production defaults (fake launch
// latency 2 s, a disruption pass every 10 s, default budgets and batch
// windows, NodePools as the API server defaults them), the defects found on
// workloads real clusters have. Every case counts NodeClaims and fake-cloud
// machines, so a double purchase or a leak fails it.
func TestControllersHoldUp(t *testing.T) {
	ec := e2eStart(t, e2eOptions{clusterName: "holdup-e2e"})
	t.Run("group", func(t *testing.T) {
		t.Run("a pod whose volume is pinned to a zone runs there on one machine", func(t *testing.T) {
			t.Parallel()
			holdZonalVolume(t, ec)
		})
		t.Run("deleting a NodePool drains and removes its machines", func(t *testing.T) {
			t.Parallel()
			holdPoolDeletion(t, ec)
		})
		t.Run("nodes bought for pods stay once they run", func(t *testing.T) {
			t.Parallel()
			holdScaleUpStays(t, ec)
		})
		t.Run("a pod stuck terminating does not hold its machine", func(t *testing.T) {
			t.Parallel()
			holdStuckTerminating(t, ec)
		})
		t.Run("an untainted mixed pool buys what the plan says", func(t *testing.T) {
			// Steering alone (nominatedNodeName) left a second GPU machine
			// bought in about half the runs: the kube-scheduler clears the
			// nomination after every failed attempt and put a CPU pod planned
			// elsewhere on the fresh GPU node. The reservation taint makes it
			// deterministic.
			t.Parallel()
			holdMixedPool(t, ec)
		})
		t.Run("a node that stops reporting is replaced", func(t *testing.T) {
			t.Parallel()
			holdRepair(t, ec)
		})
		t.Run("volume pods are spread by the machines' attach limit", func(t *testing.T) {
			t.Parallel()
			holdAttachLimits(t, ec)
		})
	})
}

// holdApply creates objects written as YAML, so NodePools get the API
// server's defaults just as `kubectl apply` would give them.
func holdApply(t *testing.T, c client.Client, docs ...string) {
	t.Helper()
	for _, doc := range docs {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatalf("decoding %q: %v", doc, err)
		}
		if err := c.Create(context.Background(), u); err != nil {
			t.Fatalf("creating %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
}

// holdPoolSpec is what a test NodePool sets; everything else is left to
// the API server's defaults.
type holdPoolSpec struct {
	name  string
	types []string
	// labels, a YAML flow map such as "{tier: web}", go on every node.
	labels string
	weight int
	// disruption, a YAML flow map, replaces the default disruption block.
	disruption string
}

// holdPool is a NodePool of on-demand machines of the given instance types.
func holdPool(p holdPoolSpec) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata:\n  name: %s\nspec:\n  template:\n", p.name)
	if p.labels != "" {
		fmt.Fprintf(&b, "    metadata:\n      labels: %s\n", p.labels)
	}
	fmt.Fprintf(&b, `    spec:
      expireAfter: Never
      requirements:
      - {key: node.kubernetes.io/instance-type, operator: In, values: [%s]}
      - {key: stowage.dev/capacity-type, operator: In, values: [on-demand]}
`, strings.Join(p.types, ", "))
	if p.weight > 0 {
		fmt.Fprintf(&b, "  weight: %d\n", p.weight)
	}
	if p.disruption != "" {
		fmt.Fprintf(&b, "  disruption: %s\n", p.disruption)
	}
	return b.String()
}

func holdNamespace(t *testing.T, c client.Client, ns string) {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
}

// holdPod requests resources as (name, quantity) pairs and selects pool.
func holdPod(ns, name, pool string, requests ...string) *corev1.Pod {
	p := provPod(ns, name, map[string]string{v1.LabelNodePool: pool}, nil, requests...)
	p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](0)
	p.Labels = map[string]string{"app": name}
	return p
}

// holdCounts are the pool's NodeClaims (not deleting) and fake machines.
func holdCounts(ctx context.Context, c client.Client, pool string) (claims []v1.NodeClaim, machines int, err error) {
	claims, err = disrClaims(ctx, c, pool)
	if err != nil {
		return nil, 0, err
	}
	machines, err = e2eMachines(ctx, c, pool)
	return claims, machines, err
}

// holdSteadyCounts checks three times, 10 s apart (past a disruption pass
// and a provisioning resync), that the pool has exactly want NodeClaims and
// want machines: a double-buy, or a machine bought and dropped each pass,
// fails it.
func holdSteadyCounts(ctx context.Context, t *testing.T, c client.Client, pool string, want int, why string) {
	t.Helper()
	for range 3 {
		claims, machines, err := holdCounts(ctx, c, pool)
		if err != nil {
			t.Fatal(err)
		}
		if len(claims) != want || machines != want {
			t.Fatalf("nodepool %s has %d NodeClaims and %d machines, want %d of each: %s", pool, len(claims), machines, want, why)
		}
		time.Sleep(10 * time.Second)
	}
}

func holdEventually(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), holdWait)
	defer cancel()
	var last error
	for {
		ok, err := cond(ctx)
		if err == nil && ok {
			return
		}
		last = err
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func holdRunning(ctx context.Context, c client.Client, ns, name string) (*corev1.Pod, bool, error) {
	p := &corev1.Pod{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, p); err != nil {
		return nil, false, client.IgnoreNotFound(err)
	}
	return p, p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil, nil
}

func holdZonalVolume(t *testing.T, ec *e2eCluster) {
	ctx := context.Background()
	const ns, pool, zone = "hold-zonal", "zonal", "us-east-1d"
	holdNamespace(t, ec.c, ns)
	// On-demand prices are the same in every zone: left to itself the
	// solver buys in the first one, not in the volume's.
	holdApply(t, ec.c, holdPool(holdPoolSpec{name: pool, types: []string{"c5.large"}}), fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-zonal-model}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /tmp/model}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [%s]}]`, zone), `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: model, namespace: hold-zonal}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  volumeName: pv-zonal-model
  resources: {requests: {storage: 1Gi}}`)
	pod := holdPod(ns, "reader", pool, "cpu", "1", "memory", "1Gi")
	pod.Spec.Volumes = []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "model"}}}}
	provCreate(t, ec.c, pod)

	var running *corev1.Pod
	holdEventually(t, "the pod with a zonal volume Running", func(ctx context.Context) (bool, error) {
		p, ok, err := holdRunning(ctx, ec.c, ns, "reader")
		running = p
		return ok, err
	})
	node := &corev1.Node{}
	if err := ec.c.Get(ctx, client.ObjectKey{Name: running.Spec.NodeName}, node); err != nil {
		t.Fatal(err)
	}
	if got := node.Labels[v1.LabelZone]; got != zone {
		t.Errorf("pod runs in zone %q, want its volume's %s", got, zone)
	}
	// The defect bought a machine in the wrong zone every pass: look for a
	// while after the pod runs.
	holdSteadyCounts(ctx, t, ec.c, pool, 1, "the pod's one machine")
}

// holdAttachLimits plans 40 small pods, each with its own EBS volume, in a
// pool of c5.xlarge: by CPU and pod slots one machine holds them all, but a
// c5.xlarge attaches 26 EBS volumes (EC2's 27 less the root volume), so two
// are bought, and the scheduler places at most 26 on each.
func holdAttachLimits(t *testing.T, ec *e2eCluster) {
	ctx := context.Background()
	const ns, pool, app, pods, limit = "hold-attach", "attach", "db", 40, 26
	holdNamespace(t, ec.c, ns)
	holdApply(t, ec.c, holdPool(holdPoolSpec{name: pool, types: []string{"c5.xlarge"}}))
	for i := 0; i < pods; i++ {
		name := fmt.Sprintf("data-%d", i)
		// Statically provisioned and pre-bound, so no CSI driver has to
		// run: the PersistentVolume controller binds the pair.
		holdApply(t, ec.c, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-attach-%[1]d}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual-ebs
  csi: {driver: ebs.csi.aws.com, volumeHandle: vol-attach-%[1]d}
  claimRef: {namespace: %[2]s, name: %[3]s}`, i, ns, name), fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: %s, namespace: %s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: manual-ebs
  volumeName: pv-attach-%d
  resources: {requests: {storage: 1Gi}}`, name, ns, i))
	}
	stop := holdCSINodes(ec.c, pool, "ebs.csi.aws.com", limit)
	defer stop()
	for i := 0; i < pods; i++ {
		p := holdPod(ns, fmt.Sprintf("db-%d", i), pool, "cpu", "50m", "memory", "64Mi")
		p.Labels["app"] = app
		p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: fmt.Sprintf("data-%d", i)}}}}
		provCreate(t, ec.c, p)
	}
	holdEventually(t, "40 volume pods Running", func(ctx context.Context) (bool, error) {
		_, running, err := disrPods(ctx, ec.c, ns, app)
		return running == pods, err
	})
	holdSteadyCounts(ctx, t, ec.c, pool, 2, "40 volumes, 26 per machine")
	list, running, err := disrPods(ctx, ec.c, ns, app)
	if err != nil {
		t.Fatal(err)
	}
	perNode := map[string]int{}
	for _, p := range list {
		perNode[p.Spec.NodeName]++
	}
	for node, n := range perNode {
		if n > limit {
			t.Errorf("node %s runs %d volume pods, more than the %d volumes a c5.xlarge attaches", node, n, limit)
		}
	}
	if running != pods {
		t.Errorf("%d of %d volume pods Running", running, pods)
	}
}

// holdCSINodes plays a CSI driver's node plugin on the pool's nodes: it
// gives each a CSINode reporting the driver's attach limit, which the
// kube-scheduler enforces and Stowage reads.
func holdCSINodes(c client.Client, pool, driver string, count int32) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		made := map[string]bool{}
		for ctx.Err() == nil {
			nodes := &corev1.NodeList{}
			if err := c.List(ctx, nodes, client.MatchingLabels{v1.LabelNodePool: pool}); err == nil {
				for _, n := range nodes.Items {
					if made[n.Name] {
						continue
					}
					cn := &storagev1.CSINode{
						ObjectMeta: metav1.ObjectMeta{Name: n.Name, OwnerReferences: []metav1.OwnerReference{
							{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}},
						Spec: storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{{Name: driver, NodeID: n.Name,
							Allocatable: &storagev1.VolumeNodeResources{Count: ptr.To(count)}}}},
					}
					if err := c.Create(ctx, cn); err == nil || apierrors.IsAlreadyExists(err) {
						made[n.Name] = true
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

func holdPoolDeletion(t *testing.T, ec *e2eCluster) {
	ctx := context.Background()
	const ns = "hold-delete"
	holdNamespace(t, ec.c, ns)
	// Both pools label their nodes tier=hold-delete; the pods select that,
	// so when the first pool goes they can move to the second, one at a time
	// as their PodDisruptionBudget allows. The heavier pool is bought first.
	holdApply(t, ec.c,
		holdPool(holdPoolSpec{name: "doomed", types: []string{"c5.large"}, labels: "{tier: hold-delete}", weight: 100}),
		holdPool(holdPoolSpec{name: "successor", types: []string{"c5.large"}, labels: "{tier: hold-delete}", weight: 1}))
	dep := disrDeployment(ns, "tenant", "", 2, "cpu", "1500m", "memory", "1Gi")
	dep.Spec.Template.Spec.NodeSelector = map[string]string{"tier": "hold-delete"}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "tenant"},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: ptr.To(intstr.FromInt32(1)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tenant"}}},
	}
	provCreate(t, ec.c, dep, pdb)
	holdEventually(t, "2 tenant pods Running on 2 machines of nodepool doomed", func(ctx context.Context) (bool, error) {
		_, running, err := disrPods(ctx, ec.c, ns, "tenant")
		if err != nil {
			return false, err
		}
		claims, machines, err := holdCounts(ctx, ec.c, "doomed")
		return running == 2 && len(claims) == 2 && machines == 2, err
	})

	// Watch that the PodDisruptionBudget holds while the pool goes.
	stop := holdWatchRunning(ec.c, ns, "tenant")
	pool := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}
	if err := ec.c.Delete(ctx, pool); err != nil {
		t.Fatal(err)
	}
	holdEventually(t, "nodepool doomed's NodeClaims, nodes and machines gone, the pods Running elsewhere", func(ctx context.Context) (bool, error) {
		list := &v1.NodeClaimList{}
		if err := ec.c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: "doomed"}); err != nil {
			return false, err
		}
		nodes := &corev1.NodeList{}
		if err := ec.c.List(ctx, nodes, client.MatchingLabels{v1.LabelNodePool: "doomed"}); err != nil {
			return false, err
		}
		machines, err := e2eMachines(ctx, ec.c, "doomed")
		if err != nil {
			return false, err
		}
		_, running, err := disrPods(ctx, ec.c, ns, "tenant")
		return len(list.Items) == 0 && len(nodes.Items) == 0 && machines == 0 && running == 2, err
	})
	if m := stop(); m < 1 {
		t.Errorf("as few as %d tenant pods ran while the pool was deleted; the PodDisruptionBudget asks for 1", m)
	}
	if _, machines, err := holdCounts(ctx, ec.c, "successor"); err != nil || machines != 2 {
		t.Errorf("nodepool successor has %d machines (%v), want the 2 the pods moved to", machines, err)
	}
}

// holdWatchRunning samples how many of app's pods run until stop is called,
// and returns the fewest seen.
func holdWatchRunning(c client.Client, ns, app string) (stop func() int) {
	ctx, cancel := context.WithCancel(context.Background())
	minSeen := 1 << 30
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if _, running, err := disrPods(ctx, c, ns, app); err == nil {
				mu.Lock()
				minSeen = min(minSeen, running)
				mu.Unlock()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	return func() int {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return minSeen
	}
}

func holdScaleUpStays(t *testing.T, ec *e2eCluster) {
	ctx := context.Background()
	const ns, pool, replicas = "hold-burst", "burst", 30
	holdNamespace(t, ec.c, ns)
	// The pool's disruption is the API's default: consolidateAfter 0s, 10%.
	holdApply(t, ec.c, holdPool(holdPoolSpec{name: pool, types: []string{"c5.xlarge"}}))
	// 3 CPU each: one pod per c5.xlarge, a 30-node plan.
	provCreate(t, ec.c, disrDeployment(ns, "burst", pool, replicas, "cpu", "3", "memory", "1Gi"))
	seen := map[string]bool{}
	holdEventually(t, "30 pods Running", func(ctx context.Context) (bool, error) {
		claims, err := disrClaims(ctx, ec.c, pool)
		for _, cl := range claims {
			seen[cl.Name] = true
		}
		_, running, err2 := disrPods(ctx, ec.c, ns, "burst")
		return running == replicas, joinErr(err, err2)
	})
	claims, machines, err := holdCounts(ctx, ec.c, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(claims) != replicas || machines != replicas || len(seen) != replicas {
		t.Fatalf("%d NodeClaims (%d ever), %d machines for a %d-node plan", len(claims), len(seen), machines, replicas)
	}
	before := map[string]bool{}
	for _, cl := range claims {
		before[cl.Name] = true
	}
	// Nodes bought for pods that have not bound yet looked empty to
	// disruption, which deleted them seconds after they turned Ready.
	time.Sleep(60 * time.Second)
	claims, machines, err = holdCounts(ctx, ec.c, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range claims {
		if !before[cl.Name] {
			t.Errorf("NodeClaim %s appeared after the pods ran", cl.Name)
		}
	}
	if len(claims) != replicas || machines != replicas {
		t.Errorf("after 60 s: %d NodeClaims, %d machines; want the %d bought", len(claims), machines, replicas)
	}
	if _, running, err := disrPods(ctx, ec.c, ns, "burst"); err != nil || running != replicas {
		t.Errorf("after 60 s: %d pods Running (%v), want %d", running, err, replicas)
	}
}

func holdStuckTerminating(t *testing.T, ec *e2eCluster) {
	ctx := context.Background()
	const ns, pool, hold = "hold-stuck", "sticky", "e2e.stowage.dev/hold"
	holdNamespace(t, ec.c, ns)
	holdApply(t, ec.c, holdPool(holdPoolSpec{name: pool, types: []string{"c5.large"}}))
	pod := holdPod(ns, "held", pool, "cpu", "1", "memory", "1Gi")
	pod.Finalizers = []string{hold}
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](2)
	provCreate(t, ec.c, pod)
	t.Cleanup(func() {
		p := &corev1.Pod{}
		if err := ec.c.Get(context.Background(), client.ObjectKeyFromObject(pod), p); err == nil {
			p.Finalizers = nil
			_ = ec.c.Update(context.Background(), p)
		}
	})
	var running *corev1.Pod
	holdEventually(t, "the held pod Running", func(ctx context.Context) (bool, error) {
		p, ok, err := holdRunning(ctx, ec.c, ns, "held")
		running = p
		return ok, err
	})
	if err := ec.c.Delete(ctx, running); err != nil {
		t.Fatal(err)
	}
	claims, err := disrClaims(ctx, ec.c, pool)
	if err != nil || len(claims) != 1 {
		t.Fatalf("nodeclaims of %s: %d (%v), want 1", pool, len(claims), err)
	}
	if err := ec.c.Delete(ctx, &claims[0]); err != nil {
		t.Fatal(err)
	}
	holdEventually(t, "the claim, node and machine gone though the pod is stuck terminating", func(ctx context.Context) (bool, error) {
		list := &v1.NodeClaimList{}
		if err := ec.c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
			return false, err
		}
		machines, err := e2eMachines(ctx, ec.c, pool)
		if err != nil {
			return false, err
		}
		err = ec.c.Get(ctx, client.ObjectKey{Name: running.Spec.NodeName}, &corev1.Node{})
		return len(list.Items) == 0 && machines == 0 && client.IgnoreNotFound(err) == nil && err != nil, client.IgnoreNotFound(err)
	})
	p := &corev1.Pod{}
	if err := ec.c.Get(ctx, client.ObjectKeyFromObject(pod), p); err == nil && p.DeletionTimestamp == nil {
		t.Error("the held pod is no longer terminating; the case did not test what it says")
	}
}

func holdMixedPool(t *testing.T, ec *e2eCluster) {
	ctx := context.Background()
	const ns, pool = "hold-mixed", "mixed"
	holdNamespace(t, ec.c, ns)
	// No taint keeps CPU pods off the GPU machines; consolidation is off so
	// every NodeClaim here is provisioning's.
	holdApply(t, ec.c, holdPool(holdPoolSpec{name: pool, types: []string{"c5.large", "c5.xlarge", "c5.2xlarge", "g4dn.xlarge"},
		disruption: "{consolidateAfter: Never}"}))
	var pods []client.Object
	for i := range 16 {
		pods = append(pods, holdPod(ns, fmt.Sprintf("cpu-%02d", i), pool, "cpu", "1", "memory", "1Gi"))
	}
	for i := range 8 {
		p := holdPod(ns, fmt.Sprintf("gpu-%02d", i), pool, "cpu", "1", "memory", "4Gi", "nvidia.com/gpu", "1")
		pods = append(pods, p)
	}
	provCreate(t, ec.c, pods...)
	seen := map[string]bool{}
	holdEventually(t, "24 pods Running", func(ctx context.Context) (bool, error) {
		claims, err := disrClaims(ctx, ec.c, pool)
		for _, cl := range claims {
			seen[cl.Name] = true
		}
		list := &corev1.PodList{}
		if err := ec.c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		running := 0
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning {
				running++
			}
		}
		return running == len(pods), err
	})
	// Every pod was planned once: a second Nominated event means the pod
	// lost the room planned for it and was planned (and bought for) again.
	for _, o := range pods {
		notes, err := provEventNotes(ctx, ec.c, ns, o.GetName(), "Nominated")
		if err != nil {
			t.Fatal(err)
		}
		distinct := map[string]bool{}
		for _, n := range notes {
			distinct[n] = true
		}
		if len(distinct) != 1 {
			t.Errorf("pod %s was planned %d times: %q", o.GetName(), len(distinct), notes)
		}
	}
	claims, machines, err := holdCounts(ctx, ec.c, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(claims) != len(seen) || machines != len(claims) {
		t.Errorf("%d NodeClaims now, %d ever, %d machines: the plan was not bought as planned", len(claims), len(seen), machines)
	}
	nodes := &corev1.NodeList{}
	if err := ec.c.List(ctx, nodes, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		t.Fatal(err)
	}
	list := &corev1.PodList{}
	if err := ec.c.List(ctx, list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	gpuPodOn := map[string]bool{}
	for _, p := range list.Items {
		if _, ok := p.Spec.Containers[0].Resources.Requests[v1.ResourceNvidiaGPU]; ok {
			gpuPodOn[p.Spec.NodeName] = true
		}
	}
	for _, n := range nodes.Items {
		if q, ok := n.Status.Allocatable[v1.ResourceNvidiaGPU]; ok && !q.IsZero() && !gpuPodOn[n.Name] {
			t.Errorf("GPU node %s runs no GPU pod", n.Name)
		}
	}
}

func holdRepair(t *testing.T, ec *e2eCluster) {
	ctx := context.Background()
	const ns, pool = "hold-repair", "fragile"
	holdNamespace(t, ec.c, ns)
	// repairAfter is the pool's setting (default 15m); the rest is default.
	holdApply(t, ec.c, holdPool(holdPoolSpec{name: pool, types: []string{"c5.large"}, disruption: "{repairAfter: 30s}"}))
	provCreate(t, ec.c, disrDeployment(ns, "app", pool, 1, "cpu", "1", "memory", "1Gi"))
	var first v1.NodeClaim
	holdEventually(t, "the app Running on one machine", func(ctx context.Context) (bool, error) {
		_, running, err := disrPods(ctx, ec.c, ns, "app")
		if err != nil {
			return false, err
		}
		claims, machines, err := holdCounts(ctx, ec.c, pool)
		if len(claims) == 1 {
			first = claims[0]
		}
		return running == 1 && len(claims) == 1 && machines == 1 && disrReady(&first), err
	})
	// The kubelet reports the node NotReady (say its container runtime
	// died). kwok, which plays the kubelet, is told to leave the node alone
	// first, or it would report it Ready again.
	node := &corev1.Node{}
	if err := ec.c.Get(ctx, client.ObjectKey{Name: first.Status.NodeName}, node); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(node.DeepCopy())
	delete(node.Annotations, fake.KwokAnnotation)
	if err := ec.c.Patch(ctx, node, patch); err != nil {
		t.Fatal(err)
	}
	// kwok may still send one heartbeat it had scheduled: report NotReady
	// every few seconds, as a kubelet would, keeping the first transition time.
	since := metav1.Now()
	reportCtx, stopReporting := context.WithCancel(ctx)
	defer stopReporting()
	go func() {
		for reportCtx.Err() == nil {
			n := &corev1.Node{}
			if err := ec.c.Get(reportCtx, client.ObjectKeyFromObject(node), n); err != nil {
				return
			}
			for i := range n.Status.Conditions {
				if c := &n.Status.Conditions[i]; c.Type == corev1.NodeReady && c.Status != corev1.ConditionFalse {
					c.Status, c.Reason, c.Message, c.LastTransitionTime = corev1.ConditionFalse, "KubeletNotReady", "container runtime is down", since
					_ = ec.c.Status().Update(reportCtx, n)
				}
			}
			time.Sleep(2 * time.Second)
		}
	}()
	holdEventually(t, "the silent node replaced and the app Running on the new one", func(ctx context.Context) (bool, error) {
		claims, machines, err := holdCounts(ctx, ec.c, pool)
		if err != nil || len(claims) != 1 || claims[0].Name == first.Name || machines != 1 {
			return false, err
		}
		pods, running, err := disrPods(ctx, ec.c, ns, "app")
		if err != nil || running != 1 {
			return false, err
		}
		for _, p := range pods {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				return p.Spec.NodeName == claims[0].Status.NodeName, nil
			}
		}
		return false, nil
	})
}

func joinErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestCloudDriftRolls changes the image the fake cloud's node class boots:
// the provider reports the running machines drifted (ImageDrift), and they
// are replaced, two at a time as the pool's budget allows, with their pods
// kept running. It has a cluster of its own because the image is the whole
// cloud's.
func TestCloudDriftRolls(t *testing.T) {
	ec := e2eStart(t, e2eOptions{clusterName: "drift-e2e"})
	ctx := context.Background()
	const ns, pool, replicas = "hold-drift", "rolling", 4
	holdNamespace(t, ec.c, ns)
	holdApply(t, ec.c, holdPool(holdPoolSpec{name: pool, types: []string{"c5.large"}, disruption: `{budgets: [{nodes: "2"}]}`}))
	provCreate(t, ec.c, disrDeployment(ns, "web", pool, replicas, "cpu", "1500m", "memory", "1Gi"))
	old := map[string]bool{}
	holdEventually(t, "4 pods Running on 4 machines", func(ctx context.Context) (bool, error) {
		_, running, err := disrPods(ctx, ec.c, ns, "web")
		if err != nil {
			return false, err
		}
		claims, machines, err := holdCounts(ctx, ec.c, pool)
		clear(old)
		for _, cl := range claims {
			old[cl.Name] = true
		}
		return running == replicas && len(claims) == replicas && machines == replicas, err
	})
	if err := ec.cloud.SetImage("fake-image-2"); err != nil {
		t.Fatal(err)
	}
	most := 0
	holdEventually(t, "every machine replaced by one on the new image", func(ctx context.Context) (bool, error) {
		list := &v1.NodeClaimList{}
		if err := ec.c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
			return false, err
		}
		rolling, fresh := 0, 0
		for _, cl := range list.Items {
			if old[cl.Name] {
				if cl.DeletionTimestamp != nil || cl.Annotations["stowage.dev/disruption-command"] != "" {
					rolling++
				}
				continue
			}
			if cl.DeletionTimestamp == nil && cl.Status.ImageID == "fake-image-2" && disrReady(&cl) {
				fresh++
			}
		}
		most = max(most, rolling)
		machines, err := e2eMachines(ctx, ec.c, pool)
		if err != nil {
			return false, err
		}
		_, running, err := disrPods(ctx, ec.c, ns, "web")
		return fresh == replicas && machines == replicas && running == replicas, err
	})
	if most > 2 {
		t.Errorf("%d old machines were disrupted at once; the budget allows 2", most)
	}
	list := &v1.NodeClaimList{}
	if err := ec.c.List(ctx, list, client.MatchingLabels{v1.LabelNodePool: pool}); err != nil {
		t.Fatal(err)
	}
	for _, cl := range list.Items {
		if old[cl.Name] {
			t.Errorf("drifted NodeClaim %s is still there", cl.Name)
		}
	}
}
