// Package scenarios holds the workload sets Stowage's solver is measured on:
// directories of ordinary manifests (run any of them with
// `stowage simulate -f test/scenarios/<name>`) and generated sets too large to
// keep as files. The tests here check each plan's invariants; the benchmarks
// (`make bench`) report speed and cost.
package scenarios

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stowage-k8s/stowage/pkg/manifest"
)

// Scenario is one workload set.
type Scenario struct {
	Name string
	// GPU scenarios are expected to beat the naive one-node-per-pod cost.
	GPU bool
	// Large scenarios are skipped by `go test -short`.
	Large bool
	load  func() (*manifest.Set, error)
}

// Load reads or generates the scenario's manifests; each call returns a fresh set.
func (s Scenario) Load() (*manifest.Set, error) { return s.load() }

// dir is this package's directory, so scenarios load the same from tests,
// benchmarks and other packages.
var dir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

// Dir is the directory of a file-based scenario.
func Dir(name string) string { return filepath.Join(dir, name) }

func fromDir(name string, gpu bool) Scenario {
	return Scenario{Name: name, GPU: gpu, load: func() (*manifest.Set, error) { return manifest.Load(Dir(name)) }}
}

func generated(name string, pods int) Scenario {
	return Scenario{Name: name, Large: true, load: func() (*manifest.Set, error) { return &manifest.Set{Pods: Diverse(pods)}, nil }}
}

// All lists every scenario, file-based first.
func All() []Scenario {
	return []Scenario{
		fromDir("seeds-example", true),
		fromDir("mixed-inference", true),
		fromDir("distributed-training-gang", true),
		fromDir("spot-only-batch", true),
		fromDir("reserved-first", true),
		fromDir("zonal-spread", false),
		fromDir("mig-inference", true),
		fromDir("time-sliced-inference", true),
		fromDir("cpu-web", false),
		generated("diverse-10k", 10_000),
		generated("diverse-100k", 100_000),
		{Name: "gpu-cpu-50k", GPU: true, Large: true, load: func() (*manifest.Set, error) { return &manifest.Set{Pods: GPUMix(50_000)}, nil }},
		{Name: "gpu-cpu-100k", GPU: true, Large: true, load: func() (*manifest.Set, error) { return &manifest.Set{Pods: GPUMix(100_000)}, nil }},
	}
}

// GPUMix generates n pods of an AI cluster: about 4% GPU pods (inference
// replicas of 1, 2 or 4 GPUs with hostname anti-affinity or zone spread, and
// 8-GPU training workers with hostname anti-affinity) and CPU services of many
// sizes (100m to 8 vCPU, 1-8 GiB per vCPU) in workloads of 10-200 replicas,
// a third spread over zones, a sixth with hostname anti-affinity. Fixed seed:
// the same set on every run.
func GPUMix(n int) []*corev1.Pod {
	rng := rand.New(rand.NewPCG(5, 6))
	pods := make([]*corev1.Pod, 0, n)
	cpus := []int64{100, 250, 500, 750, 1000, 2000, 4000, 8000}
	for w := 0; len(pods) < n; w++ {
		var cpuMilli, memMi, gpus int64
		var replicas int
		var spec corev1.PodSpec
		app := "svc-" + strconv.Itoa(w)
		switch k := rng.IntN(100); {
		case k < 6: // GPU inference
			gpus = []int64{1, 1, 1, 2, 4}[rng.IntN(5)]
			cpuMilli, memMi = 4000*gpus, 16384*gpus
			replicas = 8 + rng.IntN(25)
			app = "infer-" + strconv.Itoa(w)
			if rng.IntN(2) == 0 {
				spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(corev1.LabelHostname, app)},
				}}
			} else {
				spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{spread(corev1.LabelTopologyZone, app)}
			}
		case k < 8: // GPU training workers
			gpus = 8
			cpuMilli, memMi = (32+int64(rng.IntN(4))*16)*1000, (256+int64(rng.IntN(4))*128)*1024
			replicas = 2 + rng.IntN(7)
			app = "train-" + strconv.Itoa(w)
			spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(corev1.LabelHostname, app)},
			}}
		default: // CPU services
			cpuMilli = cpus[rng.IntN(len(cpus))]
			memMi = max(128, cpuMilli*int64(1<<rng.IntN(4))*1024/1000)
			replicas = 10 + rng.IntN(191)
			switch rng.IntN(6) {
			case 0, 1:
				spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{spread(corev1.LabelTopologyZone, app)}
			case 2:
				spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
					RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(corev1.LabelHostname, app)},
				}}
				replicas = min(replicas, 60)
			}
		}
		requests := corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewMilliQuantity(cpuMilli, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(memMi<<20, resource.BinarySI),
		}
		if gpus > 0 {
			requests["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
		}
		spec.Containers = []corev1.Container{{Name: "app", Image: "registry.k8s.io/pause", Resources: corev1.ResourceRequirements{Requests: requests}}}
		for r := 0; r < replicas && len(pods) < n; r++ {
			name := app + "-" + strconv.Itoa(r)
			pods = append(pods, &corev1.Pod{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
				ObjectMeta: metav1.ObjectMeta{
					Name: name, Namespace: corev1.NamespaceDefault, UID: types.UID("default/" + name),
					Labels: map[string]string{"app": app},
				},
				Spec:   *spec.DeepCopy(),
				Status: corev1.PodStatus{Phase: corev1.PodPending},
			})
		}
	}
	return pods
}

