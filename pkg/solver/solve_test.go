package solver

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// cpuCatalog: three sizes, priced linearly, spot at 40%.
func cpuCatalog() []*cloudprovider.InstanceType {
	return []*cloudprovider.InstanceType{
		makeIT(itSpec{name: "c.large", cpu: 2, memGi: 4, price: 0.10}),
		makeIT(itSpec{name: "c.xlarge", cpu: 4, memGi: 8, price: 0.20}),
		makeIT(itSpec{name: "c.4xlarge", cpu: 16, memGi: 32, price: 0.80}),
	}
}

// outcome is the part of a plan the table tests compare.
type outcome struct {
	Bound  map[string]string // pod -> existing node
	Nodes  []string          // "pool/type/zone/capacity-type: pods", sorted
	Failed map[string]string // pod -> reason
}

func outcomeOf(p *Plan) outcome {
	o := outcome{}
	for _, b := range p.Bindings {
		if o.Bound == nil {
			o.Bound = map[string]string{}
		}
		o.Bound[b.Pod.Name] = b.NodeName
	}
	for _, n := range p.NewNodes {
		c := n.Choices[0]
		var pods []string
		for _, pod := range n.Pods {
			pods = append(pods, pod.Name)
		}
		sort.Strings(pods)
		o.Nodes = append(o.Nodes, fmt.Sprintf("%s/%s/%s/%s: %s", n.NodePool, c.InstanceType.Name, c.Offering.Zone, c.Offering.CapacityType, strings.Join(pods, " ")))
	}
	sort.Strings(o.Nodes)
	for _, u := range p.Unschedulable {
		if o.Failed == nil {
			o.Failed = map[string]string{}
		}
		o.Failed[u.Pod.Name] = u.Reason
	}
	return o
}

func existingNode(name, zone, cpu, mem string, pods ...*corev1.Pod) *Node {
	return &Node{Name: name, Labels: map[string]string{v1.LabelZone: zone, v1.LabelHostname: name, v1.LabelCapacityType: v1.CapacityTypeOnDemand},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem), corev1.ResourcePods: resource.MustParse("110")},
		Pods:        pods}
}

