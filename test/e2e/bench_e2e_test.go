//go:build unix

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// Environment of the benchmark.
const (
	// benchEnvGate runs TestBenchE2E; without it the test skips, so `make
	// test` stays fast. `make bench-e2e` sets it.
	benchEnvGate = "STOWAGE_BENCH_E2E"
	// benchEnvOut, when set, names a file the result table is also written to.
	benchEnvOut = "STOWAGE_BENCH_E2E_OUT"
	// benchEnvLog, when set, is where the controller's log is written (and
	// kept); by default it goes to the test's temporary directory.
	benchEnvLog = "STOWAGE_BENCH_E2E_LOG"
	// benchEnvPools=split runs CPU and GPU pods on two NodePools, the GPU one
	// tainted, instead of one pool for everything.
	benchEnvPools = "STOWAGE_BENCH_E2E_POOLS"
	// benchEnvArgs adds flags to `stowage controller`, space-separated, e.g.
	// "--batch-idle-duration=500ms", to compare settings.
	benchEnvArgs = "STOWAGE_BENCH_E2E_ARGS"
)

// The workload: what an AI cluster's burst looks like, mostly CPU services
// with a share of single-GPU inference pods.
const (
	benchNamespace = "bench"
	benchPool      = "bench"
	benchGPUPool   = "bench-gpu"
	// benchGPUTaint keeps pods that do not ask for it off GPU nodes, the
	// usual setup of a GPU cluster, in the split-pools variant.
	benchGPUTaint = "nvidia.com/gpu"
	benchCPUPods  = 800
	benchGPUPods  = 200
	// benchLaunchLatency is the fake cloud's launch-to-Node time: small, so
	// the run measures Stowage and the control plane rather than a sleep.
	benchLaunchLatency = time.Second
	// benchTimeout bounds the wait for every pod to run. It is a deadline for
	// the run to finish at all, not a performance assertion.
	benchTimeout = 10 * time.Minute
	// benchCreateWorkers create pods in parallel, so they arrive "at once".
	benchCreateWorkers = 16
)

// Controller metrics read from /metrics (pkg/controllers/provisioning/metrics.go).
const (
	benchMetricDecision = "stowage_scheduling_decision_duration_seconds"
	benchMetricSolver   = "stowage_solver_duration_seconds"
)

// TestBenchE2E scales a local control plane out by 1,000 pending pods with
// Stowage running as its own process, and reports end-to-end time, the
// controller's decision latency and its memory. It fails only when pods
// never run or the controller dies; the numbers are reported, not asserted.
func TestBenchE2E(t *testing.T) {
	if os.Getenv(benchEnvGate) != "1" {
		t.Skipf("set %s=1 (or run `make bench-e2e`) to scale out by %d pods on a local control plane",
			benchEnvGate, benchCPUPods+benchGPUPods)
	}
	// Both layouts by default: the untainted mixed pool is where the
	// kube-scheduler can put CPU pods on GPU machines, the tainted split is
	// the usual GPU cluster.
	variants := []string{"one", "split"}
	if v := os.Getenv(benchEnvPools); v != "" {
		variants = []string{v}
	}
	binary := benchBuildStowage(t)
	var tables []string
	for _, variant := range variants {
		t.Run("pools="+variant, func(t *testing.T) {
			tables = append(tables, benchScaleOut(t, binary, variant))
		})
	}
	if out := os.Getenv(benchEnvOut); out != "" {
		if err := os.WriteFile(out, []byte(strings.Join(tables, "\n")), 0o644); err != nil {
			t.Errorf("writing %s=%s: %v", benchEnvOut, out, err)
		}
	}
}

