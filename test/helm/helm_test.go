// Package helm tests the Helm chart in charts/stowage by running the helm
// binary that `make tools` installs into bin/: lint, render for every
// cloud's example values, reject bad values with a clear message, and
// install into the local control plane.
package helm

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// repoRoot is the module root, found from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// helm runs bin/helm and returns its stdout; stderr is in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := repoRoot(t)
	bin := filepath.Join(root, "bin", "helm")
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s not found: run make tools", bin)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	// Keep helm's cache, config and plugins out of the user's home.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.New(strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

const chart = "charts/stowage"

var clouds = []string{"fake", "aws", "gcp", "azure"}

func TestLint(t *testing.T) {
	for _, cloud := range clouds {
		t.Run(cloud, func(t *testing.T) {
			out, err := helm(t, "lint", "--strict", chart, "-f", chart+"/values-"+cloud+".yaml")
			if err != nil {
				t.Fatalf("helm lint: %v\n%s", err, out)
			}
		})
	}
}

// rendered is the output of helm template, by kind and name.
type rendered map[string]*unstructured.Unstructured

func render(t *testing.T, args ...string) rendered {
	t.Helper()
	return renderChart(t, chart, args...)
}

// renderChart renders the chart in dir (a path relative to the repository
// root, or absolute).
func renderChart(t *testing.T, dir string, args ...string) rendered {
	t.Helper()
	out, err := helm(t, append([]string{"template", "stowage", dir, "--namespace", "stowage"}, args...)...)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	objs := rendered{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("decoding rendered YAML: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		key := u.GetKind() + "/" + u.GetName()
		if u.GetNamespace() != "" && u.GetKind() == "Role" {
			key = u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
		}
		objs[key] = u
	}
}

// into converts one rendered object into a typed one.
func into[T any](t *testing.T, r rendered, key string) *T {
	t.Helper()
	u, ok := r[key]
	if !ok {
		t.Fatalf("%s not rendered; have %v", key, keys(r))
	}
	b, err := yaml.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	out := new(T)
	if err := yaml.UnmarshalStrict(b, out); err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return out
}

func keys(r rendered) []string {
	out := make([]string, 0, len(r))
	for k := range r {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// allows reports whether any rule of the role grants verb on group/resource.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) &&
			(slices.Contains(r.Verbs, verb) || slices.Contains(r.Verbs, "*")) {
			return true
		}
	}
	return false
}

func TestTemplatePerCloud(t *testing.T) {
	tests := []struct {
		cloud           string
		wantReplicas    int32
		wantAnnotations map[string]string
		wantPodLabels   map[string]string
		wantEnv         map[string]string
	}{
		{
			cloud: "fake", wantReplicas: 1,
			wantEnv: map[string]string{"STOWAGE_CLOUD_PROVIDER": "fake", "STOWAGE_CLUSTER_NAME": "demo", "STOWAGE_LOG_FORMAT": "console"},
		},
		{
			cloud: "aws", wantReplicas: 2,
			wantAnnotations: map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/StowageController-prod-eks"},
			wantEnv: map[string]string{
				"STOWAGE_CLOUD_PROVIDER": "aws", "STOWAGE_CLUSTER_NAME": "prod-eks", "STOWAGE_AWS_REGION": "us-east-1",
				"STOWAGE_AWS_INTERRUPTION_QUEUE": "https://sqs.us-east-1.amazonaws.com/111122223333/stowage-prod-eks",
				"STOWAGE_AWS_CLUSTER_CIDR":       "10.100.0.0/16",
			},
		},
		{
			cloud: "gcp", wantReplicas: 2,
			wantAnnotations: map[string]string{"iam.gke.io/gcp-service-account": "stowage-controller@my-project.iam.gserviceaccount.com"},
			wantEnv:         map[string]string{"STOWAGE_CLOUD_PROVIDER": "gcp", "STOWAGE_GCP_PROJECT": "my-project"},
		},
		{
			cloud: "azure", wantReplicas: 2,
			wantAnnotations: map[string]string{"azure.workload.identity/client-id": "00000000-1111-2222-3333-444444444444"},
			wantPodLabels:   map[string]string{"azure.workload.identity/use": "true"},
			wantEnv: map[string]string{"STOWAGE_CLOUD_PROVIDER": "azure", "STOWAGE_AZURE_RESOURCE_GROUP": "MC_prod-rg_prod-aks_eastus",
				"STOWAGE_AZURE_REGION": "eastus", "STOWAGE_AZURE_SUBSCRIPTION_ID": "55555555-6666-7777-8888-999999999999",
				"STOWAGE_AZURE_CLUSTER_ENDPOINT": "https://prod-aks-dns-0123abcd.hcp.eastus.azmk8s.io:443"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.cloud, func(t *testing.T) {
			r := render(t, "-f", chart+"/values-"+tt.cloud+".yaml")

			sa := into[corev1.ServiceAccount](t, r, "ServiceAccount/stowage")
			if diff := cmp.Diff(tt.wantAnnotations, sa.Annotations); diff != "" {
				t.Errorf("service account annotations (-want +got):\n%s", diff)
			}

			d := into[appsv1.Deployment](t, r, "Deployment/stowage")
			if got := ptr.Deref(d.Spec.Replicas, 0); got != tt.wantReplicas {
				t.Errorf("replicas = %d, want %d", got, tt.wantReplicas)
			}
			for k, v := range tt.wantPodLabels {
				if got := d.Spec.Template.Labels[k]; got != v {
					t.Errorf("pod label %s = %q, want %q", k, got, v)
				}
			}
			pod := d.Spec.Template.Spec
			if pod.ServiceAccountName != sa.Name {
				t.Errorf("serviceAccountName = %q, want %q", pod.ServiceAccountName, sa.Name)
			}
			if pod.PriorityClassName != "system-cluster-critical" {
				t.Errorf("priorityClassName = %q", pod.PriorityClassName)
			}
			wantPodSC := &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), RunAsGroup: ptr.To[int64](65532),
				FSGroup: ptr.To[int64](65532), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}
			if diff := cmp.Diff(wantPodSC, pod.SecurityContext); diff != "" {
				t.Errorf("pod securityContext (-want +got):\n%s", diff)
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("want one container, got %d", len(pod.Containers))
			}
			c := pod.Containers[0]
			wantSC := &corev1.SecurityContext{
				AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true), RunAsNonRoot: ptr.To(true),
				Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			}
			if diff := cmp.Diff(wantSC, c.SecurityContext); diff != "" {
				t.Errorf("container securityContext (-want +got):\n%s", diff)
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" ||
				c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Errorf("probes must hit /healthz and /readyz on the health port: %+v %+v", c.LivenessProbe, c.ReadinessProbe)
			}
			env := map[string]string{}
			for _, e := range c.Env {
				env[e.Name] = e.Value
			}
			for k, v := range tt.wantEnv {
				if env[k] != v {
					t.Errorf("env %s = %q, want %q", k, env[k], v)
				}
			}
			if env["STOWAGE_METRICS_SECURE"] != "true" {
				t.Errorf("metrics must be served behind authentication: STOWAGE_METRICS_SECURE = %q", env["STOWAGE_METRICS_SECURE"])
			}
			if env["STOWAGE_LEADER_ELECT"] != "true" {
				t.Errorf("leader election must be on: STOWAGE_LEADER_ELECT = %q", env["STOWAGE_LEADER_ELECT"])
			}
			if len(pod.TopologySpreadConstraints) == 0 {
				t.Errorf("no topology spread constraints")
			}

			_, hasPDB := r["PodDisruptionBudget/stowage"]
			if want := tt.wantReplicas > 1; hasPDB != want {
				t.Errorf("PodDisruptionBudget rendered = %v, want %v", hasPDB, want)
			}

			cr := into[rbacv1.ClusterRole](t, r, "ClusterRole/stowage")
			for _, want := range []struct{ group, resource, verb string }{
				{"", "pods/eviction", "create"},
				{"", "nodes", "delete"},
				{"", "pods", "watch"},
				{"", "pods", "patch"},
				{"policy", "poddisruptionbudgets", "list"},
				{"stowage.dev", "nodeclaims", "create"},
				{"stowage.dev", "nodeclaims/status", "patch"},
				// Steering a pod to its planned node, volume topology, volume detach.
				{"", "pods/status", "patch"},
				// Letting planned pods onto their reserved node.
				{"", "pods", "patch"},
				{"", "persistentvolumes", "list"},
				{"storage.k8s.io", "volumeattachments", "watch"},
				{"storage.k8s.io", "csinodes", "list"},
				{"authentication.k8s.io", "tokenreviews", "create"},
				{"authorization.k8s.io", "subjectaccessreviews", "create"},
			} {
				if !allows(cr.Rules, want.group, want.resource, want.verb) {
					t.Errorf("ClusterRole does not allow %s %s/%s", want.verb, want.group, want.resource)
				}
			}
			for _, deny := range []struct{ group, resource, verb string }{
				// NodePools are the user's; only their status is Stowage's.
				{"stowage.dev", "nodepools", "create"},
				{"stowage.dev", "nodepools", "patch"},
				{"stowage.dev", "nodepools", "delete"},
				{"azure.stowage.dev", "aksnodeclasses", "patch"},
				{"", "secrets", "get"},
				{"", "pods", "create"},
				{"", "pods/status", "update"},
				{"", "configmaps", "get"},
				// The finalizers subresource is only checked when an owner
				// reference with blockOwnerDeletion is set, and Stowage sets
				// none (its finalizers are written with the object itself).
				{"stowage.dev", "nodepools/finalizers", "update"},
				{"stowage.dev", "nodeclaims/finalizers", "update"},
				{"aws.stowage.dev", "ec2nodeclasses/finalizers", "update"},
			} {
				if allows(cr.Rules, deny.group, deny.resource, deny.verb) {
					t.Errorf("ClusterRole must not allow %s %s/%s", deny.verb, deny.group, deny.resource)
				}
			}
			if got, want := allows(cr.Rules, "aws.stowage.dev", "ec2nodeclasses", "watch"), tt.cloud == "aws"; got != want {
				t.Errorf("ClusterRole allows watching ec2nodeclasses = %v, want %v", got, want)
			}
			if got, want := allows(cr.Rules, "", "nodes", "create"), tt.cloud == "fake"; got != want {
				t.Errorf("ClusterRole allows creating nodes = %v, want %v (only the fake cloud's kubelet does)", got, want)
			}
			reader := into[rbacv1.ClusterRole](t, r, "ClusterRole/stowage-metrics-reader")
			if len(reader.Rules) != 1 || !slices.Equal(reader.Rules[0].NonResourceURLs, []string{"/metrics"}) || !slices.Equal(reader.Rules[0].Verbs, []string{"get"}) {
				t.Errorf("metrics-reader ClusterRole rules = %+v, want only GET /metrics", reader.Rules)
			}
			role := into[rbacv1.Role](t, r, "Role/stowage/stowage")
			if !allows(role.Rules, "coordination.k8s.io", "leases", "update") {
				t.Errorf("Role in the release namespace does not allow updating leases")
			}
			_, hasFakeRole := r["Role/stowage-fake-cloud/stowage-fake-cloud"]
			if want := tt.cloud == "fake"; hasFakeRole != want {
				t.Errorf("fake cloud Role rendered = %v, want %v", hasFakeRole, want)
			}
		})
	}
}

