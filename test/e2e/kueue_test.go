//go:build unix

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	provreqv1 "github.com/stowage-k8s/stowage/pkg/apis/provisioningrequest/v1"
	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/test/controlplane"
)

// kueueBinEnv overrides where the Kueue manager built by `make kueue` is.
const kueueBinEnv = "STOWAGE_KUEUE_BIN"

// kueueBin returns the Kueue manager binary and Kueue's module directory
// (for its CRDs), as hack/build-kueue.sh records them.
func kueueBin(t *testing.T) (bin, moduleDir string) {
	t.Helper()
	dir := os.Getenv(kueueBinEnv)
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(wd, "..", "..", "bin", "kueue")
	}
	bin = filepath.Join(dir, "kueue")
	mod, err := os.ReadFile(filepath.Join(dir, "kueue-module-dir"))
	if _, serr := os.Stat(bin); serr != nil || err != nil {
		t.Fatalf("the Kueue manager is not built in %s: run `make kueue` (or set %s)", dir, kueueBinEnv)
	}
	return bin, strings.TrimSpace(string(mod))
}

// kueueCRDs installs Kueue's CRDs from its module. The CRDs that Kueue's
// certificate manager injects a CA into get the conversion stanza its
// kustomization adds; nothing here asks for a version that needs converting.
func kueueCRDs(t *testing.T, c client.Client, moduleDir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(moduleDir, "config", "components", "crd", "bases", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Kueue CRDs under %s: %v", moduleDir, err)
	}
	converted := map[string]bool{"localqueues": true, "clusterqueues": true, "cohorts": true, "workloads": true, "multikueueclusters": true}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(data, crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if converted[crd.Spec.Names.Plural] {
			crd.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{
				Strategy: apiextensionsv1.WebhookConverter,
				Webhook: &apiextensionsv1.WebhookConversion{
					ClientConfig: &apiextensionsv1.WebhookClientConfig{Service: &apiextensionsv1.ServiceReference{
						Namespace: "kueue-system", Name: "kueue-webhook-service", Path: ptr.To("/convert")}},
					ConversionReviewVersions: []string{"v1"},
				},
			}
		}
		if err := c.Create(context.Background(), crd); err != nil {
			t.Fatalf("creating CRD %s: %v", crd.Name, err)
		}
	}
	trnEventually(t, "Kueue's CRDs established", func(ctx context.Context) (bool, error) {
		list := &apiextensionsv1.CustomResourceDefinitionList{}
		if err := c.List(ctx, list); err != nil {
			return false, err
		}
		for _, crd := range list.Items {
			if !strings.HasSuffix(crd.Name, ".kueue.x-k8s.io") {
				continue
			}
			established := false
			for _, cond := range crd.Status.Conditions {
				established = established || (cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue)
			}
			if !established {
				return false, nil
			}
		}
		return true, nil
	})
}

// startKueue runs Kueue's own manager against the cluster, as a separate
// process, until the test ends. Its webhooks are served but not registered
// (the Job is created suspended, as Kueue's Job webhook would make it).
func startKueue(t *testing.T, cp *controlplane.ControlPlane, bin string) {
	t.Helper()
	dir := t.TempDir()
	config := fmt.Sprintf(`apiVersion: config.kueue.x-k8s.io/v1beta2
kind: Configuration
namespace: kueue-system
health: {healthProbeBindAddress: "0"}
metrics: {bindAddress: "0"}
webhook: {port: 0, host: 127.0.0.1, certDir: %q}
leaderElection: {leaderElect: false}
internalCertManagement: {enable: true}
integrations:
  frameworks: ["batch/job"]
`, filepath.Join(dir, "certs"))
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	// The certificate manager fills the Secret Kueue's install creates empty.
	trnCreate(t, cp.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kueue-system"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kueue-system", Name: "kueue-webhook-server-cert"}})
	var out bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	// Kueue's certificate manager writes its certificates into the Secret
	// and expects the kubelet to mount it into certDir; play that part.
	certDir := filepath.Join(dir, "certs")
	go func() {
		for ctx.Err() == nil {
			secret := &corev1.Secret{}
			err := cp.Client.Get(ctx, client.ObjectKey{Namespace: "kueue-system", Name: "kueue-webhook-server-cert"}, secret)
			if err == nil && len(secret.Data["tls.crt"]) > 0 {
				_ = os.MkdirAll(certDir, 0o700)
				for name, data := range secret.Data {
					_ = os.WriteFile(filepath.Join(certDir, name), data, 0o600)
				}
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	cmd := exec.CommandContext(ctx, bin, "--config="+filepath.Join(dir, "config.yaml"),
		"--feature-gates=VisibilityOnDemand=false")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kueueKubeconfig(t, cp, dir))
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("starting kueue: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			if len(lines) > 120 {
				lines = lines[len(lines)-120:]
			}
			t.Logf("kueue's last lines:\n%s", strings.Join(lines, "\n"))
		}
	})
}

// kubeVersion is what the local kube-apiserver is built from (tools/kube).
// Built from the module without version stamping, it reports
// v0.0.0-master, which Kueue refuses to start on.
const kubeVersion = "v1.37.2"

// kueueKubeconfig serves Kueue the API through a plain-HTTP proxy on
// loopback that authenticates as the admin and answers /version with
// kubeVersion; everything else passes through, watches included.
func kueueKubeconfig(t *testing.T, cp *controlplane.ControlPlane, dir string) string {
	t.Helper()
	transport, err := rest.TransportFor(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(cp.Config.Host)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = transport
	proxy.FlushInterval = -1
	mux := http.NewServeMux()
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) {
		parts := strings.SplitN(strings.TrimPrefix(kubeVersion, "v"), ".", 3)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(version.Info{Major: parts[0], Minor: parts[1], GitVersion: kubeVersion,
			Platform: "linux/amd64"})
	})
	mux.Handle("/", proxy)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	kubeconfig := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: %q}}]