// benchScaleOut runs one scale-out of 1,000 pods on a fresh control plane
// with the pools of variant, and returns its table.
func benchScaleOut(t *testing.T, binary, variant string) string {
	pools, err := benchNodePools(variant)
	if err != nil {
		t.Fatal(err)
	}
	e2eSetLogger(t)
	cp := controlplane.StartT(t, controlplane.Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true})
	ctrl := benchStartController(t, binary, cp.KubeconfigPath)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)

	if err := cp.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}); err != nil {
		t.Fatalf("creating namespace %s: %v", benchNamespace, err)
	}
	for _, pool := range pools {
		if err := cp.Client.Create(ctx, pool); err != nil {
			t.Fatalf("creating NodePool %s: %v", pool.Name, err)
		}
	}
	watcher := benchWatchPods(ctx, t, cp)
	sampler := benchSampleMemory(ctx, ctrl.pid())

	pods := benchPods()
	t.Logf("creating %d pods (%d CPU, %d GPU) with %d workers, NodePools %s",
		len(pods), benchCPUPods, benchGPUPods, benchCreateWorkers, benchPoolNames(pools))
	began := time.Now()
	if err := benchCreateAll(ctx, cp.Client, pods); err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d pods in %s", len(pods), time.Since(began).Round(time.Millisecond))

	benchWaitAllRunning(t, cp.Client, ctrl, watcher, len(pods))
	if exited, err := ctrl.exited(); exited {
		t.Fatalf("stowage controller exited once pods ran: %v", err)
	}

	final, err := benchReadMem(ctrl.pid())
	if err != nil {
		t.Fatalf("reading the controller's memory: %v", err)
	}
	samples := sampler.stop()
	res := benchResult{
		Pods: len(pods), CPUPods: benchCPUPods, GPUPods: benchGPUPods,
		PeakRSS: final.HWM, FinalRSS: final.RSS,
		RSSP95: benchPercentile(samples, 0.95), RSSSamples: len(samples),
	}
	running := watcher.runningAfter(began)
	res.AllRunning = benchPercentile(running, 1)
	res.PodRunningP50, res.PodRunningP99 = benchPercentile(running, 0.5), benchPercentile(running, 0.99)
	if err := benchReadCluster(ctx, cp.Client, &res); err != nil {
		t.Fatal(err)
	}
	if res.Decision, err = ctrl.histogram(ctx, benchMetricDecision); err != nil {
		t.Fatal(err)
	}
	if res.Solver, err = ctrl.histogram(ctx, benchMetricSolver); err != nil {
		t.Fatal(err)
	}
	if res.Throttling, err = ctrl.throttling(); err != nil {
		t.Fatal(err)
	}

	table := fmt.Sprintf("scale-out of %d pending pods, NodePools %s (%s):\n%s", len(pods), benchPoolNames(pools), variant, res.Render())
	t.Logf("Stowage %s", table)
	return table
}

// benchBuildStowage builds cmd/stowage into the test's temporary directory,
// so the controller runs as its own process and its memory is its own.
func benchBuildStowage(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("building stowage: the go command is not on PATH: %v", err)
	}
	out := filepath.Join(t.TempDir(), "stowage")
	began := time.Now()
	// Built as the Dockerfile builds the image, so the memory measured is
	// that of the binary users run (static, without debug information).
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "github.com/stowage-k8s/stowage/cmd/stowage")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/stowage: %v\n%s", err, b)
	}
	t.Logf("built %s in %s", out, time.Since(began).Round(100*time.Millisecond))
	return out
}

// benchController is `stowage controller` running as a child process in its
// own process group.
type benchController struct {
	cmd        *exec.Cmd
	logPath    string
	metricsURL string
	done       chan struct{}
	err        error // exit status, valid once done is closed
}

// benchStartController starts the controller against kubeconfig with the
// fake cloud and waits until it is ready (its cluster state has synced).
// t.Cleanup stops it on every exit path; the kernel kills it should the test
// binary die first.
func benchStartController(t *testing.T, binary, kubeconfig string) *benchController {
	t.Helper()
	metricsAddr, healthAddr := benchFreeAddr(t), benchFreeAddr(t)
	logPath := os.Getenv(benchEnvLog)
	if logPath == "" {
		logPath = filepath.Join(t.TempDir(), "stowage-controller.log")
	}
	c := &benchController{
		logPath:    logPath,
		metricsURL: "http://" + metricsAddr + "/metrics",
		done:       make(chan struct{}),
	}
	logFile, err := os.Create(c.logPath)
	if err != nil {
		t.Fatalf("creating controller log %s: %v", c.logPath, err)
	}
	t.Cleanup(func() { _ = logFile.Close() })
	// The kubeconfig goes in $KUBECONFIG rather than --kubeconfig: the
	// controller then loads it the way it loads its in-cluster config in a
	// real install (the chart passes no --kubeconfig), API client rate limits
	// included.
	args := []string{"controller",
		"--cloud-provider=fake",
		"--cluster-name=bench-e2e",
		"--fake-launch-latency=" + benchLaunchLatency.String(),
		"--metrics-bind-address=" + metricsAddr,
		"--health-probe-bind-address=" + healthAddr,
		"--leader-elect=false",
		"--log-format=json",
		"--graceful-shutdown-timeout=5s",
	}
	// Later flags win, so extra arguments may override the ones above.
	args = append(args, strings.Fields(os.Getenv(benchEnvArgs))...)
	c.cmd = exec.Command(binary, args...)
	c.cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig) // the last value of a key wins
	c.cmd.Stdout, c.cmd.Stderr = logFile, logFile
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("starting %s controller: %v", binary, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		if err := c.stop(10 * time.Second); err != nil {
			t.Errorf("stopping the stowage controller: %v", err)
		}
		if t.Failed() {
			t.Logf("stowage controller log %s (last lines):\n%s", c.logPath, c.logTail(60))
		}
	})
	t.Logf("started KUBECONFIG=%s stowage %s (pid %d, metrics %s, log %s)",
		kubeconfig, strings.Join(args, " "), c.pid(), c.metricsURL, c.logPath)

	readyURL := "http://" + healthAddr + "/readyz"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if exited, err := c.exited(); exited {
			return false, fmt.Errorf("controller exited before it was ready: %v", err)
		}
		return benchGetOK(ctx, readyURL) == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for the stowage controller at %s: %v", readyURL, err)
	}
	return c
}

