package helm

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// controllerEnv renders the chart with args and returns the controller
// container's environment in order.
func controllerEnv(t *testing.T, args ...string) []corev1.EnvVar {
	t.Helper()
	d := into[appsv1.Deployment](t, render(t, append([]string{"--set", "cloud=fake", "--set", "clusterName=c"}, args...)...), "Deployment/stowage")
	return d.Spec.Template.Spec.Containers[0].Env
}

// GOMEMLIMIT at the whole memory limit leaves the runtime no room for what
// the heap limit does not count (stacks, the binary's pages, memory not yet
// returned), so the container was OOM-killed before the collector reacted.
// The chart sets it to 90% of the limit, in bytes.
func TestGoMemLimitBelowMemoryLimit(t *testing.T) {
	for name, tt := range map[string]struct {
		args []string
		want string // "" when GOMEMLIMIT must be absent
	}{
		"default 1Gi":          {want: "966367641"},
		"binary suffix":        {args: []string{"--set", "resources.limits.memory=512Mi"}, want: "483183820"},
		"decimal with a point": {args: []string{"--set-string", "resources.limits.memory=1.5Gi"}, want: "1449551462"},
		"decimal suffix":       {args: []string{"--set", "resources.limits.memory=2G"}, want: "1800000000"},
		"plain bytes":          {args: []string{"--set", "resources.limits.memory=1000000000"}, want: "900000000"},
		// Without a limit there is nothing to stay under.
		"no limit": {args: []string{"--set", "resources.limits=null"}},
	} {
		t.Run(name, func(t *testing.T) {
			var got []corev1.EnvVar
			for _, e := range controllerEnv(t, tt.args...) {
				if e.Name == "GOMEMLIMIT" {
					got = append(got, e)
				}
			}
			switch {
			case tt.want == "" && len(got) != 0:
				t.Errorf("GOMEMLIMIT = %+v, want none without a memory limit", got)
			case tt.want != "" && (len(got) != 1 || got[0].Value != tt.want || got[0].ValueFrom != nil):
				t.Errorf("GOMEMLIMIT = %+v, want one with value %s (90%% of the limit)", got, tt.want)
			}
		})
	}
	_, err := helm(t, "template", "stowage", chart, "--set", "cloud=fake", "--set", "clusterName=c", "--set", "resources.limits.memory=1e9")
	if err == nil || !strings.Contains(err.Error(), "resources.limits.memory") {
		t.Errorf("a memory limit the chart cannot read was accepted or the error does not name it: %v", err)
	}
}

// A name in extraEnv that the chart also sets replaces the chart's entry:
// two entries with one name make server-side apply fail and a strategic
// merge patch on upgrade drop or keep either one.
func TestExtraEnvReplacesChartEnv(t *testing.T) {
	env := controllerEnv(t,
		"--set", "extraEnv[0].name=GOMEMLIMIT", "--set", "extraEnv[0].value=700MiB",
		"--set", "extraEnv[1].name=STOWAGE_LOG_LEVEL", "--set", "extraEnv[1].value=debug",
		"--set", "extraEnv[2].name=STOWAGE_GANG_SOURCES", "--set", "extraEnv[2].value=jobset")
	count := map[string]int{}
	value := map[string]string{}
	for _, e := range env {
		count[e.Name]++
		value[e.Name] = e.Value
	}
	for name, n := range count {
		if n > 1 {
			t.Errorf("env %s appears %d times", name, n)
		}
	}
	for name, want := range map[string]string{"GOMEMLIMIT": "700MiB", "STOWAGE_LOG_LEVEL": "debug", "STOWAGE_GANG_SOURCES": "jobset", "STOWAGE_CLOUD_PROVIDER": "fake"} {
		if value[name] != want {
			t.Errorf("env %s = %q, want %q", name, value[name], want)
		}
	}

	_, err := helm(t, "template", "stowage", chart, "--set", "cloud=fake", "--set", "clusterName=c",
		"--set", "extraEnv[0].name=STOWAGE_LOG_LEVEL", "--set", "extraEnv[0].value=debug",
		"--set", "extraEnv[1].name=STOWAGE_LOG_LEVEL", "--set", "extraEnv[1].value=info")
	if err == nil || !strings.Contains(err.Error(), "extraEnv sets STOWAGE_LOG_LEVEL twice") {
		t.Errorf("a name repeated in extraEnv was accepted or the error is unclear: %v", err)
	}
}