func TestTemplateOptionalObjects(t *testing.T) {
	r := render(t, "--set", "cloud=fake", "--set", "clusterName=c", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "dashboard.enabled=true", "--set", "image.digest=sha256:"+strings.Repeat("ab", 32),
		"--set", "networkPolicy.enabled=true", "--set", "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.team=monitoring")
	for _, key := range []string{"ServiceMonitor/stowage", "ConfigMap/stowage-dashboard", "Service/stowage-metrics", "NetworkPolicy/stowage"} {
		if _, ok := r[key]; !ok {
			t.Errorf("%s not rendered; have %v", key, keys(r))
		}
	}
	sm := r["ServiceMonitor/stowage"]
	endpoints, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
	if ep, ok := endpoints[0].(map[string]any); !ok || ep["scheme"] != "https" || ep["bearerTokenFile"] == nil {
		t.Errorf("ServiceMonitor endpoint %v must scrape over https with the service account's token", endpoints[0])
	}
	np := into[networkingv1.NetworkPolicy](t, r, "NetworkPolicy/stowage")
	if len(np.Spec.Ingress) != 2 || len(np.Spec.Ingress[0].From) != 1 || np.Spec.Ingress[0].From[0].NamespaceSelector == nil ||
		len(np.Spec.Ingress[1].From) != 0 || np.Spec.Ingress[1].Ports[0].Port.String() != "health" {
		t.Errorf("NetworkPolicy ingress = %+v; want metrics from the given namespace and health from anywhere", np.Spec.Ingress)
	}
	if _, off := render(t, "--set", "cloud=fake", "--set", "clusterName=c")["NetworkPolicy/stowage"]; off {
		t.Errorf("NetworkPolicy rendered although networkPolicy.enabled is false")
	}
	cm := into[corev1.ConfigMap](t, r, "ConfigMap/stowage-dashboard")
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap lacks the grafana_dashboard label: %v", cm.Labels)
	}
	if !strings.Contains(cm.Data["stowage.json"], "stowage_cost_per_hour") {
		t.Errorf("dashboard does not chart stowage_cost_per_hour")
	}
	// The default system-cluster-critical class needs a quota outside
	// kube-system on clusters that limit it (GKE), and none inside it.
	q := into[corev1.ResourceQuota](t, r, "ResourceQuota/stowage-critical-pods")
	if q.Spec.ScopeSelector == nil || len(q.Spec.ScopeSelector.MatchExpressions) != 1 ||
		q.Spec.ScopeSelector.MatchExpressions[0].Values[0] != "system-cluster-critical" || q.Spec.Hard.Pods().String() != "3" {
		t.Errorf("ResourceQuota = %+v; want room for 2 replicas and a surge, scoped to system-cluster-critical", q.Spec)
	}
	for name, args := range map[string][]string{
		"in kube-system":         {"--namespace", "kube-system"},
		"another priority class": {"--set", "priorityClassName=batch-high"},
	} {
		if _, ok := render(t, append([]string{"--set", "cloud=fake", "--set", "clusterName=c"}, args...)...)["ResourceQuota/stowage-critical-pods"]; ok {
			t.Errorf("%s: ResourceQuota rendered, want none", name)
		}
	}
	d := into[appsv1.Deployment](t, r, "Deployment/stowage")
	if got, want := d.Spec.Template.Spec.Containers[0].Image, "ghcr.io/stowage-k8s/stowage@sha256:"+strings.Repeat("ab", 32); got != want {
		t.Errorf("image = %q, want %q", got, want)
	}
}