func TestSolveConstraints(t *testing.T) {
	a, b, c := testZones[0], testZones[1], testZones[2]
	app := func(name string) map[string]string { return map[string]string{"app": name} }
	onDemand := withReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)
	for _, tc := range []struct {
		name string
		snap *Snapshot
		want outcome
	}{
		{
			name: "existing capacity first",
			snap: &Snapshot{
				Pods:      makePods(2, "web", "1", "1Gi"),
				Nodes:     []*Node{existingNode("n1", b, "4", "8Gi")},
				NodePools: []*NodePool{makePool("default", cpuCatalog())},
			},
			want: outcome{Bound: map[string]string{"web-000": "n1", "web-001": "n1"}},
		},
		{
			name: "cheapest offering: spot, packed on one node",
			snap: &Snapshot{Pods: makePods(3, "web", "1", "1Gi"), NodePools: []*NodePool{makePool("default", cpuCatalog())}},
			want: outcome{Nodes: []string{"default/c.xlarge/us-east-1a/spot: web-000 web-001 web-002"}},
		},
		{
			name: "pool requirement narrows capacity type",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi"), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{"default/c.large/us-east-1a/on-demand: web-000"}},
		},
		{
			name: "node selector on zone",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi", nodeSelector(v1.LabelZone, c)), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{"default/c.large/us-east-1c/on-demand: web-000"}},
		},
		{
			name: "zone no pool offers",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi", nodeSelector(v1.LabelZone, "us-east-1z")), NodePools: []*NodePool{makePool("default", cpuCatalog())}},
			want: outcome{Failed: map[string]string{"web-000": "requires zone us-east-1z which no nodepool offers"}},
		},
		{
			name: "required node affinity alternatives",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi", requiredNodeAffinity(v1.LabelInstanceType, corev1.NodeSelectorOpIn, "c.xlarge")), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{"default/c.xlarge/us-east-1a/on-demand: web-000"}},
		},
		{
			name: "preferred affinity honoured when possible",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi", preferredNodeAffinity(50, v1.LabelZone, corev1.NodeSelectorOpIn, b)), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{"default/c.large/us-east-1b/on-demand: web-000"}},
		},
		{
			name: "preferred affinity relaxed when impossible",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi", preferredNodeAffinity(50, v1.LabelZone, corev1.NodeSelectorOpIn, "us-east-1z")), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{"default/c.large/us-east-1a/on-demand: web-000"}},
		},
		{
			name: "taint not tolerated",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi"), NodePools: []*NodePool{makePool("gpu", gpuCatalog(), withTaint("nvidia.com/gpu"))}},
			want: outcome{Failed: map[string]string{"web-000": "nodepool gpu: taint nvidia.com/gpu:NoSchedule not tolerated"}},
		},
		{
			name: "tainted existing node skipped",
			snap: &Snapshot{
				Pods: makePods(1, "web", "1", "1Gi"),
				Nodes: []*Node{func() *Node {
					n := existingNode("n1", a, "4", "8Gi")
					n.Taints = []corev1.Taint{{Key: "dedicated", Effect: corev1.TaintEffectNoExecute}}
					return n
				}()},
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Nodes: []string{"default/c.large/us-east-1a/on-demand: web-000"}},
		},
		{
			name: "no type big enough",
			snap: &Snapshot{Pods: makePods(1, "train", "8", "64Gi", gpus(16)), NodePools: []*NodePool{makePool("gpu", gpuCatalog())}},
			want: outcome{Failed: map[string]string{"train-000": "no instance type in nodepool gpu has 16 nvidia.com/gpu"}},
		},
		{
			name: "limits reached",
			snap: &Snapshot{
				Pods:      makePods(2, "train", "8", "64Gi", gpus(8)),
				NodePools: []*NodePool{makePool("gpu", gpuCatalog(), withLimit(v1.ResourceNvidiaGPU, "8"))},
			},
			want: outcome{
				Nodes:  []string{"gpu/g5.48xlarge/us-east-1a/on-demand: train-000"},
				Failed: map[string]string{"train-001": "nodepool gpu limits reached: nvidia.com/gpu"},
			},
		},
		{
			name: "limits count existing usage",
			snap: &Snapshot{
				Pods: makePods(1, "train", "8", "64Gi", gpus(8)),
				NodePools: []*NodePool{func() *NodePool {
					p := makePool("gpu", gpuCatalog(), withLimit(v1.ResourceNvidiaGPU, "8"))
					p.Usage = corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("4")}
					return p
				}()},
			},
			want: outcome{Failed: map[string]string{"train-000": "nodepool gpu limits reached: nvidia.com/gpu"}},
		},
		{
			name: "heavier pool first even when pricier",
			snap: &Snapshot{Pods: makePods(1, "web", "1", "1Gi"), NodePools: []*NodePool{
				makePool("cheap", cpuCatalog(), onDemand),
				makePool("preferred", []*cloudprovider.InstanceType{makeIT(itSpec{name: "p.large", cpu: 2, memGi: 4, price: 5, noSpot: true})}, withWeight(50)),
			}},
			want: outcome{Nodes: []string{"preferred/p.large/us-east-1a/on-demand: web-000"}},
		},
		{
			name: "lighter pool for what the heavier cannot take",
			snap: &Snapshot{Pods: makePods(1, "big", "8", "16Gi"), NodePools: []*NodePool{
				makePool("cheap", cpuCatalog(), onDemand),
				makePool("preferred", []*cloudprovider.InstanceType{makeIT(itSpec{name: "p.large", cpu: 2, memGi: 4, price: 5, noSpot: true})}, withWeight(50)),
			}},
			want: outcome{Nodes: []string{"cheap/c.4xlarge/us-east-1a/on-demand: big-000"}},
		},
		{
			name: "zone spread",
			snap: &Snapshot{Pods: makePods(6, "web", "1", "1Gi", label("app", "web"), spread(v1.LabelZone, 1, true, app("web"))), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{
				"default/c.xlarge/us-east-1a/on-demand: web-000 web-003",
				"default/c.xlarge/us-east-1b/on-demand: web-001 web-004",
				"default/c.xlarge/us-east-1c/on-demand: web-002 web-005",
			}},
		},
		{
			name: "zone spread counts existing pods",
			snap: &Snapshot{
				Pods:      makePods(2, "web", "1", "1Gi", label("app", "web"), spread(v1.LabelZone, 1, true, app("web"))),
				Nodes:     []*Node{existingNode("n1", a, "1", "2Gi", makePod("old", "1", "1Gi", label("app", "web")))},
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Nodes: []string{"default/c.large/us-east-1b/on-demand: web-000", "default/c.large/us-east-1c/on-demand: web-001"}},
		},
		{
			name: "hostname anti-affinity",
			snap: &Snapshot{Pods: makePods(3, "db", "1", "1Gi", label("app", "db"), podAntiAffinity(v1.LabelHostname, app("db"))), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{
				"default/c.large/us-east-1a/on-demand: db-000",
				"default/c.large/us-east-1a/on-demand: db-001",
				"default/c.large/us-east-1a/on-demand: db-002",
			}},
		},
		{
			name: "anti-affinity of an existing pod is symmetric",
			snap: &Snapshot{
				Pods: makePods(1, "web", "1", "1Gi", label("app", "web")),
				Nodes: []*Node{existingNode("n1", a, "4", "8Gi", makePod("loner", "1", "1Gi", label("app", "loner"),
					podAntiAffinity(v1.LabelHostname, app("web"))))},
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Nodes: []string{"default/c.large/us-east-1a/on-demand: web-000"}},
		},
		{
			name: "host port: one pod per node, other protocols and ports beside it",
			snap: &Snapshot{
				Pods: slices.Concat(
					makePods(2, "agent", "1", "1Gi", hostPort(9100, "")),
					makePods(1, "dns", "1", "1Gi", hostPort(9100, corev1.ProtocolUDP)),
					makePods(1, "proxy", "1", "1Gi", hostPort(8080, corev1.ProtocolTCP)),
				),
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Nodes: []string{
				"default/c.large/us-east-1a/on-demand: agent-001",
				"default/c.xlarge/us-east-1a/on-demand: agent-000 dns-000 proxy-000",
			}},
		},
		{
			name: "host port taken by a running pod",
			snap: &Snapshot{
				Pods:      slices.Concat(makePods(1, "agent", "1", "1Gi", hostPort(9100, "")), makePods(1, "web", "1", "1Gi")),
				Nodes:     []*Node{existingNode("n1", a, "4", "8Gi", makePod("agent-old", "1", "1Gi", hostPort(9100, corev1.ProtocolTCP)))},
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{
				Bound: map[string]string{"web-000": "n1"},
				Nodes: []string{"default/c.large/us-east-1a/on-demand: agent-000"},
			},
		},
		{
			name: "host port bound by a DaemonSet on the pool's nodes",
			snap: &Snapshot{
				Pods: slices.Concat(makePods(1, "agent", "1", "1Gi", hostPort(9100, "")),
					makePods(1, "tolerant", "1", "1Gi", hostPort(9100, ""), tolerate("dedicated"))),
				DaemonSetPods: []*corev1.Pod{makePod("node-exporter", "100m", "64Mi", hostPort(9100, corev1.ProtocolTCP))},
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand),
					makePool("dedicated", cpuCatalog(), onDemand, withTaint("dedicated"))},
			},
			want: outcome{
				Nodes:  []string{"dedicated/c.large/us-east-1a/on-demand: tolerant-000"},
				Failed: map[string]string{"agent-000": "nodepool dedicated: taint dedicated:NoSchedule not tolerated; nodepool default: host port TCP/9100 is bound by a DaemonSet pod on its c.large nodes"},
			},
		},
		{
			name: "zone anti-affinity",
			snap: &Snapshot{Pods: makePods(4, "db", "1", "1Gi", label("app", "db"), podAntiAffinity(v1.LabelZone, app("db"))), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{
				Nodes:  []string{"default/c.large/us-east-1a/on-demand: db-000", "default/c.large/us-east-1b/on-demand: db-001", "default/c.large/us-east-1c/on-demand: db-002"},
				Failed: map[string]string{"db-003": "nodepool default: topology spread or pod (anti-)affinity cannot be satisfied"},
			},
		},
		{
			name: "zone affinity follows the first pod",
			snap: &Snapshot{
				Pods:      makePods(3, "cache", "2", "1Gi", label("app", "cache"), podAffinity(v1.LabelZone, app("cache"))),
				Nodes:     []*Node{existingNode("n1", c, "1", "1Gi", makePod("cache-old", "100m", "100Mi", label("app", "cache")))},
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			// One 2-CPU pod per c.xlarge ($0.20 each) beats a c.4xlarge ($0.80) for three.
			want: outcome{Nodes: []string{"default/c.xlarge/us-east-1c/on-demand: cache-000", "default/c.xlarge/us-east-1c/on-demand: cache-001", "default/c.xlarge/us-east-1c/on-demand: cache-002"}},
		},
		{
			name: "hostname spread",
			snap: &Snapshot{Pods: makePods(4, "web", "1", "1Gi", label("app", "web"), spread(v1.LabelHostname, 2, true, app("web"))), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Nodes: []string{"default/c.xlarge/us-east-1a/on-demand: web-000 web-001", "default/c.xlarge/us-east-1a/on-demand: web-002 web-003"}},
		},
		{
			name: "gang below its size waits",
			snap: &Snapshot{Pods: makePods(3, "job", "1", "1Gi", podGroup("job", 4)), NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)}},
			want: outcome{Failed: map[string]string{
				"job-000": "pod group default/job has 3 of its 4 pods", "job-001": "pod group default/job has 3 of its 4 pods", "job-002": "pod group default/job has 3 of its 4 pods",
			}},
		},
		{
			name: "gang in one zone, where it is cheapest",
			snap: &Snapshot{
				Pods: makePods(2, "job", "16", "16Gi", podGroup("job", 2)),
				NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{
					makeIT(itSpec{name: "x.4xlarge", cpu: 32, memGi: 64, price: 1, noSpot: true, zones: []string{a, b}}),
					makeIT(itSpec{name: "y.4xlarge", cpu: 32, memGi: 64, price: 0.5, noSpot: true, zones: []string{c}}),
				})},
			},
			want: outcome{Nodes: []string{"default/y.4xlarge/us-east-1c/on-demand: job-000", "default/y.4xlarge/us-east-1c/on-demand: job-001"}},
		},
		{
			name: "gang that does not fit anywhere gets nothing",
			snap: &Snapshot{
				Pods:      concat(makePods(1, "job-a", "1", "1Gi", podGroup("job", 2)), makePods(1, "job-b", "64", "1Gi", podGroup("job", 2))),
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Failed: map[string]string{
				"job-a-000": "pod group default/job: its 2 pods do not fit together in any one zone (no instance type in nodepool default has 64 cpu)",
				"job-b-000": "pod group default/job: its 2 pods do not fit together in any one zone (no instance type in nodepool default has 64 cpu)",
			}},
		},
		{
			name: "reservation used first while it lasts",
			snap: &Snapshot{
				Pods: makePods(2, "train", "8", "64Gi", gpus(8), label("app", "t"), podAntiAffinity(v1.LabelHostname, app("t"))),
				NodePools: []*NodePool{makePool("gpu", func() []*cloudprovider.InstanceType {
					cat := gpuCatalog()
					for _, it := range cat {
						if it.Name == "p5.48xlarge" {
							it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: b, CapacityType: v1.CapacityTypeReserved, PricePerHour: 0.001, Available: true, ReservationID: "cr-1", ReservedCount: 1})
						}
					}
					return cat
				}())},
			},
			want: outcome{Nodes: []string{"gpu/g5.48xlarge/us-east-1a/on-demand: train-001", "gpu/p5.48xlarge/us-east-1b/reserved: train-000"}},
		},
		{
			name: "MIG pool advertises MIG slices",
			snap: &Snapshot{
				Pods: makePods(10, "infer", "1", "4Gi", extended("nvidia.com/mig-1g.5gb", 1)),
				NodePools: []*NodePool{func() *NodePool {
					p := makePool("mig", gpuCatalog())
					p.Spec.Template.Spec.GPU = &v1.GPUSharing{MIGProfile: "1g.5gb"}
					return p
				}()},
			},
			want: outcome{Nodes: []string{"mig/p4d.24xlarge/us-east-1a/on-demand: infer-000 infer-001 infer-002 infer-003 infer-004 infer-005 infer-006 infer-007 infer-008 infer-009"}},
		},
		{
			name: "time slicing multiplies GPUs",
			snap: &Snapshot{
				Pods: makePods(4, "infer", "500m", "2Gi", gpus(1)),
				NodePools: []*NodePool{func() *NodePool {
					p := makePool("shared", gpuCatalog())
					four := int32(4)
					p.Spec.Template.Spec.GPU = &v1.GPUSharing{TimeSlicingReplicas: &four}
					return p
				}()},
			},
			want: outcome{Nodes: []string{"shared/g5.xlarge/us-east-1a/on-demand: infer-000 infer-001 infer-002 infer-003"}},
		},
		{
			name: "DaemonSet overhead sizes the node",
			snap: &Snapshot{
				Pods:          makePods(1, "web", "1500m", "1Gi"),
				DaemonSetPods: []*corev1.Pod{makePod("agent", "500m", "256Mi")},
				NodePools:     []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Nodes: []string{"default/c.xlarge/us-east-1a/on-demand: web-000"}},
		},
		{
			name: "pod pinned to a full node's hostname gets no new node",
			snap: &Snapshot{
				Pods:      makePods(1, "web", "2", "1Gi", nodeSelector(v1.LabelHostname, "n1")),
				Nodes:     []*Node{existingNode("n1", a, "1", "8Gi")},
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Failed: map[string]string{"web-000": "nodepool default: no instance type matches the pod's node requirements (kubernetes.io/hostname In [n1])"}},
		},
		{
			// web's zone spread sends its new pod to a, whose only type has
			// 8 CPUs; the other app's soft spread counts web by CPU count,
			// so the node also settles that label, and the cheaper 4-CPU
			// value (offered in b) must not be taken for it.
			name: "a new node's topology values are settled together",
			snap: &Snapshot{
				Pods: concat(
					makePods(1, "web", "1", "1Gi", label("app", "web"), spread(v1.LabelZone, 1, true, app("web"))),
					makePods(1, "batch", "1", "1Gi", spread(v1.LabelInstanceCPU, 1, false, app("web"))),
				),
				Nodes: []*Node{existingNode("n1", b, "1", "8Gi", makePod("web-running", "1", "1Gi", label("app", "web")))},
				NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{
					makeIT(itSpec{name: "x.2xlarge", cpu: 8, memGi: 16, price: 0.30, noSpot: true, zones: []string{a}}),
					makeIT(itSpec{name: "x.xlarge", cpu: 4, memGi: 8, price: 0.12, noSpot: true, zones: []string{b}}),
				})},
			},
			want: outcome{Nodes: []string{
				"default/x.2xlarge/us-east-1a/on-demand: batch-000 web-000",
			}},
		},
		{
			name: "bad pod constraint is reported, not fatal",
			snap: &Snapshot{
				Pods:      makePods(1, "web", "1", "1Gi", requiredNodeAffinity("gpus", corev1.NodeSelectorOpGt, "many")),
				NodePools: []*NodePool{makePool("default", cpuCatalog(), onDemand)},
			},
			want: outcome{Failed: map[string]string{"web-000": `spec.affinity.nodeAffinity.required.nodeSelectorTerms[0].matchExpressions[0]: key "gpus": operator Gt needs an integer, got "many"`}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := Solve(context.Background(), tc.snap)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, outcomeOf(plan)); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
			if errs := validate(tc.snap, plan); len(errs) > 0 {
				t.Errorf("violations:\n  %s", strings.Join(errs, "\n  "))
			}
		})
	}
}

