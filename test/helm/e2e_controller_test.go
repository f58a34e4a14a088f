//go:build unix

package helm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

const (
	// releaseNamespace is where TestInstallIntoControlPlane installs the chart.
	releaseNamespace = "stowage"
	// e2eWait bounds each wait for a condition; it is a deadline, never an
	// assertion about how fast something happened.
	e2eWait = 3 * time.Minute
	// controllerStopGrace lets the controller release its lease on SIGTERM.
	controllerStopGrace = 15 * time.Second
)

// testControllerWithChartRBAC runs the real stowage binary against the
// installed chart: its Deployment's environment, its ServiceAccount's RBAC
// (by impersonation, as no container runtime runs the image here), the fake
// cloud and kwok. A pending GPU pod must get a node and run; /metrics must
// serve what docs/metrics.md documents; deleting the NodeClaim must drain
// and remove the node.
func testControllerWithChartRBAC(t *testing.T, cp *controlplane.ControlPlane) {
	ctx := context.Background()
	c := cp.Client
	docs, runtimeMetrics := loadMetricsDoc(t)

	var d appsv1.Deployment
	if err := c.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: "stowage"}, &d); err != nil {
		t.Fatalf("reading the chart's Deployment: %v", err)
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		t.Fatal("the chart's Deployment names no serviceAccountName")
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("the chart's Deployment has %d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	container := d.Spec.Template.Spec.Containers[0]

	bin := buildStowage(t)
	kubeconfig := impersonatingKubeconfig(t, cp.KubeconfigPath, releaseNamespace, sa)
	metricsAddr, healthAddr := freeAddr(t), freeAddr(t)
	args := append(append([]string(nil), container.Args...),
		"--kubeconfig", kubeconfig,
		"--cloud-provider", "fake",
		"--fake-launch-latency", "0s",
		"--leader-elect",
		"--leader-election-namespace", releaseNamespace,
		"--metrics-bind-address", metricsAddr,
		"--health-probe-bind-address", healthAddr,
		// The default minute would make the test wait for the cost gauges.
		"--cost-interval", "1s",
	)
	ctrl := startController(t, bin, args, chartEnv(container))

	eventually(t, ctrl, "/readyz to return 200", func(ctx context.Context) (bool, error) {
		return httpOK(ctx, "http://"+healthAddr+"/readyz")
	})

	pool := &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: "helm-e2e-gpu"},
		Spec: v1.NodePoolSpec{Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{
			Requirements: []v1.NodeSelectorRequirementWithMinValues{
				{Key: v1.LabelGPUCount, Operator: corev1.NodeSelectorOpExists},
			},
			ExpireAfter: v1.Never,
		}}},
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "helm-e2e"}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "trainer"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "main", Image: "example/trainer:1",
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("8Gi"),
					v1.ResourceNvidiaGPU: resource.MustParse("1"),
				},
				Limits: corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("1")},
			},
		}}},
	}
	for _, obj := range []client.Object{pool, ns, pod} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
		}
	}

	var node corev1.Node
	eventually(t, ctrl, "the pending pod to run on a Stowage node", func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		if pod.Status.Phase != corev1.PodRunning || pod.Spec.NodeName == "" {
			return false, fmt.Errorf("pod is %s on node %q", pod.Status.Phase, pod.Spec.NodeName)
		}
		return true, c.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, &node)
	})
	if got := node.Labels[v1.LabelNodePool]; got != pool.Name {
		t.Fatalf("pod runs on node %s with %s=%q, want %q", node.Name, v1.LabelNodePool, got, pool.Name)
	}
	claimName := node.Labels[v1.LabelNodeClaim]
	var claim v1.NodeClaim
	if err := c.Get(ctx, client.ObjectKey{Name: claimName}, &claim); err != nil {
		t.Fatalf("reading NodeClaim %q of node %s: %v", claimName, node.Name, err)
	}

	// The chart serves metrics over HTTPS to callers allowed GET /metrics.
	if env := chartEnv(container); !slices.Contains(env, "STOWAGE_METRICS_SECURE=true") {
		t.Fatalf("the chart does not turn on secure metrics: %v", env)
	}
	metricsURL := "https://" + metricsAddr + "/metrics"
	prometheus := metricsToken(t, c, "monitoring", "prometheus", "stowage-metrics-reader")
	stranger := metricsToken(t, c, "monitoring", "stranger", "")
	for _, tc := range []struct {
		who, token string
		want       int
	}{{"no token", "", http.StatusUnauthorized}, {"a token without the metrics-reader role", stranger, http.StatusForbidden}} {
		eventually(t, ctrl, "/metrics to refuse "+tc.who, func(ctx context.Context) (bool, error) {
			code, err := metricsStatus(ctx, metricsURL, tc.token)
			if err != nil {
				return false, err
			}
			if code != tc.want {
				return false, fmt.Errorf("status %d, want %d", code, tc.want)
			}
			return true, nil
		})
	}
	var families map[string]*dto.MetricFamily
	eventually(t, ctrl, "/metrics to serve every metric due after provisioning", func(ctx context.Context) (bool, error) {
		var err error
		if families, err = scrape(ctx, metricsURL, prometheus); err != nil {
			return false, err
		}
		if missing := missingMetrics(docs, families, afterProvisioning); len(missing) > 0 {
			return false, fmt.Errorf("missing %v", missing)
		}
		// The cost collector may not have run since the claim launched.
		if _, ok := sample(families, "stowage_cost_per_hour", map[string]string{"nodepool": pool.Name}); !ok {
			return false, fmt.Errorf("no stowage_cost_per_hour series for nodepool %s yet", pool.Name)
		}
		return true, nil
	})
	for _, problem := range servedAsDocumented(docs, families) {
		t.Error(problem)
	}
	for _, name := range runtimeMetrics {
		if !servedName(families, name) {
			t.Errorf("docs/metrics.md says controller-runtime's %s is served; it is not", name)
		}
	}
	// The StowageNoLeader alert in docs/metrics.md relies on this series.
	if v, ok := sample(families, "leader_election_master_status", map[string]string{"name": "stowage-leader-election"}); v != 1 {
		t.Errorf("leader_election_master_status{name=\"stowage-leader-election\"} = %v (served: %v), want 1 on the only replica", v, ok)
	}
	byPool := map[string]string{"nodepool": pool.Name}
	for _, name := range []string{
		"stowage_nodeclaims_created_total", "stowage_nodeclaims_launched_total",
		"stowage_nodeclaims_registered_total", "stowage_nodeclaims_initialized_total",
		"stowage_nodeclaims_launch_duration_seconds", "stowage_nodeclaims_registration_duration_seconds",
	} {
		if v, _ := sample(families, name, byPool); v != 1 {
			t.Errorf("%s{nodepool=%q} = %v, want 1 (one claim launched)", name, pool.Name, v)
		}
	}
	if v, _ := sample(families, "stowage_solver_duration_seconds", nil); v < 1 {
		t.Errorf("stowage_solver_duration_seconds has %v observations, want at least 1", v)
	}
	wantPrice, err := strconv.ParseFloat(claim.Status.PricePerHour, 64)
	if err != nil {
		t.Fatalf("NodeClaim %s status.pricePerHour %q: %v", claim.Name, claim.Status.PricePerHour, err)
	}
	byClaim := map[string]string{"nodepool": pool.Name, "capacity_type": claim.Status.CapacityType}
	if got, _ := sample(families, "stowage_cost_per_hour", byClaim); wantPrice <= 0 || math.Abs(got-wantPrice) > 1e-9 {
		t.Errorf("stowage_cost_per_hour%v = %v, want the claim's status.pricePerHour %v", byClaim, got, wantPrice)
	}

	// Termination: drain through the Eviction API, delete the machine and the
	// Node, release the finalizer, all with the chart's RBAC.
	if err := c.Delete(ctx, &claim); err != nil {
		t.Fatalf("deleting NodeClaim %s: %v", claim.Name, err)
	}
	eventually(t, ctrl, "the NodeClaim, its Node and the pod to be gone", func(ctx context.Context) (bool, error) {
		for _, o := range []struct {
			obj client.Object
			key client.ObjectKey
		}{
			{&v1.NodeClaim{}, client.ObjectKey{Name: claim.Name}},
			{&corev1.Node{}, client.ObjectKey{Name: node.Name}},
			{&corev1.Pod{}, client.ObjectKeyFromObject(pod)},
		} {
			if err := c.Get(ctx, o.key, o.obj); !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("%T %s still exists (get: %v)", o.obj, o.key, err)
			}
		}
		return true, nil
	})
	eventually(t, ctrl, "/metrics to serve every metric due after termination", func(ctx context.Context) (bool, error) {
		var err error
		if families, err = scrape(ctx, metricsURL, prometheus); err != nil {
			return false, err
		}
		if missing := missingMetrics(docs, families, afterTermination); len(missing) > 0 {
			return false, fmt.Errorf("missing %v", missing)
		}
		// Documented: a pool's cost series disappear with its last machine.
		for _, m := range docs {
			if metricExpectations[m.Name].perMachine {
				if _, ok := sample(families, m.Name, byPool); ok {
					return false, fmt.Errorf("%s still has a series for nodepool %s, which has no machines", m.Name, pool.Name)
				}
			}
		}
		return true, nil
	})
	for _, problem := range servedAsDocumented(docs, families) {
		t.Error(problem)
	}
	if v, _ := sample(families, "stowage_nodeclaims_terminated_total", byPool); v != 1 {
		t.Errorf("stowage_nodeclaims_terminated_total{nodepool=%q} = %v, want 1", pool.Name, v)
	}
	if v, _ := sample(families, "stowage_termination_evictions_total", map[string]string{"outcome": "evicted"}); v < 1 {
		t.Errorf("stowage_termination_evictions_total{outcome=\"evicted\"} = %v, want at least 1 (the pod was drained)", v)
	}
	// The chart's RBAC must cover everything the controller did: a denial
	// is retried and logged, so it would not fail any wait above by itself.
	if denials := ctrl.grep("is forbidden"); len(denials) > 0 {
		t.Errorf("the controller was denied by the chart's RBAC (%d log lines), first:\n%s", len(denials), denials[0])
	}
	for _, m := range docs {
		if e := metricExpectations[m.Name]; e.when == untilEvent {
			if _, ok := families[m.Name]; !ok {
				t.Logf("%s not served, as expected until %s", m.Name, e.reason)
			}
		}
	}
}

