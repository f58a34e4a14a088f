//go:build unix

package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/providers/fake"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

const (
	namespace = "chaos"
	pool      = "chaos"
	// gcBound is the longest the garbage collector may take to remove a
	// machine no claim owns: its two-minute grace plus one pass a minute.
	gcBound = 3*time.Minute + 30*time.Second
)

// zones and types the pool may buy: small CPU machines, so the waves buy
// and release many of them.
var (
	zones = []string{"us-east-1a", "us-east-1b"}
	types = []string{"m5.large", "m5.xlarge", "c5.large", "c5.xlarge", "r5.large", "r5.xlarge"}
)

type run struct {
	t        *testing.T
	cfg      config
	cp       *controlplane.ControlPlane
	c        client.Client
	ctrl     *controller
	machines *machineWatch
	seed     uint64
	began    time.Time
	podSeq   int
	chaosEnd time.Time
	res      result

	mu sync.Mutex
	// lastWave is when the last wave's pods were created, and settled when
	// the cluster was first seen converged after it (zero until then).
	lastWave, settled time.Time
}

func newRun(t *testing.T, cfg config) *run {
	seed := uint64(time.Now().UnixNano())
	t.Logf("chaos %s, seed %d", cfg.name, seed)
	binary := buildStowage(t)
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	r := &run{t: t, cfg: cfg, cp: cp, c: cp.Client, seed: seed, began: time.Now()}
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := r.c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: pool}}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
		{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}},
		{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpIn, Values: types},
		{Key: v1.LabelZone, Operator: corev1.NodeSelectorOpIn, Values: zones},
	}
	np.Spec.Template.Spec.ExpireAfter = v1.Never
	if err := r.c.Create(ctx, np); err != nil {
		t.Fatal(err)
	}
	// The fake cloud's namespace, so the watch below can start first.
	if err := r.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fake.Namespace}}); err != nil {
		t.Fatal(err)
	}
	r.machines = watchMachines(t, cp)
	r.ctrl = newController(t, binary, cp.KubeconfigPath, r.c, seed)
	return r
}

// chaosPhase runs kills, cloud faults and waves of pods for cfg.chaos.
func (r *run) chaosPhase() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.chaos)
	defer cancel()
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){r.ctrl.killLoop, r.waves, r.interrupts, r.priceChanges, r.observe} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
	r.chaosEnd = time.Now()
	r.res.kills, r.res.selfExits, r.res.leaderChanges = r.ctrl.kills, r.ctrl.selfExits, len(r.ctrl.leaders)
	r.t.Logf("chaos over after %d kills; the controller now runs undisturbed", r.res.kills)
	r.ctrl.start()
}

// rand is a random source for one of the loops, which run concurrently.
func (r *run) rand(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(r.seed, stream)) //nolint:gosec // test randomness
}

// waves adds waveSize pods every waveEvery and deletes about a third of the others.
func (r *run) waves(ctx context.Context) {
	rng := r.rand(2)
	for ctx.Err() == nil {
		pods := &corev1.PodList{}
		if err := r.c.List(ctx, pods, client.InNamespace(namespace)); err == nil {
			for i := range pods.Items {
				if rng.IntN(3) == 0 {
					if err := r.c.Delete(ctx, &pods.Items[i]); client.IgnoreNotFound(err) == nil {
						r.res.podsDeleted++
					}
				}
			}
		}
		for range r.cfg.waveSize {
			if err := r.c.Create(ctx, r.pod(rng)); err != nil {
				if ctx.Err() == nil {
					r.t.Errorf("creating a pod: %v", err)
				}
				continue
			}
			r.res.podsCreated++
		}
		r.mu.Lock()
		r.lastWave, r.settled = time.Now(), time.Time{}
		r.mu.Unlock()
		sleep(ctx, r.cfg.waveEvery)
	}
}

// observe notes when the cluster converges after each wave, kills going on.
func (r *run) observe(ctx context.Context) {
	for sleep(ctx, time.Second); ctx.Err() == nil; sleep(ctx, time.Second) {
		s, err := r.snapshot(ctx)
		if err != nil {
			continue
		}
		r.mu.Lock()
		switch {
		case !s.converged():
			r.settled = time.Time{}
		case r.settled.IsZero() && !r.lastWave.IsZero():
			r.settled = time.Now()
		}
		r.mu.Unlock()
	}
}

// pod is a pod of 0.25-3 CPUs and 0.5-6 GiB, so a machine holds a few.
func (r *run) pod(rng *rand.Rand) *corev1.Pod {
	r.podSeq++
	cpu := resource.NewMilliQuantity(int64(250*(1+rng.IntN(12))), resource.DecimalSI)
	mem := resource.NewQuantity(int64(512<<20)*int64(1+rng.IntN(12)), resource.BinarySI)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "p-" + strconv.Itoa(r.podSeq), Labels: map[string]string{"app": "chaos"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](0),
			Containers: []corev1.Container{{Name: "main", Image: "example/app:1",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: *cpu, corev1.ResourceMemory: *mem}}}},
		},
	}
}

