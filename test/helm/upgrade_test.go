package helm

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// addedAfterFirstRelease are the values the chart gained after its first
// release, as paths into values.yaml. `helm upgrade --reuse-values` (what
// docs/install-aws.md tells users to run) renders the new templates with the
// values of the release being upgraded, so none of these may be required.
var addedAfterFirstRelease = [][]string{
	{"gracefulShutdownSeconds"},
	{"metrics", "secure"},
	{"networkPolicy"},
	{"gcp", "cluster"},
	{"gcp", "location"},
	{"gcp", "approveKubeletCSRs"},
	{"azure", "clusterEndpoint"},
	{"azure", "clusterCABundle"},
	{"azure", "bootstrapTokenSecret"},
	{"azure", "clusterDNS"},
	{"azure", "kubeletIdentity"},
}

// olderChart copies the chart into a temporary directory with the values
// added after its first release removed from values.yaml: what
// --reuse-values hands the templates on an upgrade from that release.
func olderChart(t *testing.T) string {
	t.Helper()
	src := filepath.Join(repoRoot(t), chart)
	dst := filepath.Join(t.TempDir(), "stowage")
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dst, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	for _, path := range addedAfterFirstRelease {
		m := values
		for _, k := range path[:len(path)-1] {
			m, _ = m[k].(map[string]any)
		}
		if _, ok := m[path[len(path)-1]]; !ok {
			t.Fatalf("values.yaml has no %v", path)
		}
		delete(m, path[len(path)-1])
	}
	if b, err = yaml.Marshal(values); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "values.yaml"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestUpgradeWithReusedValuesOfTheFirstRelease(t *testing.T) {
	dir := olderChart(t)
	for _, cloud := range clouds {
		t.Run(cloud, func(t *testing.T) {
			// The user's values of the old release: the example file.
			args := []string{"-f", filepath.Join(dir, "values-"+cloud+".yaml")}
			r := renderChart(t, dir, args...)
			d := into[appsv1.Deployment](t, r, "Deployment/stowage")
			spec := d.Spec.Template.Spec
			env := map[string]string{}
			for _, e := range spec.Containers[0].Env {
				env[e.Name] = e.Value
			}
			// Each of these must parse as its flag, or the controller exits.
			if env["STOWAGE_METRICS_SECURE"] != "true" {
				t.Errorf("STOWAGE_METRICS_SECURE = %q, want the chart's default true", env["STOWAGE_METRICS_SECURE"])
			}
			if env["STOWAGE_GRACEFUL_SHUTDOWN_TIMEOUT"] != "30s" || ptr.Deref(spec.TerminationGracePeriodSeconds, 0) != 45 {
				t.Errorf("STOWAGE_GRACEFUL_SHUTDOWN_TIMEOUT = %q, terminationGracePeriodSeconds = %v; want 30s and 45",
					env["STOWAGE_GRACEFUL_SHUTDOWN_TIMEOUT"], ptr.Deref(spec.TerminationGracePeriodSeconds, -1))
			}
			cr := into[rbacv1.ClusterRole](t, r, "ClusterRole/stowage")
			if !allows(cr.Rules, "authentication.k8s.io", "tokenreviews", "create") {
				t.Errorf("secure metrics by default but no TokenReview RBAC")
			}
			if _, ok := r["NetworkPolicy/stowage"]; ok {
				t.Errorf("NetworkPolicy rendered although the release never enabled it")
			}
		})
	}
}
