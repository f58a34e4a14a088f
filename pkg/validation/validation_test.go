package validation

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

func pool(mut func(*v1.NodePool)) *v1.NodePool {
	np := &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: "gpu"}}
	np.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{
		{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot", "on-demand"}},
	}
	np.Spec.Template.Spec.ExpireAfter = v1.MustParseNillableDuration("720h")
	if mut != nil {
		mut(np)
	}
	return np
}

func req(key string, op corev1.NodeSelectorOperator, values ...string) v1.NodeSelectorRequirementWithMinValues {
	return v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: values}
}

func withRequirements(rs ...v1.NodeSelectorRequirementWithMinValues) func(*v1.NodePool) {
	return func(np *v1.NodePool) { np.Spec.Template.Spec.Requirements = rs }
}

// wantError checks that errs holds an error at field whose text contains msg.
func wantError(t *testing.T, errs field.ErrorList, fieldPath, msg string) {
	t.Helper()
	if fieldPath == "" {
		if len(errs) > 0 {
			t.Errorf("want no error, got %v", errs.ToAggregate())
		}
		return
	}
	for _, e := range errs {
		if e.Field == fieldPath && strings.Contains(e.Error(), msg) {
			return
		}
	}
	t.Errorf("want an error at %s containing %q, got %v", fieldPath, msg, errs.ToAggregate())
}