// interrupts announces a spot reclaim of a random spot machine every interruptEvery.
func (r *run) interrupts(ctx context.Context) {
	rng := r.rand(3)
	for sleep(ctx, r.cfg.interruptEvery); ctx.Err() == nil; sleep(ctx, r.cfg.interruptEvery) {
		spot := r.machines.live(func(m machine) bool {
			return m.CapacityType == v1.CapacityTypeSpot && !m.interrupted
		})
		if len(spot) == 0 {
			continue
		}
		m := spot[rng.IntN(len(spot))]
		if err := fake.RequestInterruption(ctx, r.c, m.ID, cloudprovider.InterruptionSpotReclaim, time.Now().Add(spotDeadline)); err != nil {
			continue // the machine went meanwhile
		}
		r.res.interruptions++
	}
}

// priceChanges moves the spot prices of the pool's types by -50%..+50% every priceEvery.
func (r *run) priceChanges(ctx context.Context) {
	rng := r.rand(4)
	base := map[string]float64{"m5.large": 0.04, "m5.xlarge": 0.08, "c5.large": 0.035, "c5.xlarge": 0.07, "r5.large": 0.05, "r5.xlarge": 0.1}
	for sleep(ctx, r.cfg.priceEvery); ctx.Err() == nil; sleep(ctx, r.cfg.priceEvery) {
		var prices []fake.PriceOverride
		for _, it := range types {
			for _, z := range zones {
				p := base[it] * (0.5 + rng.Float64())
				prices = append(prices, fake.PriceOverride{
					ID:           cloudprovider.OfferingID{InstanceType: it, Zone: z, CapacityType: v1.CapacityTypeSpot},
					PricePerHour: float64(int(p*10000)) / 10000,
				})
			}
		}
		if err := fake.SetPrices(ctx, r.c, prices); err == nil {
			r.res.prices++
		}
	}
}

// convergePhase waits until every pod runs and machines, claims and Nodes
// agree, and stay so for a few seconds. Convergence is timed from the last
// wave, while the killing still went on, and from the end of the chaos.
func (r *run) convergePhase() {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.converge)
	defer cancel()
	var last string
	steadySince := time.Time{}
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		if r.ctrl.exited() {
			r.ctrl.selfExits++
			r.ctrl.start()
		}
		s, err := r.snapshot(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = s.String()
		if !s.converged() {
			steadySince = time.Time{}
			return false, nil
		}
		if steadySince.IsZero() {
			steadySince = time.Now()
			r.res.converged = max(0, steadySince.Sub(r.chaosEnd))
			r.mu.Lock()
			settled := r.settled
			if settled.IsZero() {
				settled = steadySince
			}
			r.res.sinceLastWave = settled.Sub(r.lastWave)
			r.mu.Unlock()
			r.res.machines, r.res.claims, r.res.nodes, r.res.podsEnd = s.machines, s.claims, s.nodes, s.pods
		}
		return time.Since(steadySince) >= 5*time.Second, nil
	})
	if err != nil {
		r.t.Fatalf("no convergence %s after the chaos: %s", r.cfg.converge, last)
	}
	r.t.Logf("converged %s after the last wave, %s after the chaos: %s", r.res.sinceLastWave.Round(time.Second),
		r.res.converged.Round(time.Second), last)
}

// state counts what the convergence check compares.
type state struct {
	pods, running, machines, claims, deleting, nodes int
}

func (s state) converged() bool {
	return s.pods > 0 && s.running == s.pods && s.machines == s.claims && s.claims == s.nodes && s.deleting == 0
}

func (s state) String() string {
	return fmt.Sprintf("%d/%d pods running, %d machines, %d NodeClaims (%d deleting), %d Nodes",
		s.running, s.pods, s.machines, s.claims, s.deleting, s.nodes)
}

func (r *run) snapshot(ctx context.Context) (state, error) {
	var s state
	pods := &corev1.PodList{}
	if err := r.c.List(ctx, pods, client.InNamespace(namespace)); err != nil {
		return s, err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		s.pods++
		if p.Status.Phase == corev1.PodRunning {
			s.running++
		}
	}
	claims := &v1.NodeClaimList{}
	if err := r.c.List(ctx, claims); err != nil {
		return s, err
	}
	s.claims = len(claims.Items)
	for _, c := range claims.Items {
		if c.DeletionTimestamp != nil {
			s.deleting++
		}
	}
	nodes := &corev1.NodeList{}
	if err := r.c.List(ctx, nodes, client.HasLabels{v1.LabelNodePool}); err != nil {
		return s, err
	}
	s.nodes = len(nodes.Items)
	records := &corev1.ConfigMapList{}
	if err := r.c.List(ctx, records, client.InNamespace(fake.Namespace), client.MatchingLabels{fake.LabelCluster: "chaos"}); err != nil {
		return s, err
	}
	s.machines = len(records.Items)
	return s, nil
}