users: [{name: admin, user: {}}]
contexts: [{name: local, context: {cluster: local, user: admin}}]
current-context: local
`, srv.URL)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// kueueObject builds an unstructured Kueue object of kueue.x-k8s.io/v1beta2.
func kueueObject(kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": spec}}
	u.SetAPIVersion("kueue.x-k8s.io/v1beta2")
	u.SetKind(kind)
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// TestKueue runs Kueue's controller against Stowage end to end: a Job
// queued in a ClusterQueue whose admission check is Kueue's
// ProvisioningRequest check is held until Stowage has bought its machines
// all at once, then admitted, and its pods run on those machines.
func TestKueue(t *testing.T) {
	bin, moduleDir := kueueBin(t)
	tc := trnStart(t, "kueue-e2e", nil)
	ctx := context.Background()
	const ns = "research"
	kueueCRDs(t, tc.c, moduleDir)
	startKueue(t, tc.cp, bin)
	trnCreate(t, tc.c,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		trnPool("a100", "p4d.24xlarge"),
		kueueObject("ResourceFlavor", "", "default", map[string]any{}),
		kueueObject("ProvisioningRequestConfig", "", "atomic", map[string]any{
			"provisioningClassName": provreqv1.ProvisioningClassBestEffortAtomicScaleUp,
			"managedResources":      []any{"nvidia.com/gpu"},
		}),
		kueueObject("AdmissionCheck", "", "capacity", map[string]any{
			"controllerName": "kueue.x-k8s.io/provisioning-request",
			"parameters":     map[string]any{"apiGroup": "kueue.x-k8s.io", "kind": "ProvisioningRequestConfig", "name": "atomic"},
		}),
		kueueObject("ClusterQueue", "", "training", map[string]any{
			"namespaceSelector": map[string]any{},
			"resourceGroups": []any{map[string]any{
				"coveredResources": []any{"cpu", "memory", "nvidia.com/gpu"},
				"flavors": []any{map[string]any{"name": "default", "resources": []any{
					map[string]any{"name": "cpu", "nominalQuota": "1000"},
					map[string]any{"name": "memory", "nominalQuota": "10Ti"},
					map[string]any{"name": "nvidia.com/gpu", "nominalQuota": "64"},
				}}},
			}},
			"admissionChecksStrategy": map[string]any{"admissionChecks": []any{map[string]any{"name": "capacity"}}},
		}),
	)
	trnCreate(t, tc.c, kueueObject("LocalQueue", ns, "team", map[string]any{"clusterQueue": "training"}))
	dsfHoldJobPodsRunning(t, tc.c, ns)
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{dsfHoldLabel: "true", "app": "finetune"}},
		Spec: eightGPUs("a100")}
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	trnCreate(t, tc.c, &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "finetune", Labels: map[string]string{"kueue.x-k8s.io/queue-name": "team"}},
		Spec:       batchv1.JobSpec{Suspend: ptr.To(true), Parallelism: ptr.To[int32](2), Completions: ptr.To[int32](2), Template: tmpl},
	})

	// Kueue asks Stowage through a ProvisioningRequest; Stowage buys both
	// machines and says so.
	var request string
	trnEventually(t, "Kueue's ProvisioningRequest Provisioned", func(ctx context.Context) (bool, error) {
		list := &provreqv1.ProvisioningRequestList{}
		if err := tc.c.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, err
		}
		for _, pr := range list.Items {
			for _, c := range pr.Status.Conditions {
				if c.Type == provreqv1.Provisioned && c.Status == metav1.ConditionTrue {
					request = pr.Name
					return true, nil
				}
			}
		}
		return false, nil
	})
	claims, err := trnClaims(ctx, tc.c, "a100")
	if err != nil || len(claims) != 2 {
		t.Fatalf("%d nodeclaims (%v), want 2", len(claims), err)
	}
	bought := map[string]bool{}
	for _, cl := range claims {
		bought[cl.Name] = true
		if cl.Annotations[v1.AnnotationBookedBy] != ns+"/"+request {
			t.Errorf("claim %s held for %q, want %s/%s", cl.Name, cl.Annotations[v1.AnnotationBookedBy], ns, request)
		}
	}
	// Kueue admits the workload and starts the Job; its pods run on them.
	trnEventually(t, "the Job's pods running on the bought machines", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := tc.c.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app": "finetune"}); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase != corev1.PodRunning {
				continue
			}
			if p.Annotations[provreqv1.ConsumeAnnotation] != request {
				return false, fmt.Errorf("pod %s does not consume %s: %v", p.Name, request, p.Annotations)
			}
			node := &corev1.Node{}
			if err := tc.c.Get(ctx, client.ObjectKey{Name: p.Spec.NodeName}, node); err != nil {
				return false, err
			}
			if !bought[node.Labels[v1.LabelNodeClaim]] {
				return false, fmt.Errorf("pod %s runs on %s, not a machine bought for the request", p.Name, node.Name)
			}
			running++
		}
		return running == 2, nil
	})
	if claims, _ := trnClaims(ctx, tc.c, "a100"); len(claims) != 2 {
		t.Errorf("%d nodeclaims once the pods run, want still 2", len(claims))
	}
}