func TestNodePool(t *testing.T) {
	cases := []struct {
		name         string
		mut          func(*v1.NodePool)
		field, error string
	}{
		{name: "valid"},
		{name: "expireAfter Never", mut: func(np *v1.NodePool) { np.Spec.Template.Spec.ExpireAfter = v1.Never }},
		{name: "taint effect Bogus", mut: func(np *v1.NodePool) {
			np.Spec.Template.Spec.Taints = []corev1.Taint{{Key: "nvidia.com/gpu", Effect: "Bogus"}}
		}, field: "spec.template.spec.taints[0].effect", error: "Unsupported value"},
		{name: "taint key with spaces", mut: func(np *v1.NodePool) {
			np.Spec.Template.Spec.StartupTaints = []corev1.Taint{{Key: "bad key!!", Effect: corev1.TaintEffectNoSchedule}}
		}, field: "spec.template.spec.startupTaints[0].key", error: "qualified name"},
		{name: "requirement key with spaces", mut: withRequirements(req("bad key!!", corev1.NodeSelectorOpExists)),
			field: "spec.template.spec.requirements[0].key", error: "qualified name"},
		{name: "operator Bogus", mut: withRequirements(req("team", "Bogus", "a")),
			field: "spec.template.spec.requirements[0].operator", error: "Unsupported value"},
		{name: "Gt on a word", mut: withRequirements(req(v1.LabelCapacityType, corev1.NodeSelectorOpGt, "spot")),
			field: "spec.template.spec.requirements[0].values", error: "one integer value"},
		{name: "Gt on 20 digits", mut: withRequirements(req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "12345678901234567890")),
			field: "spec.template.spec.requirements[0].values", error: "at most 18 digits"},
		{name: "In and NotIn the same value", mut: withRequirements(req("team", corev1.NodeSelectorOpIn, "a"), req("team", corev1.NodeSelectorOpNotIn, "a")),
			field: "spec.template.spec.requirements[0]", error: "contradict"},
		{name: "two disjoint Ins", mut: withRequirements(req("team", corev1.NodeSelectorOpIn, "a"), req("team", corev1.NodeSelectorOpIn, "b")),
			field: "spec.template.spec.requirements[0]", error: "contradict"},
		{name: "In below a Gt", mut: withRequirements(req(v1.LabelGPUCount, corev1.NodeSelectorOpIn, "1", "2"), req(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "4")),
			field: "spec.template.spec.requirements[0]", error: "contradict"},
		{name: "In and NotIn leaving a value", mut: withRequirements(req("team", corev1.NodeSelectorOpIn, "a", "b"), req("team", corev1.NodeSelectorOpNotIn, "a"))},
		{name: "Exists and DoesNotExist", mut: withRequirements(req("team", corev1.NodeSelectorOpExists), req("team", corev1.NodeSelectorOpDoesNotExist)),
			field: "spec.template.spec.requirements[0]", error: "contradict"},
		{name: "unknown capacity type", mut: withRequirements(req(v1.LabelCapacityType, corev1.NodeSelectorOpIn, "preemptible")),
			field: "spec.template.spec.requirements[0].values[0]", error: "Unsupported value"},
		{name: "negative limit", mut: func(np *v1.NodePool) { np.Spec.Limits = v1.Limits{"cpu": resource.MustParse("-5")} },
			field: "spec.limits[cpu]", error: "must not be negative"},
		{name: "limit of 1e400", mut: func(np *v1.NodePool) { np.Spec.Limits = v1.Limits{"nvidia.com/gpu": resource.MustParse("1e400")} },
			field: "spec.limits[nvidia.com/gpu]", error: "more than Stowage can count"},
		{name: "limit of 99999999Ei", mut: func(np *v1.NodePool) { np.Spec.Limits = v1.Limits{"memory": resource.MustParse("99999999Ei")} },
			field: "spec.limits[memory]", error: "more than Stowage can count"},
		{name: "cpu limit at 9T", mut: func(np *v1.NodePool) { np.Spec.Limits = v1.Limits{"cpu": resource.MustParse("9T")} }},
		{name: "cpu limit above 9T", mut: func(np *v1.NodePool) { np.Spec.Limits = v1.Limits{"cpu": resource.MustParse("10T")} },
			field: "spec.limits[cpu]", error: "at most 9T"},
		{name: "weight 1000", mut: func(np *v1.NodePool) { np.Spec.Weight = ptr.To[int32](1000) },
			field: "spec.weight", error: "from 1 to 100"},
		{name: "budget for every reason the API names", mut: func(np *v1.NodePool) {
			np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1", Reasons: []v1.DisruptionReason{v1.DisruptionReasonUnderutilized,
				v1.DisruptionReasonEmpty, v1.DisruptionReasonDrifted, v1.DisruptionReasonExpired, v1.DisruptionReasonUnhealthy}}}
		}},
		{name: "budget reason Bogus", mut: func(np *v1.NodePool) {
			np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1", Reasons: []v1.DisruptionReason{"Bogus"}}}
		}, field: "spec.disruption.budgets[0].reasons[0]", error: "Unsupported value"},
		{name: "budget 150%", mut: func(np *v1.NodePool) { np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "150%"}} },
			field: "spec.disruption.budgets[0].nodes", error: "percentage from 0% to 100%"},
		{name: "cron hour 25", mut: budget("0 25 * * *"), field: "spec.disruption.budgets[0].schedule", error: "not a valid cron expression"},
		{name: "cron descriptor with a suffix", mut: budget("@dailyXYZ"), field: "spec.disruption.budgets[0].schedule", error: "unknown descriptor"},
		{name: "cron @every", mut: budget("@every 1h"), field: "spec.disruption.budgets[0].schedule", error: "unknown descriptor"},
		{name: "cron backwards range", mut: budget("0 17-9 * * *"), field: "spec.disruption.budgets[0].schedule", error: "not a valid cron expression"},
		{name: "cron with a time zone", mut: budget("CRON_TZ=UTC 0 9 * *"), field: "spec.disruption.budgets[0].schedule", error: "UTC"},
		{name: "cron with names", mut: budget("*/15 9-17 1,15 jan-jun mon-fri")},
		{name: "negative budget duration", mut: func(np *v1.NodePool) {
			np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1", Schedule: ptr.To("@daily"), Duration: &metav1.Duration{Duration: -5 * time.Second}}}
		}, field: "spec.disruption.budgets[0].duration", error: "negative"},
		{name: "schedule without duration", mut: func(np *v1.NodePool) {
			np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "1", Schedule: ptr.To("@daily")}}
		},
			field: "spec.disruption.budgets[0]", error: "set together"},
		{name: "nodeClassRef to Karpenter's kind", mut: func(np *v1.NodePool) {
			np.Spec.Template.Spec.NodeClassRef = &v1.NodeClassReference{Group: "karpenter.k8s.aws", Kind: "EC2NodeClass", Name: "default"}
		}, field: "spec.template.spec.nodeClassRef", error: "a provider serves"},
		{name: "label in the stowage.dev domain", mut: func(np *v1.NodePool) { np.Spec.Template.ObjectMeta.Labels = map[string]string{"stowage.dev/team": "a"} },
			field: "spec.template.metadata.labels[stowage.dev/team]", error: "reserved"},
		{name: "the hostname as a template label", mut: func(np *v1.NodePool) {
			np.Spec.Template.ObjectMeta.Labels = map[string]string{"kubernetes.io/hostname": "gpu"}
		}, field: "spec.template.metadata.labels[kubernetes.io/hostname]", error: "come from each node's machine"},
		{name: "label value with spaces", mut: func(np *v1.NodePool) { np.Spec.Template.ObjectMeta.Labels = map[string]string{"team": "a b"} },
			field: "spec.template.metadata.labels[team]", error: "alphanumeric"},
		{name: "negative minNodeLifetime", mut: func(np *v1.NodePool) { np.Spec.Disruption.MinNodeLifetime = &metav1.Duration{Duration: -time.Second} },
			field: "spec.disruption.minNodeLifetime", error: "negative"},
		{name: "time slicing and MIG", mut: func(np *v1.NodePool) {
			np.Spec.Template.Spec.GPU = &v1.GPUSharing{TimeSlicingReplicas: ptr.To[int32](4), MIGProfile: "1g.10gb"}
		}, field: "spec.template.spec", error: "cannot both be set"},
		{name: "name with capitals", mut: func(np *v1.NodePool) { np.Name = "GPU" }, field: "metadata.name", error: "lowercase"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, NodePool(pool(tc.mut)), tc.field, tc.error)
		})
	}
}