func TestSolveChoices(t *testing.T) {
	snap := &Snapshot{Pods: makePods(1, "web", "1", "1Gi"), NodePools: []*NodePool{makePool("default", cpuCatalog())}}
	plan, err := Solve(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range plan.NewNodes[0].Choices {
		got = append(got, fmt.Sprintf("%s %.2f", c.Offering.ID(c.InstanceType.Name), c.Offering.PricePerHour))
	}
	want := []string{
		"c.large/us-east-1a/spot 0.04", "c.large/us-east-1b/spot 0.04", "c.large/us-east-1c/spot 0.04",
		"c.xlarge/us-east-1a/spot 0.08", "c.xlarge/us-east-1b/spot 0.08", "c.xlarge/us-east-1c/spot 0.08",
		"c.large/us-east-1a/on-demand 0.10", "c.large/us-east-1b/on-demand 0.10", "c.large/us-east-1c/on-demand 0.10",
		"c.xlarge/us-east-1a/on-demand 0.20", "c.xlarge/us-east-1b/on-demand 0.20", "c.xlarge/us-east-1c/on-demand 0.20",
		"c.4xlarge/us-east-1a/spot 0.32", "c.4xlarge/us-east-1b/spot 0.32", "c.4xlarge/us-east-1c/spot 0.32",
		"c.4xlarge/us-east-1a/on-demand 0.80", "c.4xlarge/us-east-1b/on-demand 0.80", "c.4xlarge/us-east-1c/on-demand 0.80",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("choices (-want +got):\n%s", diff)
	}
	limited, _ := Solve(context.Background(), snap, WithMaxChoices(2))
	if n := len(limited.NewNodes[0].Choices); n != 2 {
		t.Errorf("WithMaxChoices(2): %d choices", n)
	}
	in := corev1.NodeSelectorOpIn
	wantReqs := []v1.NodeSelectorRequirementWithMinValues{
		{Key: v1.LabelInstanceType, Operator: in, Values: []string{"c.4xlarge", "c.large", "c.xlarge"}},
		{Key: v1.LabelCapacityType, Operator: in, Values: []string{"on-demand", "spot"}},
		{Key: v1.LabelNodePool, Operator: in, Values: []string{"default"}},
		{Key: v1.LabelZone, Operator: in, Values: testZones},
	}
	if diff := cmp.Diff(wantReqs, plan.NewNodes[0].Requirements); diff != "" {
		t.Errorf("requirements (-want +got):\n%s", diff)
	}
}

// An offering several commitments cover comes with one covered twin each, in
// the order the bill applies them (pricing.ApplyCommitments); they tie on
// price, and the node's first choice must spend the first, not the last.
func TestSolveCoveredTwinsKeepCommitmentOrder(t *testing.T) {
	it := makeIT(itSpec{name: "m.large", cpu: 2, memGi: 8, price: 0.1, noSpot: true, zones: []string{"us-east-1a"}})
	od := it.Offerings[0]
	twin := func(commitment string) cloudprovider.Offering {
		o := od
		o.PricePerHour, o.Commitment, o.CommitmentCost, o.CommitmentLeft = 0.0001, commitment, 1, 5
		return o
	}
	it.Offerings = []cloudprovider.Offering{twin("m-family-sp"), twin("compute-sp"), od}
	snap := &Snapshot{Pods: makePods(1, "web", "1", "1Gi"), NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{it})}}
	plan, err := Solve(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range plan.NewNodes[0].Choices {
		got = append(got, c.Offering.Commitment)
	}
	if diff := cmp.Diff([]string{"m-family-sp", "compute-sp", ""}, got); diff != "" {
		t.Errorf("choices' commitments (-want +got):\n%s", diff)
	}
}

