package solver

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

var testZones = []string{"us-east-1a", "us-east-1b", "us-east-1c"}

// itSpec describes a test instance type; spot is priced at 40% of on-demand
// unless noSpot is set.
type itSpec struct {
	name    string
	cpu     int64
	memGi   int64
	gpus    int64
	gpuName string
	price   float64
	noSpot  bool
	zones   []string
	mig     map[string]int
}

func makeIT(s itSpec) *cloudprovider.InstanceType {
	zones := s.zones
	if zones == nil {
		zones = testZones
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(s.cpu, resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(s.memGi<<30, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(110, resource.DecimalSI),
	}
	labels := map[string]string{
		v1.LabelInstanceType: s.name,
		v1.LabelArch:         "amd64",
		v1.LabelOS:           "linux",
		v1.LabelInstanceCPU:  strconv.FormatInt(s.cpu, 10),
	}
	it := &cloudprovider.InstanceType{Name: s.name, Labels: labels, Capacity: capacity,
		Overhead: cloudprovider.Overhead{KubeReserved: corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("100m"),
			corev1.ResourceMemory: resource.MustParse("512Mi"),
		}}}
	if s.gpus > 0 {
		capacity[v1.ResourceNvidiaGPU] = *resource.NewQuantity(s.gpus, resource.DecimalSI)
		labels[v1.LabelGPUName] = s.gpuName
		labels[v1.LabelGPUCount] = strconv.FormatInt(s.gpus, 10)
		labels[v1.LabelGPUManufacturer] = "nvidia"
		it.GPU = &cloudprovider.GPU{Manufacturer: "nvidia", Name: s.gpuName, Count: int(s.gpus), MemoryMiB: 24576, MIGProfiles: s.mig}
	}
	for _, z := range zones {
		it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeOnDemand, PricePerHour: s.price, Available: true})
		if !s.noSpot {
			it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: z, CapacityType: v1.CapacityTypeSpot, PricePerHour: s.price * 0.4, Available: true})
		}
	}
	return it
}

// gpuCatalog is the small AWS-like catalog of the seed example (on-demand
// us-east-1 list prices).
func gpuCatalog() []*cloudprovider.InstanceType {
	specs := []itSpec{
		{name: "g5.xlarge", cpu: 4, memGi: 16, gpus: 1, gpuName: "a10g", price: 1.006},
		{name: "g5.12xlarge", cpu: 48, memGi: 192, gpus: 4, gpuName: "a10g", price: 5.672},
		{name: "g5.48xlarge", cpu: 192, memGi: 768, gpus: 8, gpuName: "a10g", price: 16.288},
		{name: "p4d.24xlarge", cpu: 96, memGi: 1152, gpus: 8, gpuName: "a100", price: 21.958, mig: map[string]int{"1g.5gb": 7, "3g.20gb": 2}},
		{name: "p5.48xlarge", cpu: 192, memGi: 2048, gpus: 8, gpuName: "h100", price: 55.04},
		{name: "m5.xlarge", cpu: 4, memGi: 16, price: 0.192},
		{name: "m5.2xlarge", cpu: 8, memGi: 32, price: 0.384},
		{name: "c5.4xlarge", cpu: 16, memGi: 32, price: 0.68},
	}
	out := make([]*cloudprovider.InstanceType, 0, len(specs))
	for _, s := range specs {
		s.noSpot = true
		out = append(out, makeIT(s))
	}
	return out
}

type poolOpt func(*NodePool)

func makePool(name string, types []*cloudprovider.InstanceType, opts ...poolOpt) *NodePool {
	np := &NodePool{NodePool: &v1.NodePool{ObjectMeta: metav1.ObjectMeta{Name: name}}, InstanceTypes: types}
	for _, o := range opts {
		o(np)
	}
	return np
}

func withReq(key string, op corev1.NodeSelectorOperator, values ...string) poolOpt {
	return func(np *NodePool) {
		np.Spec.Template.Spec.Requirements = append(np.Spec.Template.Spec.Requirements,
			v1.NodeSelectorRequirementWithMinValues{Key: key, Operator: op, Values: values})
	}
}

func withTaint(key string) poolOpt {
	return func(np *NodePool) {
		np.Spec.Template.Spec.Taints = append(np.Spec.Template.Spec.Taints, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule})
	}
}