// buildStowage compiles cmd/stowage into a temporary directory.
func buildStowage(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to build cmd/stowage: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "stowage")
	cmd := exec.Command(goBin, "build", "-o", bin, "./cmd/stowage")
	cmd.Dir = repoRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/stowage: %v\n%s", err, out)
	}
	return bin
}

// impersonatingKubeconfig copies the admin kubeconfig at path, making every
// request act as the service account namespace/name with its groups, so the
// API server authorizes the controller exactly as it would the in-cluster pod.
func impersonatingKubeconfig(t *testing.T, path, namespace, name string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatalf("loading kubeconfig %s: %v", path, err)
	}
	if len(cfg.AuthInfos) == 0 {
		t.Fatalf("kubeconfig %s has no users", path)
	}
	for _, u := range cfg.AuthInfos {
		u.Impersonate = "system:serviceaccount:" + namespace + ":" + name
		u.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	out := filepath.Join(t.TempDir(), "kubeconfig-"+name)
	if err := clientcmd.WriteToFile(*cfg, out); err != nil {
		t.Fatalf("writing %s: %v", out, err)
	}
	return out
}

// chartEnv is the container's literal environment (STOWAGE_* settings),
// without values resolved by the kubelet, which does not run here.
func chartEnv(c corev1.Container) []string {
	var env []string
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env = append(env, e.Name+"="+e.Value)
		}
	}
	return env
}