func TestSolveMinValues(t *testing.T) {
	three := 3
	pool := makePool("default", cpuCatalog())
	pool.Spec.Template.Spec.Requirements = []v1.NodeSelectorRequirementWithMinValues{{Key: v1.LabelInstanceType, Operator: corev1.NodeSelectorOpExists, MinValues: &three}}
	plan, err := Solve(context.Background(), &Snapshot{Pods: makePods(1, "web", "1", "1Gi"), NodePools: []*NodePool{pool}}, WithMaxChoices(1))
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]bool{}
	for _, c := range plan.NewNodes[0].Choices {
		types[c.InstanceType.Name] = true
	}
	if len(types) < 3 {
		t.Errorf("minValues 3 on instance type but choices span %d types", len(types))
	}
	// A pod only two types can hold cannot meet minValues 3.
	plan, _ = Solve(context.Background(), &Snapshot{Pods: makePods(1, "big", "3", "1Gi"), NodePools: []*NodePool{pool}})
	if diff := cmp.Diff(map[string]string{"big-000": "nodepool default requires at least 3 distinct node.kubernetes.io/instance-type but only 2 fit the pods"}, outcomeOf(plan).Failed); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSolveErrors(t *testing.T) {
	pool := makePool("broken", cpuCatalog(), withReq("x", "Near", "y"))
	_, err := Solve(context.Background(), &Snapshot{NodePools: []*NodePool{pool}})
	if want := `solving: nodepool broken: spec.template.spec.requirements[0]: key "x": unknown operator "Near"`; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	snap := &Snapshot{Pods: makePods(2000, "web", "1", "1Gi"), NodePools: []*NodePool{makePool("default", cpuCatalog())}}
	if _, err := Solve(ctx, snap); err == nil {
		t.Errorf("cancelled context: want an error")
	}
	_ = metav1.ObjectMeta{}
}