func TestValuesRejected(t *testing.T) {
	tests := []struct {
		name string
		set  []string
		want []string // substrings of helm's error
	}{
		// Issue 10 #9: no default cloud, so an install that forgets it fails.
		{name: "missing cloud", set: []string{"clusterName=c"}, want: []string{"missing property 'cloud'"}},
		{name: "unknown cloud", set: []string{"clusterName=c", "cloud=ibm"}, want: []string{"/cloud", "'fake', 'aws', 'gcp', 'azure'"}},
		{name: "missing clusterName", set: []string{"cloud=fake"}, want: []string{"/clusterName", "minLength"}},
		{name: "zero replicas", set: []string{"cloud=fake", "clusterName=c", "replicas=0"}, want: []string{"/replicas", "minimum"}},
		{name: "bad duration", set: []string{"cloud=fake", "clusterName=c", "batch.idleDuration=ten seconds"}, want: []string{"/batch/idleDuration", "does not match pattern"}},
		{name: "bad log level", set: []string{"cloud=fake", "clusterName=c", "logging.level=verbose"}, want: []string{"/logging/level"}},
		{name: "typo in a value name", set: []string{"cloud=fake", "clusterName=c", "replica=3"}, want: []string{"additional properties 'replica' not allowed"}},
		{name: "bad IRSA role", set: []string{"clusterName=c", "cloud=aws", "aws.roleARN=my-role"}, want: []string{"/aws/roleARN"}},
		{name: "aws without region", set: []string{"clusterName=c", "cloud=aws"}, want: []string{"region is required when cloud is aws"}},
		{name: "aws without join settings", set: []string{"clusterName=c", "cloud=aws", "region=us-east-1", "aws.clusterEndpoint=https://k8s"},
			want: []string{"aws.clusterEndpoint, aws.clusterCABundle and aws.clusterCIDR are required", "aws eks describe-cluster"}},
		{name: "bad interruption queue", set: []string{"clusterName=c", "cloud=aws", "region=us-east-1", "aws.interruptionQueue=stowage-q"}, want: []string{"/aws/interruptionQueue"}},
		{name: "azure without client ID", set: []string{"clusterName=c", "cloud=azure"}, want: []string{"azure.clientID is required when cloud is azure"}},
		{name: "azure without bootstrap token", set: []string{"clusterName=c", "cloud=azure", "azure.clientID=00000000-1111-2222-3333-444444444444"},
			want: []string{"azure.bootstrapTokenSecret.name is required when cloud is azure"}},
		{name: "bad kubelet identity", set: []string{"clusterName=c", "cloud=azure", "azure.kubeletIdentity=agentpool"}, want: []string{"/azure/kubeletIdentity"}},
		{name: "gcp without region", set: []string{"clusterName=c", "cloud=gcp", "gcp.serviceAccount=a@b.iam.gserviceaccount.com"},
			want: []string{"region is required when cloud is gcp"}},
		{name: "gcp without service account", set: []string{"clusterName=c", "cloud=gcp", "region=us-central1"}, want: []string{"gcp.serviceAccount is required when cloud is gcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", "stowage", chart}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			_, err := helm(t, args...)
			if err == nil {
				t.Fatalf("helm template succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// The kubelet kills the controller terminationGracePeriodSeconds after
// SIGTERM; it must outlast the controller's own shutdown wait, or a leader
// is killed holding its lease and the other replica waits the lease out.
func TestGracefulShutdownOutlastedByGracePeriod(t *testing.T) {
	for set, want := range map[string]struct {
		env   string
		grace int64
	}{
		"":                            {"30s", 45},
		"gracefulShutdownSeconds=120": {"120s", 135},
	} {
		args := []string{"--set", "cloud=fake", "--set", "clusterName=c"}
		if set != "" {
			args = append(args, "--set", set)
		}
		d := into[appsv1.Deployment](t, render(t, args...), "Deployment/stowage")
		spec := d.Spec.Template.Spec
		var env string
		for _, e := range spec.Containers[0].Env {
			if e.Name == "STOWAGE_GRACEFUL_SHUTDOWN_TIMEOUT" {
				env = e.Value
			}
		}
		if env != want.env || spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != want.grace {
			t.Errorf("%q: STOWAGE_GRACEFUL_SHUTDOWN_TIMEOUT=%q, terminationGracePeriodSeconds=%v; want %q and %d",
				set, env, ptr.Deref(spec.TerminationGracePeriodSeconds, -1), want.env, want.grace)
		}
	}
	if _, err := helm(t, "template", "stowage", chart, "--set", "cloud=fake", "--set", "clusterName=c", "--set", "gracefulShutdownSeconds=0"); err == nil ||
		!strings.Contains(err.Error(), "/gracefulShutdownSeconds") {
		t.Errorf("gracefulShutdownSeconds=0 accepted or error unclear: %v", err)
	}
}