func (c *benchController) pid() int { return c.cmd.Process.Pid }

// exited reports whether the controller has ended, with its exit status.
func (c *benchController) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM to the process group, waits up to grace for a graceful
// exit, then SIGKILLs whatever is left of the group.
func (c *benchController) stop(grace time.Duration) error {
	pgid := c.pid()
	if exited, _ := c.exited(); !exited {
		if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signalling process group %d: %w", pgid, err)
		}
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-c.done:
		case <-timer.C:
		}
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing process group %d: %w", pgid, err)
	}
	<-c.done
	return nil
}

// logTail returns the last n lines of the controller's log.
func (c *benchController) logTail(n int) string {
	b, err := os.ReadFile(c.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", c.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// throttling reads the controller's client-side rate limiting from its log.
func (c *benchController) throttling() (benchThrottling, error) {
	f, err := os.Open(c.logPath)
	if err != nil {
		return benchThrottling{}, fmt.Errorf("opening controller log: %w", err)
	}
	defer func() { _ = f.Close() }()
	th, err := benchParseThrottling(f)
	if err != nil {
		return benchThrottling{}, fmt.Errorf("%s: %w", c.logPath, err)
	}
	return th, nil
}

// histogram scrapes the controller's /metrics for one histogram.
func (c *benchController) histogram(ctx context.Context, name string) (benchHistogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.metricsURL, nil)
	if err != nil {
		return benchHistogram{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return benchHistogram{}, fmt.Errorf("scraping %s: %w", c.metricsURL, err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return benchHistogram{}, fmt.Errorf("scraping %s: status %s", c.metricsURL, resp.Status)
	}
	h, err := benchParseHistogram(resp.Body, name)
	if err != nil {
		return benchHistogram{}, fmt.Errorf("scraping %s: %w", c.metricsURL, err)
	}
	return h, nil
}

// benchFreeAddr returns a loopback address with a port free right now.
func benchFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatalf("releasing %s: %v", addr, err)
	}
	return addr
}

func benchGetOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %s", url, resp.Status)
	}
	return nil
}

// benchNodePools returns the pools of a variant. "" or "one": one pool that
// may buy any instance type the fake cloud sells, spot or on-demand, so the
// solver's choice of the cheapest mix is what is measured. "split": a pool
// of machines without GPUs and a tainted one of machines with GPUs.
func benchNodePools(variant string) ([]*v1.NodePool, error) {
	pool := func(name string, taints []corev1.Taint, reqs ...v1.NodeSelectorRequirementWithMinValues) *v1.NodePool {
		reqs = append(reqs, v1.NodeSelectorRequirementWithMinValues{
			Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn,
			Values: []string{v1.CapacityTypeSpot, v1.CapacityTypeOnDemand},
		})
		return &v1.NodePool{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
				Requirements: reqs, Taints: taints, ExpireAfter: v1.Never,
			}}},
		}
	}
	switch variant {
	case "", "one":
		return []*v1.NodePool{pool(benchPool, nil)}, nil
	case "split":
		return []*v1.NodePool{
			pool(benchPool, nil, v1.NodeSelectorRequirementWithMinValues{Key: v1.LabelGPUCount, Operator: corev1.NodeSelectorOpDoesNotExist}),
			pool(benchGPUPool, []corev1.Taint{{Key: benchGPUTaint, Value: "true", Effect: corev1.TaintEffectNoSchedule}},
				v1.NodeSelectorRequirementWithMinValues{Key: v1.LabelGPUCount, Operator: corev1.NodeSelectorOpExists}),
		}, nil
	default:
		return nil, fmt.Errorf("%s=%q: want one or split", benchEnvPools, variant)
	}
}