// TestNodesLimit: a pool's "nodes" limit caps its machines, counting the
// ones it already has.
func TestNodesLimit(t *testing.T) {
	sel := map[string]string{"app": "db"}
	pods := makePods(3, "db", "1", "1Gi", label("app", "db"), podAntiAffinity(v1.LabelHostname, sel))
	pool := makePool("default", gpuCatalog(), withLimit(ResourceNodes, "3"))
	pool.Usage = corev1.ResourceList{ResourceNodes: resource.MustParse("1")}
	plan, err := Solve(context.Background(), &Snapshot{Pods: pods, NodePools: []*NodePool{pool}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.NewNodes) != 2 || len(plan.Unschedulable) != 1 {
		t.Fatalf("%d new nodes and %d unschedulable, want 2 and 1", len(plan.NewNodes), len(plan.Unschedulable))
	}
	if r := plan.Unschedulable[0].Reason; !strings.Contains(r, "limits reached: nodes") {
		t.Errorf("reason %q does not name the nodes limit", r)
	}
}

// TestPreferredPodAffinity: preferred pod (anti-)affinity picks among nodes
// that can take the pod, and never buys a machine of its own.
func TestPreferredPodAffinity(t *testing.T) {
	node := func(name string, pods ...*corev1.Pod) *Node {
		return &Node{Name: name, Pods: pods, Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"),
			corev1.ResourceMemory: resource.MustParse("32Gi"), corev1.ResourcePods: resource.MustParse("110")},
			Labels: map[string]string{v1.LabelHostname: name, v1.LabelZone: "us-east-1a", v1.LabelArch: "amd64"}}
	}
	cache := makePod("cache-0", "1", "1Gi", label("app", "cache"))
	existing := []*Node{node("a"), node("b", cache)}
	sel := map[string]string{"app": "cache"}
	near := makePod("near", "1", "1Gi", preferredPodAffinity(v1.LabelHostname, false, sel))
	far := makePod("far", "1", "1Gi", preferredPodAffinity(v1.LabelHostname, true, sel))
	plan, err := Solve(context.Background(), &Snapshot{Pods: []*corev1.Pod{near, far}, Nodes: existing,
		NodePools: []*NodePool{makePool("default", gpuCatalog())}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, b := range plan.Bindings {
		got[b.Pod.Name] = b.NodeName
	}
	if diff := cmp.Diff(map[string]string{"near": "b", "far": "a"}, got); diff != "" || len(plan.NewNodes) > 0 {
		t.Errorf("bindings (-want +got):\n%s\nnew nodes: %d", diff, len(plan.NewNodes))
	}

	// Three replicas that prefer not to share a host share one machine
	// rather than buying three.
	web := makePods(3, "web", "1", "1Gi", label("app", "web"), preferredPodAffinity(v1.LabelHostname, true, map[string]string{"app": "web"}))
	plan, err = Solve(context.Background(), &Snapshot{Pods: web, NodePools: []*NodePool{makePool("default", gpuCatalog())}})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.NewNodes) != 1 {
		t.Errorf("%d new nodes for 3 small pods with a preferred anti-affinity, want 1", len(plan.NewNodes))
	}
}

// A hard spread that counts another app's pods, not its own, is checked by
// the scheduler only for its own pods, in whatever order they bind: the
// plan must hold with them bound last. Every strategy's plan passes the
// validator, which reads the rule on the final layout.
func TestHardSpreadOverOtherPods(t *testing.T) {
	apps := metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: "app", Operator: metav1.LabelSelectorOpIn, Values: []string{"app0", "app1", "app2", "app3"}}}}
	counter := makePods(16, "counter", "500m", "1Gi", label("app", "counter"), func(p *corev1.Pod) {
		p.Spec.TopologySpreadConstraints = append(p.Spec.TopologySpreadConstraints, corev1.TopologySpreadConstraint{
			MaxSkew: 2, TopologyKey: v1.LabelInstanceCPU, WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: &apps})
	})
	snap := &Snapshot{Pods: concat(counter, spreadApps()), NodePools: []*NodePool{zoneWithoutTheCheapFamily()}}
	for _, st := range []Strategy{StrategyFFD, StrategyInterleaved, StrategyLP, StrategyLPInterleaved, StrategyLPFill} {
		plan, err := Solve(context.Background(), snap, WithStrategy(st))
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.Unschedulable) > 0 {
			t.Errorf("strategy %d: %d pods unschedulable", st, len(plan.Unschedulable))
		}
		for _, e := range validate(snap, plan) {
			t.Errorf("strategy %d: %s", st, e)
		}
	}
}