func budget(schedule string) func(*v1.NodePool) {
	return func(np *v1.NodePool) {
		np.Spec.Disruption.Budgets = []v1.Budget{{Nodes: "0", Schedule: &schedule, Duration: &metav1.Duration{Duration: time.Hour}}}
	}
}

// A stored value Go cannot hold (issue 10 #1) is reported where it is.
func TestNodePoolStoredValues(t *testing.T) {
	var np v1.NodePool
	if err := np.UnmarshalJSON([]byte(`{"metadata": {"name": "a"}, "spec": {"template": {"spec": {"expireAfter": "99999999999999h"}}}}`)); err != nil {
		t.Fatal(err)
	}
	wantError(t, NodePool(&np), "spec.template.spec.expireAfter", "99999999999999h")

	np = v1.NodePool{}
	if err := np.UnmarshalJSON([]byte(`{"metadata": {"name": "b"}, "spec": {"template": {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}], "terminationGracePeriod": "soon"}}}}`)); err != nil {
		t.Fatal(err)
	}
	wantError(t, NodePool(&np), "spec.template.spec.terminationGracePeriod", "does not decode")
}

func TestNodeClaim(t *testing.T) {
	claim := func(mut func(*v1.NodeClaim)) *v1.NodeClaim {
		nc := &v1.NodeClaim{ObjectMeta: metav1.ObjectMeta{Name: "c"}}
		nc.Spec.Offerings = []v1.OfferingChoice{{InstanceType: "g5.xlarge", Zone: "us-east-1a", CapacityType: "spot", PricePerHour: "0.42"}}
		mut(nc)
		return nc
	}
	cases := []struct {
		name         string
		mut          func(*v1.NodeClaim)
		field, error string
	}{
		{name: "valid", mut: func(*v1.NodeClaim) {}},
		{name: "negative request", mut: func(nc *v1.NodeClaim) {
			nc.Spec.Resources.Requests = corev1.ResourceList{"cpu": resource.MustParse("-1")}
		}, field: "spec.resources.requests[cpu]", error: "negative"},
		{name: "negative price", mut: func(nc *v1.NodeClaim) { nc.Spec.Offerings[0].PricePerHour = "-1" },
			field: "spec.offerings[0].pricePerHour", error: "non-negative"},
		{name: "negative status price", mut: func(nc *v1.NodeClaim) { nc.Status.PricePerHour = "-0.5" },
			field: "status.pricePerHour", error: "non-negative"},
		{name: "no offerings", mut: func(nc *v1.NodeClaim) { nc.Spec.Offerings = nil }, field: "spec.offerings", error: "at least one"},
		{name: "placement group with capitals", mut: func(nc *v1.NodeClaim) { nc.Spec.Placement = &v1.Placement{Group: "Gang"} },
			field: "spec.placement.group", error: "DNS label"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, NodeClaim(claim(tc.mut)), tc.field, tc.error)
		})
	}
}