func benchPoolNames(pools []*v1.NodePool) string {
	names := make([]string, len(pools))
	for i, p := range pools {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}

// benchPods are benchCPUPods pods of 1 CPU and 2 GiB and benchGPUPods pods
// of 1 nvidia.com/gpu, 1 CPU and 4 GiB that tolerate the GPU taint.
func benchPods() []*corev1.Pod {
	pod := func(name, app string, req corev1.ResourceList) *corev1.Pod {
		limits := corev1.ResourceList{}
		if gpu, ok := req[v1.ResourceNvidiaGPU]; ok {
			limits[v1.ResourceNvidiaGPU] = gpu
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: benchNamespace, Name: name, Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: new(int64),
				Containers: []corev1.Container{{
					Name: "main", Image: "example/app:1",
					Resources: corev1.ResourceRequirements{Requests: req, Limits: limits},
				}},
			},
		}
		if len(limits) > 0 {
			// What the ExtendedResourceToleration admission plugin adds where enabled.
			p.Spec.Tolerations = []corev1.Toleration{{Key: benchGPUTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
		}
		return p
	}
	pods := make([]*corev1.Pod, 0, benchCPUPods+benchGPUPods)
	for i := range benchCPUPods {
		pods = append(pods, pod(fmt.Sprintf("cpu-%04d", i), "bench-cpu", corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi"),
		}))
	}
	for i := range benchGPUPods {
		pods = append(pods, pod(fmt.Sprintf("gpu-%04d", i), "bench-gpu", corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("4Gi"),
			v1.ResourceNvidiaGPU: resource.MustParse("1"),
		}))
	}
	return pods
}

// benchCreateAll creates pods with benchCreateWorkers in parallel and
// returns the first error.
func benchCreateAll(ctx context.Context, c client.Client, pods []*corev1.Pod) error {
	work := make(chan *corev1.Pod)
	errs := make(chan error, len(pods))
	var wg sync.WaitGroup
	for range benchCreateWorkers {
		wg.Go(func() {
			for p := range work {
				if err := c.Create(ctx, p); err != nil {
					errs <- fmt.Errorf("creating pod %s/%s: %w", p.Namespace, p.Name, err)
				}
			}
		})
	}
	for _, p := range pods {
		work <- p
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs // nil once closed and empty
}

// benchPodWatcher records when each pod of the namespace was first seen
// Running, from a watch rather than polling, so the times are not rounded
// to a poll interval.
type benchPodWatcher struct {
	mu      sync.Mutex
	running map[string]time.Time
	changed chan struct{} // receives (without blocking) after each new Running pod
}

func benchWatchPods(ctx context.Context, t *testing.T, cp *controlplane.ControlPlane) *benchPodWatcher {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatalf("creating clientset: %v", err)
	}
	w := &benchPodWatcher{running: map[string]time.Time{}, changed: make(chan struct{}, 1)}
	// Shutdown waits for the informers to stop, so they get their own
	// context, cancelled first: the caller's is cancelled by a later cleanup.
	ctx, cancel := context.WithCancel(ctx)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(benchNamespace))
	informer := factory.Core().V1().Pods().Informer()
	observe := func(obj any) {
		pod, ok := obj.(*corev1.Pod)
		if !ok || pod.Status.Phase != corev1.PodRunning {
			return
		}
		now := time.Now()
		w.mu.Lock()
		_, seen := w.running[pod.Name]
		if !seen {
			w.running[pod.Name] = now
		}
		w.mu.Unlock()
		if !seen {
			select {
			case w.changed <- struct{}{}:
			default:
			}
		}
	}
	if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, obj any) { observe(obj) },
	}); err != nil {
		t.Fatalf("watching pods: %v", err)
	}
	factory.Start(ctx.Done())
	t.Cleanup(func() {
		cancel()
		factory.Shutdown()
	})
	if !toolscache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatal("pod watch never synced")
	}
	return w
}

func (w *benchPodWatcher) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running)
}