// An anti-affinity term with a namespaceSelector may select pods of any
// namespace the solver cannot read the labels of: planning the pod beside
// such a pod would leave it pending on a node the scheduler refuses, with
// no machine bought for it.
func TestAntiAffinityNamespaceSelector(t *testing.T) {
	db := makePod("db-0", "1", "1Gi", label("app", "db"))
	db.Namespace = "data"
	web := makePod("web", "1", "1Gi", podAntiAffinity(v1.LabelHostname, map[string]string{"app": "db"}))
	web.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].NamespaceSelector =
		&metav1.LabelSelector{MatchLabels: map[string]string{"tier": "data"}}
	plan, err := Solve(context.Background(), &Snapshot{Pods: []*corev1.Pod{web},
		Nodes: []*Node{existingNode("n1", testZones[0], "4", "8Gi", db)}, NodePools: []*NodePool{makePool("default", cpuCatalog())}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range plan.Bindings {
		t.Errorf("%s bound to %s, beside db-0", b.Pod.Name, b.NodeName)
	}
	if len(plan.NewNodes) != 1 {
		t.Errorf("%d new nodes, want 1 for web", len(plan.NewNodes))
	}
}

// A well-known label an instance type lacks reaches the node only when the
// claim pins it to one value: a pod asking for it by Gt, Exists or several
// values would find the label missing on a machine of that type, and the
// scheduler would refuse it there.
func TestWellKnownLabelTheTypeLacks(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  podOpt
		want bool // whether m5.xlarge (no GPU labels) may be chosen
	}{
		{"Gt", requiredNodeAffinity(v1.LabelGPUCount, corev1.NodeSelectorOpGt, "2"), false},
		{"Exists", requiredNodeAffinity(v1.LabelGPUName, corev1.NodeSelectorOpExists), false},
		{"In of two", requiredNodeAffinity(v1.LabelGPUName, corev1.NodeSelectorOpIn, "a100", "h100"), false},
		{"In of one is written as a label", nodeSelector(v1.LabelGPUName, "a100"), true},
	} {
		plan, err := Solve(context.Background(), &Snapshot{Pods: makePods(1, "p", "1", "1Gi", tc.opt), NodePools: []*NodePool{makePool("default", gpuCatalog())}})
		if err != nil {
			t.Fatal(err)
		}
		if len(plan.NewNodes) != 1 {
			t.Fatalf("%s: %d new nodes, want 1", tc.name, len(plan.NewNodes))
		}
		got := slices.ContainsFunc(plan.NewNodes[0].Choices, func(c Choice) bool { return c.InstanceType.Name == "m5.xlarge" })
		if got != tc.want {
			t.Errorf("%s: m5.xlarge among the choices: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// A nil pool is skipped everywhere, as buildPools does, not a panic.
func TestSolveSkipsANilPool(t *testing.T) {
	plan, err := Solve(context.Background(), &Snapshot{Pods: makePods(2, "p", "1", "1Gi"), NodePools: []*NodePool{nil, makePool("a", cpuCatalog())}})
	if err != nil || len(plan.Unschedulable) != 0 || len(plan.NewNodes) == 0 {
		t.Fatalf("Solve with a nil pool = %+v, %v; want the pods planned on pool a", plan, err)
	}
}
