package scheduling

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func container(kv ...string) corev1.Container {
	return corev1.Container{Name: "c", Resources: corev1.ResourceRequirements{Requests: rl(kv...)}}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := func(kv ...string) corev1.Container { c := container(kv...); c.RestartPolicy = &always; return c }
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want corev1.ResourceList
	}{
		{"containers sum", corev1.PodSpec{Containers: []corev1.Container{container("cpu", "1", "memory", "1Gi"), container("cpu", "500m", "nvidia.com/gpu", "1")}},
			rl("cpu", "1500m", "memory", "1Gi", "nvidia.com/gpu", "1", "pods", "1")},
		{"init container larger", corev1.PodSpec{InitContainers: []corev1.Container{container("cpu", "4")}, Containers: []corev1.Container{container("cpu", "1", "memory", "1Gi")}},
			rl("cpu", "4", "memory", "1Gi", "pods", "1")},
		{"sidecar adds to running", corev1.PodSpec{InitContainers: []corev1.Container{sidecar("cpu", "1"), container("cpu", "2")}, Containers: []corev1.Container{container("cpu", "1")}},
			// init peak: sidecar 1 + init 2 = 3; running: 1 + sidecar 1 = 2
			rl("cpu", "3", "pods", "1")},
		{"overhead", corev1.PodSpec{Overhead: rl("cpu", "250m"), Containers: []corev1.Container{container("cpu", "1")}},
			rl("cpu", "1250m", "pods", "1")},
		{"pod-level resources", corev1.PodSpec{Resources: &corev1.ResourceRequirements{Requests: rl("cpu", "8")}, Containers: []corev1.Container{container("cpu", "1", "memory", "2Gi")}},
			rl("cpu", "8", "memory", "2Gi", "pods", "1")},
		{"mig", corev1.PodSpec{Containers: []corev1.Container{container("nvidia.com/mig-1g.5gb", "2")}},
			rl("nvidia.com/mig-1g.5gb", "2", "pods", "1")},
		// Templates are not defaulted by the API server: a limit stands in
		// for the request it lacks, as it would once the pod is created.
		{"limits stand in for missing requests", corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
			Requests: rl("cpu", "1"), Limits: rl("cpu", "4", "memory", "8Gi", "nvidia.com/gpu", "1")}}}},
			rl("cpu", "1", "memory", "8Gi", "nvidia.com/gpu", "1", "pods", "1")},
		{"pod-level limits stand in too", corev1.PodSpec{Resources: &corev1.ResourceRequirements{Limits: rl("cpu", "8")}, Containers: []corev1.Container{container("cpu", "1")}},
			rl("cpu", "8", "pods", "1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PodRequests(&corev1.Pod{Spec: tc.spec})
			want := FromList(tc.want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("PodRequests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResourcesFitsAndRoundTrip(t *testing.T) {
	c := FromList(rl("cpu", "4", "memory", "16Gi", "nvidia.com/mig-1g.5gb", "7"))
	a := FromList(rl("cpu", "2", "memory", "8Gi"))
	b := FromList(rl("cpu", "2", "nvidia.com/mig-1g.5gb", "7"))
	if !FitsSum(&a, &b, &c) {
		t.Errorf("a+b should fit c")
	}
	b2 := FromList(rl("cpu", "2100m"))
	if FitsSum(&a, &b2, &c) {
		t.Errorf("a+b2 exceeds cpu")
	}
	g := FromList(rl("amd.com/gpu", "1"))
	if g.Fits(&c) {
		t.Errorf("a resource the capacity lacks must not fit")
	}
	if diff := cmp.Diff([]corev1.ResourceName{"amd.com/gpu"}, g.Exceeded(&c)); diff != "" {
		t.Errorf("Exceeded (-want +got):\n%s", diff)
	}
	sum := a.Add(b)
	back := FromList(sum.ToList())
	if diff := cmp.Diff(sum, back); diff != "" {
		t.Errorf("ToList round trip (-want +got):\n%s", diff)
	}
}

func TestTolerates(t *testing.T) {
	gpuTaint := corev1.Taint{Key: "nvidia.com/gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	for _, tc := range []struct {
		name        string
		tolerations []corev1.Toleration
		taints      []corev1.Taint
		want        bool
	}{
		{"no taints", nil, nil, true},
		{"not tolerated", nil, []corev1.Taint{gpuTaint}, false},
		{"exists", []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists}}, []corev1.Taint{gpuTaint}, true},
		{"equal value", []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpEqual, Value: "true"}}, []corev1.Taint{gpuTaint}, true},
		{"wrong value", []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpEqual, Value: "false"}}, []corev1.Taint{gpuTaint}, false},
		{"wrong effect", []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}, []corev1.Taint{gpuTaint}, false},
		{"wildcard", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, []corev1.Taint{gpuTaint}, true},
		{"prefer no schedule never blocks", nil, []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectPreferNoSchedule}}, true},
		{"no execute blocks", nil, []corev1.Taint{{Key: "x", Effect: corev1.TaintEffectNoExecute}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Tolerates(tc.tolerations, tc.taints) == nil; got != tc.want {
				t.Errorf("Tolerates = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEffectiveCapacity(t *testing.T) {
	it := &cloudprovider.InstanceType{
		Name:     "p4d.24xlarge",
		Capacity: rl("cpu", "96", "memory", "1152Gi", "nvidia.com/gpu", "8"),
		Overhead: cloudprovider.Overhead{KubeReserved: rl("cpu", "1")},
		GPU:      &cloudprovider.GPU{Manufacturer: "nvidia", Name: "a100", Count: 8, MIGProfiles: map[string]int{"1g.5gb": 7}},
	}
	replicas := int32(4)
	for _, tc := range []struct {
		name      string
		sharing   *v1.GPUSharing
		wantCap   corev1.ResourceList
		wantAlloc corev1.ResourceList
	}{
		{"none", nil, rl("cpu", "96", "memory", "1152Gi", "nvidia.com/gpu", "8"), rl("cpu", "95", "memory", "1152Gi", "nvidia.com/gpu", "8")},
		{"time slicing", &v1.GPUSharing{TimeSlicingReplicas: &replicas}, rl("cpu", "96", "memory", "1152Gi", "nvidia.com/gpu", "32"), rl("cpu", "95", "memory", "1152Gi", "nvidia.com/gpu", "32")},
		{"mig", &v1.GPUSharing{MIGProfile: "1g.5gb"}, rl("cpu", "96", "memory", "1152Gi", "nvidia.com/mig-1g.5gb", "56"), rl("cpu", "95", "memory", "1152Gi", "nvidia.com/mig-1g.5gb", "56")},
		{"unsupported mig profile keeps whole GPUs", &v1.GPUSharing{MIGProfile: "7g.80gb"}, rl("cpu", "96", "memory", "1152Gi", "nvidia.com/gpu", "8"), rl("cpu", "95", "memory", "1152Gi", "nvidia.com/gpu", "8")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gotCap, gotAlloc := EffectiveCapacity(it, tc.sharing)
			if diff := cmp.Diff(FromList(tc.wantCap), FromList(gotCap)); diff != "" {
				t.Errorf("capacity (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(FromList(tc.wantAlloc), FromList(gotAlloc)); diff != "" {
				t.Errorf("allocatable (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDaemonSets(t *testing.T) {
	ds := func(name string, spec corev1.PodSpec) *corev1.Pod {
		spec.Containers = []corev1.Container{container("cpu", "100m")}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
	}
	daemons := []*corev1.Pod{
		ds("everywhere", corev1.PodSpec{}),
		ds("gpu-only", corev1.PodSpec{NodeSelector: map[string]string{v1.LabelGPUName: "h100"}, Tolerations: []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists}}}),
		ds("arm-only", corev1.PodSpec{NodeSelector: map[string]string{v1.LabelArch: "arm64"}}),
	}
	gpuNode := FromLabels(map[string]string{v1.LabelGPUName: "h100", v1.LabelArch: "amd64"})
	taints := []corev1.Taint{{Key: "nvidia.com/gpu", Effect: corev1.TaintEffectNoSchedule}}
	got, _ := DaemonSets(daemons, gpuNode, taints)
	// "everywhere" does not tolerate the GPU taint; only gpu-only runs.
	if want := FromList(rl("cpu", "100m", "pods", "1")); !cmp.Equal(want, got) {
		t.Errorf("overhead on tainted GPU node: %s", cmp.Diff(want, got))
	}
	got, _ = DaemonSets(daemons, gpuNode, nil)
	if want := FromList(rl("cpu", "200m", "pods", "2")); !cmp.Equal(want, got) {
		t.Errorf("overhead on untainted GPU node: %s", cmp.Diff(want, got))
	}
}

func TestPodConstraints(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ml", Labels: map[string]string{"app": "x"}},
		Spec: corev1.PodSpec{
			NodeSelector: map[string]string{v1.LabelArch: "amd64"},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: zone, Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}},
					{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: zone, Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}},
				}},
				PreferredDuringSchedulingIgnoredDuringExecution: []corev1.PreferredSchedulingTerm{
					{Weight: 1, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: v1.LabelCapacityType, Operator: corev1.NodeSelectorOpIn, Values: []string{"spot"}}}}},
					{Weight: 50, Preference: corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: v1.LabelGPUName, Operator: corev1.NodeSelectorOpIn, Values: []string{"h100"}}}}},
				},
			}},
		},
	}
	pc, err := NewPodConstraints(pod)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]v1.NodeSelectorRequirementWithMinValues
	for _, alt := range pc.EffectiveNodeRequirements() {
		got = append(got, alt.ToAPI())
	}
	in := corev1.NodeSelectorOpIn
	want := [][]v1.NodeSelectorRequirementWithMinValues{
		{{Key: v1.LabelArch, Operator: in, Values: []string{"amd64"}}, {Key: v1.LabelCapacityType, Operator: in, Values: []string{"spot"}}, {Key: v1.LabelGPUName, Operator: in, Values: []string{"h100"}}, {Key: zone, Operator: in, Values: []string{"a"}}},
		{{Key: v1.LabelArch, Operator: in, Values: []string{"amd64"}}, {Key: v1.LabelCapacityType, Operator: in, Values: []string{"spot"}}, {Key: v1.LabelGPUName, Operator: in, Values: []string{"h100"}}, {Key: zone, Operator: in, Values: []string{"b"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("alternatives (-want +got):\n%s", diff)
	}
	// Relaxing drops the lightest preference (spot, weight 1) first.
	if !pc.Relax() || len(pc.Preferred) != 1 || pc.Preferred[0].Weight != 50 {
		t.Errorf("after one Relax, preferred = %+v", pc.Preferred)
	}

	bad := pod.DeepCopy()
	bad.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[1].MatchExpressions[0].Operator = "Gt"
	_, err = NewPodConstraints(bad)
	if want := `spec.affinity.nodeAffinity.required.nodeSelectorTerms[1].matchExpressions[0]: key "topology.kubernetes.io/zone": operator Gt needs an integer, got "b"`; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestGangOf(t *testing.T) {
	for _, tc := range []struct {
		labels   map[string]string
		wantName string
		wantSize int
		wantErr  bool
	}{
		{nil, "", 0, false},
		{map[string]string{v1.LabelPodGroup: "train", v1.LabelPodGroupSize: "4"}, "train", 4, false},
		{map[string]string{v1.LabelPodGroup: "train", v1.LabelPodGroupSize: "four"}, "train", 0, true},
		{map[string]string{v1.LabelPodGroup: "train"}, "train", 0, true},
	} {
		name, size, err := GangOf(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tc.labels}})
		if name != tc.wantName || size != tc.wantSize || (err != nil) != tc.wantErr {
			t.Errorf("GangOf(%v) = %q, %d, %v", tc.labels, name, size, err)
		}
	}
}