func TestPodSpec(t *testing.T) {
	container := func(reqs corev1.ResourceList) corev1.Container {
		return corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{Requests: reqs}}
	}
	path := field.NewPath("spec", "template", "spec")
	cases := []struct {
		name         string
		spec         corev1.PodSpec
		field, error string
	}{
		{name: "valid", spec: corev1.PodSpec{Containers: []corev1.Container{container(corev1.ResourceList{"cpu": resource.MustParse("8"), "nvidia.com/gpu": resource.MustParse("8")})}}},
		{name: "cpu 1e400", spec: corev1.PodSpec{Containers: []corev1.Container{container(corev1.ResourceList{"cpu": resource.MustParse("1e400")})}},
			field: "spec.template.spec.containers[0].resources.requests[cpu]", error: "more than Stowage can count"},
		{name: "memory 99999999Ei", spec: corev1.PodSpec{Containers: []corev1.Container{container(corev1.ResourceList{"memory": resource.MustParse("99999999Ei")})}},
			field: "spec.template.spec.containers[0].resources.requests[memory]", error: "more than Stowage can count"},
		{name: "negative gpu in an init container", spec: corev1.PodSpec{InitContainers: []corev1.Container{container(corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("-1")})}},
			field: "spec.template.spec.initContainers[0].resources.requests[nvidia.com/gpu]", error: "negative"},
		{name: "sum beyond the bound", spec: corev1.PodSpec{Containers: []corev1.Container{
			container(corev1.ResourceList{"memory": resource.MustParse("5P")}), container(corev1.ResourceList{"memory": resource.MustParse("5P")}),
		}}, field: "spec.template.spec", error: "add up to more"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, PodSpec(path, &tc.spec), tc.field, tc.error)
		})
	}
}

func TestGang(t *testing.T) {
	path := field.NewPath("metadata", "labels")
	cases := []struct {
		name         string
		labels       map[string]string
		field, error string
	}{
		{name: "no gang", labels: map[string]string{"app": "x"}},
		{name: "gang", labels: map[string]string{v1.LabelPodGroup: "train", v1.LabelPodGroupSize: "8"}},
		{name: "size zero", labels: map[string]string{v1.LabelPodGroup: "train", v1.LabelPodGroupSize: "0"},
			field: "metadata.labels[stowage.dev/pod-group-size]", error: "positive integer"},
		{name: "size in words", labels: map[string]string{v1.LabelPodGroup: "train", v1.LabelPodGroupSize: "eight"},
			field: "metadata.labels[stowage.dev/pod-group-size]", error: "positive integer"},
		{name: "size without a group", labels: map[string]string{v1.LabelPodGroupSize: "8"},
			field: "metadata.labels[stowage.dev/pod-group]", error: "no name"},
		{name: "group without a size", labels: map[string]string{v1.LabelPodGroup: "train"},
			field: "metadata.labels[stowage.dev/pod-group-size]", error: "needs its size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, Gang(path, tc.labels), tc.field, tc.error)
		})
	}
}