func withWeight(w int32) poolOpt { return func(np *NodePool) { np.Spec.Weight = &w } }

func withLimit(name corev1.ResourceName, q string) poolOpt {
	return func(np *NodePool) {
		if np.Spec.Limits == nil {
			np.Spec.Limits = v1.Limits{}
		}
		np.Spec.Limits[name] = resource.MustParse(q)
	}
}

type podOpt func(*corev1.Pod)

func makePod(name, cpu, mem string, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
		}}}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func makePods(n int, prefix, cpu, mem string, opts ...podOpt) []*corev1.Pod {
	out := make([]*corev1.Pod, n)
	for i := range out {
		out[i] = makePod(fmt.Sprintf("%s-%03d", prefix, i), cpu, mem, opts...)
	}
	return out
}

func gpus(n int64) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests[v1.ResourceNvidiaGPU] = *resource.NewQuantity(n, resource.DecimalSI)
	}
}

func extended(name corev1.ResourceName, n int64) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Resources.Requests[name] = *resource.NewQuantity(n, resource.DecimalSI)
	}
}

func label(k, v string) podOpt { return func(p *corev1.Pod) { p.Labels[k] = v } }

func nodeSelector(k, v string) podOpt {
	return func(p *corev1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		p.Spec.NodeSelector[k] = v
	}
}

func tolerate(key string) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists})
	}
}

func spread(key string, maxSkew int32, hard bool, sel map[string]string) podOpt {
	return func(p *corev1.Pod) {
		w := corev1.ScheduleAnyway
		if hard {
			w = corev1.DoNotSchedule
		}
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: maxSkew, TopologyKey: key, WhenUnsatisfiable: w, LabelSelector: &metav1.LabelSelector{MatchLabels: sel}})
	}
}

func ensureAffinity(p *corev1.Pod) *corev1.Affinity {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	return p.Spec.Affinity
}

func podAffinity(key string, sel map[string]string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.PodAffinity == nil {
			a.PodAffinity = &corev1.PodAffinity{}
		}
		a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: sel}})
	}
}

// hostPort binds port on the host (protocol "" is the API's default, TCP).
func hostPort(port int32, protocol corev1.Protocol) podOpt {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: port, HostPort: port, Protocol: protocol})
	}
}

func podAntiAffinity(key string, sel map[string]string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.PodAntiAffinity == nil {
			a.PodAntiAffinity = &corev1.PodAntiAffinity{}
		}
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
			corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: sel}})
	}
}

func requiredNodeAffinity(key string, op corev1.NodeSelectorOperator, values ...string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.NodeAffinity == nil {
			a.NodeAffinity = &corev1.NodeAffinity{}
		}
		a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}}}
	}
}

func preferredNodeAffinity(weight int32, key string, op corev1.NodeSelectorOperator, values ...string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		if a.NodeAffinity == nil {
			a.NodeAffinity = &corev1.NodeAffinity{}
		}
		a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution,
			corev1.PreferredSchedulingTerm{Weight: weight, Preference: corev1.NodeSelectorTerm{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: key, Operator: op, Values: values}}}})
	}
}

func podGroup(name string, size int) podOpt {
	return func(p *corev1.Pod) {
		p.Labels[v1.LabelPodGroup] = name
		p.Labels[v1.LabelPodGroupSize] = strconv.Itoa(size)
	}
}

func concat(groups ...[]*corev1.Pod) []*corev1.Pod {
	var out []*corev1.Pod
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func preferredPodAffinity(key string, anti bool, sel map[string]string) podOpt {
	return func(p *corev1.Pod) {
		a := ensureAffinity(p)
		term := corev1.WeightedPodAffinityTerm{Weight: 50, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: key, LabelSelector: &metav1.LabelSelector{MatchLabels: sel}}}
		if anti {
			if a.PodAntiAffinity == nil {
				a.PodAntiAffinity = &corev1.PodAntiAffinity{}
			}
			a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution, term)
			return
		}
		if a.PodAffinity == nil {
			a.PodAffinity = &corev1.PodAffinity{}
		}
		a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution = append(a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution, term)
	}
}