// runningAfter returns how long after start each pod was first seen Running.
func (w *benchPodWatcher) runningAfter(start time.Time) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]time.Duration, 0, len(w.running))
	for _, at := range w.running {
		out = append(out, at.Sub(start))
	}
	return out
}

// benchWaitAllRunning returns once want pods ran. It fails the test when the
// controller exits or benchTimeout passes, and logs progress meanwhile.
func benchWaitAllRunning(t *testing.T, c client.Client, ctrl *benchController, w *benchPodWatcher, want int) {
	t.Helper()
	deadline := time.NewTimer(benchTimeout)
	defer deadline.Stop()
	progress := time.NewTicker(15 * time.Second)
	defer progress.Stop()
	for {
		if n := w.count(); n >= want {
			return
		}
		select {
		case <-w.changed:
		case <-ctrl.done:
			t.Fatalf("stowage controller exited with %d of %d pods Running: %v", w.count(), want, ctrl.err)
		case <-progress.C:
			t.Logf("%d/%d pods Running, %s", w.count(), want, benchProgress(c, ctrl))
		case <-deadline.C:
			t.Fatalf("only %d of %d pods Running after %s; %s", w.count(), want, benchTimeout, benchProgress(c, ctrl))
		}
	}
}

// benchProgress summarises NodeClaims, Nodes and the controller's memory for
// a progress line.
func benchProgress(c client.Client, ctrl *benchController) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var parts []string
	claims := &v1.NodeClaimList{}
	if err := c.List(ctx, claims, client.HasLabels{v1.LabelNodePool}); err != nil {
		parts = append(parts, "NodeClaims: "+err.Error())
	} else {
		parts = append(parts, strconv.Itoa(len(claims.Items))+" NodeClaims")
	}
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes, client.HasLabels{v1.LabelNodePool}); err != nil {
		parts = append(parts, "Nodes: "+err.Error())
	} else {
		parts = append(parts, strconv.Itoa(len(nodes.Items))+" Nodes")
	}
	if m, err := benchReadMem(ctrl.pid()); err == nil {
		parts = append(parts, "controller RSS "+benchMB(m.RSS))
	}
	return strings.Join(parts, ", ")
}

// benchReadCluster fills in what Stowage bought.
func benchReadCluster(ctx context.Context, c client.Client, res *benchResult) error {
	claims := &v1.NodeClaimList{}
	// The cluster is the benchmark's own: every NodeClaim and Stowage Node is its.
	if err := c.List(ctx, claims, client.HasLabels{v1.LabelNodePool}); err != nil {
		return fmt.Errorf("listing NodeClaims: %w", err)
	}
	res.NodeClaims = len(claims.Items)
	res.InstanceTypes = map[string]int{}
	for _, nc := range claims.Items {
		res.InstanceTypes[nc.Status.InstanceType]++
		if nc.Status.PricePerHour == "" {
			continue
		}
		p, err := strconv.ParseFloat(nc.Status.PricePerHour, 64)
		if err != nil {
			return fmt.Errorf("NodeClaim %s: status.pricePerHour %q: %w", nc.Name, nc.Status.PricePerHour, err)
		}
		res.CostPerHour += p
	}
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes, client.HasLabels{v1.LabelNodePool}); err != nil {
		return fmt.Errorf("listing Nodes: %w", err)
	}
	res.Nodes = len(nodes.Items)
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(benchNamespace)); err != nil {
		return fmt.Errorf("listing pods in %s: %w", benchNamespace, err)
	}
	res.GPU = benchGPUPlacement(nodes.Items, pods.Items)
	return nil
}

// benchReadMem reads a process's current and peak resident memory.
func benchReadMem(pid int) (benchProcMem, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/status"
	f, err := os.Open(path)
	if err != nil {
		return benchProcMem{}, fmt.Errorf("opening %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	m, err := benchParseProcStatus(f)
	if err != nil {
		return benchProcMem{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// benchMemSampler samples a process's RSS every second, for a p95 comparable
// to Karpenter's P95 memory threshold.
type benchMemSampler struct {
	cancel  context.CancelFunc
	done    chan struct{}
	samples []uint64
}

func benchSampleMemory(ctx context.Context, pid int) *benchMemSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &benchMemSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			if m, err := benchReadMem(pid); err == nil {
				s.samples = append(s.samples, m.RSS)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// stop ends sampling and returns the samples.
func (s *benchMemSampler) stop() []uint64 {
	s.cancel()
	<-s.done
	return s.samples
}