// freeAddr returns a loopback address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// controllerProcess is the stowage controller running as a child.
type controllerProcess struct {
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // exit status, valid once done is closed
}

// startController runs bin with args and the chart's env plus what a pod
// would have (POD_NAMESPACE), and stops its process group in t.Cleanup. On
// failure the tail of its log is printed.
func startController(t *testing.T, bin string, args, env []string) *controllerProcess {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "stowage.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append(minimalEnv(), env...), "POD_NAMESPACE="+releaseNamespace)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = controllerSysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	p := &controllerProcess{cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("stowage controller log (last lines):\n%s", p.logTail(80))
		}
	})
	return p
}

// minimalEnv keeps the controller from picking up the developer's
// KUBECONFIG or STOWAGE_* settings.
func minimalEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// stop sends SIGTERM to the process group, then SIGKILL after a grace period.
func (p *controllerProcess) stop(t *testing.T) {
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("signalling the controller: %v", err)
	}
	select {
	case <-p.done:
		// A pod being replaced gets SIGTERM too: it must release the lease
		// and exit cleanly, not crash-loop into the next rollout.
		if p.err != nil {
			t.Errorf("the controller exited with %v on SIGTERM, want a clean exit", p.err)
		}
	case <-time.After(controllerStopGrace):
		t.Errorf("the controller did not exit within %s of SIGTERM; killing it", controllerStopGrace)
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killing the controller: %v", err)
	}
	<-p.done
}

func (p *controllerProcess) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// grep returns the log lines containing s.
func (p *controllerProcess) grep(s string) []string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return []string{fmt.Sprintf("(reading %s: %v)", p.logPath, err)}
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func (p *controllerProcess) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// eventually polls cond until it holds, failing at once if the controller
// exits and after e2eWait otherwise, with cond's last error.
func eventually(t *testing.T, p *controllerProcess, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), e2eWait)
	defer cancel()
	var last error
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("the controller exited: %v", p.err)
		}
		ok, err := cond(ctx)
		if ctx.Err() == nil {
			// Keep the last answer from before the deadline, not the deadline.
			last = err
		}
		return ok && err == nil, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last: %v)", what, err, last)
	}
}

func httpOK(ctx context.Context, url string) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return true, nil
}

// metricsToken makes a service account, binds it to clusterRole unless that
// is empty, and returns a token for it, as a Prometheus in the cluster has.
func metricsToken(t *testing.T, c client.Client, namespace, name, clusterRole string) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
	if err := c.Create(ctx, sa); err != nil {
		t.Fatalf("creating service account %s/%s: %v", namespace, name, err)
	}
	if clusterRole != "" {
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-" + clusterRole},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: namespace, Name: name}},
		}
		if err := c.Create(ctx, binding); err != nil {
			t.Fatalf("binding %s to %s: %v", name, clusterRole, err)
		}
	}
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}
	if err := c.SubResource("token").Create(ctx, sa, tr); err != nil {
		t.Fatalf("requesting a token for %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// metricsStatus returns the status code of GET url with token.
func metricsStatus(ctx context.Context, url, token string) (int, error) {
	resp, err := metricsGet(ctx, url, token)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