// Diverse generates n pods in the shape of Karpenter's scheduling benchmark:
// five equal parts with no constraints, zone topology spread, hostname
// topology spread, zone self-affinity and hostname anti-affinity. Requests are
// drawn from small fixed lists with a fixed seed, so the set is the same on
// every run. Constrained pods come in workloads of 50 (spread, affinity) or 10
// (anti-affinity) so that the constraints bind without forcing one node per pod.
func Diverse(n int) []*corev1.Pod {
	rng := rand.New(rand.NewPCG(1, 2))
	cpus := []string{"100m", "250m", "500m", "1", "1500m", "2"}
	mems := []string{"128Mi", "256Mi", "512Mi", "1Gi", "2Gi", "4Gi"}
	part := n / 5
	pods := make([]*corev1.Pod, 0, n)
	for i := range n {
		kind := min(i/max(part, 1), 4)
		var group int
		var spec corev1.PodSpec
		var app string
		switch kind {
		case 0:
			app = "plain"
		case 1:
			group = i / 50
			app = "zone-spread-" + strconv.Itoa(group)
			spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{spread(corev1.LabelTopologyZone, app)}
		case 2:
			group = i / 50
			app = "host-spread-" + strconv.Itoa(group)
			spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{spread(corev1.LabelHostname, app)}
		case 3:
			group = i / 50
			app = "zone-affinity-" + strconv.Itoa(group)
			spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(corev1.LabelTopologyZone, app)},
			}}
		default:
			group = i / 10
			app = "host-anti-affinity-" + strconv.Itoa(group)
			spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{term(corev1.LabelHostname, app)},
			}}
		}
		spec.Containers = []corev1.Container{{
			Name:  "app",
			Image: "registry.k8s.io/pause",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(cpus[rng.IntN(len(cpus))]),
				corev1.ResourceMemory: resource.MustParse(mems[rng.IntN(len(mems))]),
			}},
		}}
		name := fmt.Sprintf("%s-%d", app, i)
		pods = append(pods, &corev1.Pod{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: corev1.NamespaceDefault, UID: types.UID("default/" + name),
				Labels: map[string]string{"app": app},
			},
			Spec:   spec,
			Status: corev1.PodStatus{Phase: corev1.PodPending},
		})
	}
	return pods
}

func spread(key, app string) corev1.TopologySpreadConstraint {
	return corev1.TopologySpreadConstraint{
		MaxSkew:           1,
		TopologyKey:       key,
		WhenUnsatisfiable: corev1.DoNotSchedule,
		LabelSelector:     &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
	}
}

func term(key, app string) corev1.PodAffinityTerm {
	return corev1.PodAffinityTerm{
		TopologyKey:   key,
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}},
	}
}