// cleanupPhase deletes the pods and every NodeClaim, then waits for the
// machines and Nodes to go; what outlives the garbage collector is a leak.
func (r *run) cleanupPhase() {
	ctx := context.Background()
	r.res.reclaimed = r.ctrl.count("fake cloud reclaimed an interrupted machine")
	if err := r.c.DeleteAllOf(ctx, &corev1.Pod{}, client.InNamespace(namespace)); err != nil {
		r.t.Fatal(err)
	}
	if err := r.c.DeleteAllOf(ctx, &v1.NodeClaim{}); err != nil {
		r.t.Fatal(err)
	}
	var s state
	waitFor := func(what string, d time.Duration, done func(state) bool) bool {
		ctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		return wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
			var err error
			if s, err = r.snapshot(ctx); err != nil {
				return false, nil
			}
			return done(s), nil
		}) == nil
	}
	if !waitFor("claims to go", 3*time.Minute, func(s state) bool { return s.claims == 0 }) {
		r.t.Fatalf("NodeClaims not gone 3 minutes after deleting them: %s", s)
	}
	orphans := s.machines
	if orphans > 0 {
		r.t.Logf("%d machines without a claim; waiting for the garbage collector", orphans)
		waitFor("the garbage collector", gcBound, func(s state) bool { return s.machines == 0 && s.nodes == 0 })
	} else {
		waitFor("Nodes to go", 30*time.Second, func(s state) bool { return s.nodes == 0 })
	}
	r.res.orphansCollected = orphans - s.machines
	r.res.leaks = s.machines + s.nodes
	r.res.injectedCapacity = r.ctrl.count("fake cloud injected a capacity error")
	r.res.injectedLost = r.ctrl.count("fake cloud injected a lost launch response")
	r.res.machinesBought = r.machines.bought()
	r.res.doubleBuys = len(r.machines.doubleBought())
	r.res.wall = time.Since(r.began)
	r.ctrl.stop()
}

// machine is one instance record as the fake cloud writes it.
type machine struct {
	ID           string `json:"id"`
	NodeClaim    string `json:"nodeClaim"`
	NodeClaimUID string `json:"nodeClaimUID"`
	CapacityType string `json:"capacityType"`
	interrupted  bool
}

// machineWatch sees every instance record the fake cloud ever writes.
type machineWatch struct {
	mu sync.Mutex
	// byClaim maps a claim UID to the UIDs of the records bought for it.
	byClaim map[string]map[string]bool
	running map[string]machine
}

func watchMachines(t *testing.T, cp *controlplane.ControlPlane) *machineWatch {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	w := &machineWatch{byClaim: map[string]map[string]bool{}, running: map[string]machine{}}
	ctx, cancel := context.WithCancel(context.Background())
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(fake.Namespace))
	inf := factory.Core().V1().ConfigMaps().Informer()
	observe := func(obj any) {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || cm.Labels[fake.LabelCluster] != "chaos" {
			return
		}
		var m machine
		if err := json.Unmarshal([]byte(cm.Data["instance.json"]), &m); err != nil {
			t.Errorf("instance record %s: %v", cm.Name, err)
			return
		}
		m.interrupted = cm.Annotations[fake.AnnotationInterruption] != ""
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.byClaim[m.NodeClaimUID] == nil {
			w.byClaim[m.NodeClaimUID] = map[string]bool{}
		}
		w.byClaim[m.NodeClaimUID][string(cm.UID)] = true
		w.running[cm.Name] = m
	}
	gone := func(obj any) {
		if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			w.mu.Lock()
			delete(w.running, cm.Name)
			w.mu.Unlock()
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: observe, UpdateFunc: func(_, o any) { observe(o) }, DeleteFunc: gone,
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	if !toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("instance record watch never synced")
	}
	return w
}

func (w *machineWatch) live(keep func(machine) bool) []machine {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []machine
	for _, m := range w.running {
		if keep(m) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (w *machineWatch) bought() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, records := range w.byClaim {
		n += len(records)
	}
	return n
}

// doubleBought lists the claim UIDs more than one machine was bought for.
func (w *machineWatch) doubleBought() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for claim, records := range w.byClaim {
		if len(records) > 1 {
			out = append(out, claim)
		}
	}
	slices.Sort(out)
	return out
}
