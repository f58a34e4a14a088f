package manifest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

// summary is the part of a Set the table tests compare.
type summary struct {
	Pods          []string // namespace/name labels(app) requests(cpu,gpu)
	DaemonSetPods []string
	NodePools     []string
	Reservations  []Reservation
	Warnings      int
}

func summarize(s *Set) summary {
	var out summary
	for _, p := range s.Pods {
		out.Pods = append(out.Pods, podLine(p))
	}
	for _, p := range s.DaemonSetPods {
		out.DaemonSetPods = append(out.DaemonSetPods, podLine(p))
	}
	for _, np := range s.NodePools {
		out.NodePools = append(out.NodePools, np.Name)
	}
	out.Reservations = s.Reservations
	out.Warnings = len(s.Warnings)
	return out
}

func podLine(p *corev1.Pod) string {
	c := p.Spec.Containers[0].Resources.Requests
	gpu := c["nvidia.com/gpu"]
	cpu := c[corev1.ResourceCPU]
	return p.Namespace + "/" + p.Name + " app=" + p.Labels["app"] + " cpu=" + cpu.String() + " gpu=" + gpu.String()
}

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: c
        image: nginx
        resources:
          requests: {cpu: 500m, nvidia.com/gpu: 1}
`

func TestDecode(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want summary
	}{{
		name: "deployment expands replicas with template labels",
		in:   deployment,
		want: summary{Pods: []string{
			"default/web-0 app=web cpu=500m gpu=1",
			"default/web-1 app=web cpu=500m gpu=1",
			"default/web-2 app=web cpu=500m gpu=1",
		}},
	}, {
		name: "pod keeps its namespace",
		in: `apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ml, labels: {app: a}}
spec: {containers: [{name: c, resources: {requests: {cpu: 2}}}]}
`,
		want: summary{Pods: []string{"ml/p app=a cpu=2 gpu=0"}},
	}, {
		name: "replicaset and statefulset default to one replica",
		in: `apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs}
spec: {template: {spec: {containers: [{name: c}]}}}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: data}
spec: {replicas: 2, template: {metadata: {labels: {app: db}}, spec: {containers: [{name: c}]}}}
`,
		want: summary{Pods: []string{"default/rs-0 app= cpu=0 gpu=0", "data/db-0 app=db cpu=0 gpu=0", "data/db-1 app=db cpu=0 gpu=0"}},
	}, {
		name: "job uses parallelism",
		in: `apiVersion: batch/v1
kind: Job
metadata: {name: train}
spec: {parallelism: 2, completions: 10, template: {spec: {containers: [{name: c}]}}}
`,
		want: summary{Pods: []string{"default/train-0 app= cpu=0 gpu=0", "default/train-1 app= cpu=0 gpu=0"}},
	}, {
		name: "job runs one pod at a time when parallelism is unset, as the API server defaults it",
		in: `{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
 "spec": {"completions": 2, "template": {"spec": {"containers": [{"name": "c"}]}}}}`,
		want: summary{Pods: []string{"default/j-0 app= cpu=0 gpu=0"}},
	}, {
		name: "job never runs more than completions",
		in: `apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec: {parallelism: 5, completions: 1, template: {spec: {containers: [{name: c}]}}}
`,
		want: summary{Pods: []string{"default/j-0 app= cpu=0 gpu=0"}},
	}, {
		name: "job defaults to one pod",
		in: `apiVersion: batch/v1
kind: Job
metadata: {name: j}
spec: {template: {spec: {containers: [{name: c}]}}}
`,
		want: summary{Pods: []string{"default/j-0 app= cpu=0 gpu=0"}},
	}, {
		name: "daemonset becomes overhead, not a pod",
		in: `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: dcgm, namespace: gpu}
spec: {template: {metadata: {labels: {app: dcgm}}, spec: {containers: [{name: c, resources: {requests: {cpu: 100m}}}]}}}
`,
		want: summary{DaemonSetPods: []string{"gpu/dcgm app=dcgm cpu=100m gpu=0"}},
	}, {
		name: "nodepool",
		in: `apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: gpu}
spec:
  template:
    spec:
      requirements: [{key: stowage.dev/capacity-type, operator: In, values: [spot]}]
  limits: {nvidia.com/gpu: 64}
`,
		want: summary{NodePools: []string{"gpu"}},
	}, {
		name: "list kinds, empty documents and unknown kinds",
		in: `---
# only a comment
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: s}
- apiVersion: v1
  kind: Pod
  metadata: {name: p}
  spec: {containers: [{name: c}]}
---
apiVersion: extensions/v1beta1
kind: Deployment
metadata: {name: old}
`,
		want: summary{Pods: []string{"default/p app= cpu=0 gpu=0"}, Warnings: 2},
	}, {
		name: "reservations configmap",
		in: `apiVersion: v1
kind: ConfigMap
metadata: {name: stowage-reservations}
data:
  reservations: |
    # comment
    g6.xlarge us-east-1a 4

    p5.48xlarge us-east-1b 1
---
apiVersion: v1
kind: ConfigMap
metadata: {name: other}
`,
		want: summary{Warnings: 1, Reservations: []Reservation{
			{InstanceType: "g6.xlarge", Zone: "us-east-1a", Count: 4, Source: "r.yaml: document 1 (ConfigMap default/stowage-reservations): data.reservations line 2"},
			{InstanceType: "p5.48xlarge", Zone: "us-east-1b", Count: 1, Source: "r.yaml: document 1 (ConfigMap default/stowage-reservations): data.reservations line 4"},
		}},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Decode("r.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, summarize(s)); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{{
		name: "bad quantity names file, document, object and field",
		in: "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: [{name: c}]}\n---\n" +
			strings.Replace(deployment, "cpu: 500m", "cpu: lots", 1),
		want: `pods.yaml: document 2 (Deployment default/web): spec.template.spec.containers[0].resources.requests.cpu: "lots": quantities must match the regular expression`,
	}, {
		name: "bad limit in an init container",
		in: `apiVersion: v1
kind: Pod
metadata: {name: p, namespace: ml}
spec:
  initContainers: [{name: i}, {name: j, resources: {limits: {memory: 1Qi}}}]
  containers: [{name: c}]
`,
		want: `pods.yaml: document 1 (Pod ml/p): spec.initContainers[1].resources.limits.memory: "1Qi": quantities must match`,
	}, {
		name: "negative replicas",
		in:   strings.Replace(deployment, "replicas: 3", "replicas: -1", 1),
		want: `pods.yaml: document 1 (Deployment default/web): spec.replicas: must not be negative, got -1`,
	}, {
		name: "too many replicas",
		in:   strings.Replace(deployment, "replicas: 3", "replicas: 1000000000", 1),
		want: `pods.yaml: document 1 (Deployment default/web): spec.replicas: 1000000000 more pods would make 1000000000 in all, more than the limit of 200000 (--max-pods raises it)`,
	}, {
		// Issue 10 #4: a misspelled field must not be dropped silently.
		name: "misspelled nodeSelector",
		in:   strings.Replace(deployment, "      containers:", "      nodeSelecter: {stowage.dev/gpu-name: h100}\n      containers:", 1),
		want: `pods.yaml: document 1 (Deployment default/web): spec.template.spec.nodeSelecter: unknown field (a misspelling? --allow-unknown-fields ignores it)`,
	}, {
		name: "misspelled requests",
		in:   strings.Replace(deployment, "requests:", "requets:", 1),
		want: `pods.yaml: document 1 (Deployment default/web): spec.template.spec.containers[0].resources.requets: unknown field`,
	}, {
		// Issue 10 #3: quantities that overflowed to 0 or negative in the solver.
		name: "cpu of 1e400",
		in:   strings.Replace(deployment, "cpu: 500m", `cpu: "1e400"`, 1),
		want: `pods.yaml: document 1 (Deployment default/web): spec.template.spec.containers[0].resources.requests[cpu]: Invalid value: "10e399": is more than Stowage can count; at most 9T`,
	}, {
		name: "memory of 99999999Ei",
		in:   strings.Replace(deployment, "cpu: 500m", `memory: 99999999Ei`, 1),
		want: `spec.template.spec.containers[0].resources.requests[memory]: Invalid value: "9223372036854775807": is more than Stowage can count; at most 9P`,
	}, {
		name: "gpus of 1e400",
		in:   strings.Replace(deployment, "nvidia.com/gpu: 1", `nvidia.com/gpu: "1e400"`, 1),
		want: `spec.template.spec.containers[0].resources.requests[nvidia.com/gpu]: Invalid value: "10e399": is more than Stowage can count`,
	}, {
		name: "negative memory",
		in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, resources: {requests: {memory: -1Gi}}}]}\n",
		want: `pods.yaml: document 1 (Pod default/p): spec.containers[0].resources.requests[memory]: Invalid value: "-1Gi": must not be negative`,
	}, {
		name: "containers adding up beyond the bound",
		in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, resources: {requests: {memory: 5P}}}, {name: d, resources: {requests: {memory: 5P}}}]}\n",
		want: `pods.yaml: document 1 (Pod default/p): spec: Invalid value: "10P memory": the containers' requests add up to more than Stowage can count`,
	}, {
		// Issue 10 #12.
		name: "unquoted .inf names its field",
		in:   strings.Replace(deployment, "cpu: 500m", "cpu: .inf", 1),
		want: `pods.yaml: document 1: spec.template.spec.containers[0].resources.requests.cpu: .inf is not a number Kubernetes accepts; quote it if it is meant as text`,
	}, {
		name: "duplicate pod",
		in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\nspec: {containers: [{name: c}]}\n",
		want: `pods.yaml: document 2 (Pod default/p): metadata.name: duplicate: Pod default/p is already defined at pods.yaml: document 1 (Pod default/p)`,
	}, {
		name: "pods of two workloads with one name",
		in:   deployment + "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec: {template: {spec: {containers: [{name: c}]}}}\n",
		want: `pods.yaml: document 2 (StatefulSet default/web): metadata.name: pod default/web-0 is also made by pods.yaml: document 1 (Deployment default/web); rename one of them`,
	}, {
		name: "duplicate nodepool",
		in:   "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: gpu}\nspec: {template: {spec: {}}}\n---\napiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: gpu}\nspec: {template: {spec: {}}}\n",
		want: `pods.yaml: document 2 (NodePool gpu): metadata.name: duplicate: NodePool gpu is already defined at pods.yaml: document 1 (NodePool gpu)`,
	}, {
		name: "gang size zero",
		in:   strings.Replace(deployment, "labels: {app: web}", "labels: {app: web, stowage.dev/pod-group: train, stowage.dev/pod-group-size: \"0\"}", 1),
		want: `pods.yaml: document 1 (Deployment default/web): spec.template.metadata.labels[stowage.dev/pod-group-size]: Invalid value: "0": must be a positive integer`,
	}, {
		name: "gang without a size",
		in:   strings.Replace(deployment, "labels: {app: web}", "labels: {app: web, stowage.dev/pod-group: train}", 1),
		want: `spec.template.metadata.labels[stowage.dev/pod-group-size]: Required value: a pod group needs its size`,
	}, {
		name: "nodepool taint effect Bogus",
		in:   "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: gpu}\nspec: {template: {spec: {taints: [{key: gpu, effect: Bogus}]}}}\n",
		want: `pods.yaml: document 1 (NodePool gpu): spec.template.spec.taints[0].effect: Unsupported value: "Bogus"`,
	}, {
		name: "nodepool expireAfter Go cannot hold",
		in:   "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: gpu}\nspec: {template: {spec: {expireAfter: 99999999999999h}}}\n",
		want: `pods.yaml: document 1 (NodePool gpu): spec.template.spec.expireAfter: Invalid value: "99999999999999h"`,
	}, {
		name: "wrong type names the field",
		in:   strings.Replace(deployment, "replicas: 3", "replicas: three", 1),
		want: `pods.yaml: document 1 (Deployment default/web): spec.replicas: cannot use string as int32`,
	}, {
		name: "missing kind",
		in:   "apiVersion: v1\nmetadata: {name: x}\n",
		want: `pods.yaml: document 1: kind: required`,
	}, {
		name: "missing name",
		in:   "apiVersion: v1\nkind: Pod\nspec: {containers: [{name: c}]}\n",
		want: `pods.yaml: document 1 (Pod): metadata.name: required`,
	}, {
		name: "no containers",
		in:   "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec: {template: {spec: {}}}\n",
		want: `pods.yaml: document 1 (Job default/j): spec.template.spec.containers: at least one container is required`,
	}, {
		name: "not an object",
		in:   "- a\n- b\n",
		want: `pods.yaml: document 1: not a Kubernetes object`,
	}, {
		name: "invalid yaml",
		in:   "kind: [\n",
		want: `pods.yaml: document 1: invalid YAML`,
	}, {
		name: "nodepool unknown field is an error",
		in: `apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: gpu}
spec: {template: {spec: {requirments: []}}}
`,
		want: `pods.yaml: document 1 (NodePool gpu): unknown field "spec.template.spec.requirments"`,
	}, {
		name: "nodepool bad limit",
		in:   "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: gpu}\nspec: {limits: {cpu: x}, template: {spec: {}}}\n",
		want: `pods.yaml: document 1 (NodePool gpu): spec.limits.cpu: "x": quantities must match`,
	}, {
		name: "nodepool with a namespace",
		in:   "apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: gpu, namespace: x}\nspec: {template: {spec: {}}}\n",
		want: `metadata.namespace: NodePools are cluster-scoped`,
	}, {
		name: "bad list item",
		in:   "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{name: c}]}}\n- {apiVersion: v1, kind: Pod, metadata: {name: b}}\n",
		want: `pods.yaml: document 1 item 2 (Pod default/b): spec.containers: at least one container is required`,
	}, {
		name: "nested list",
		in:   "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: List, items: []}\n",
		want: `pods.yaml: document 1 item 1 (List): a List inside a List is not supported`,
	}, {
		name: "bad reservation line",
		in:   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stowage-reservations, namespace: kube-system}\ndata: {r: \"g6.xlarge us-east-1a\"}\n",
		want: "pods.yaml: document 1 (ConfigMap kube-system/stowage-reservations): data.r line 1: want `instanceType zone count`",
	}, {
		name: "bad reservation count",
		in:   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stowage-reservations}\ndata: {r: \"g6.xlarge us-east-1a 0\"}\n",
		want: `data.r line 1: count must be a positive integer, got "0"`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("pods.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Decode: want error containing %q, got none", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Decode error:\n got: %v\nwant: ...%s...", err, tt.want)
			}
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("b/web.yml", deployment)
	write("a.json", `{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "first"}, "spec": {"containers": [{"name": "c"}]}}`)
	write("README.md", "not a manifest")

	s, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var got []string
	for _, p := range s.Pods {
		got = append(got, p.Name)
	}
	if diff := cmp.Diff([]string{"first", "web-0", "web-1", "web-2"}, got); diff != "" {
		t.Errorf("pods (-want +got):\n%s", diff)
	}

	write("c/bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "c/bad.yaml")+": document 1 (Pod default/x)") {
		t.Errorf("Load with a bad file: got %v, want an error naming c/bad.yaml", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("Load of an empty directory: want an error")
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load of a missing path: want an error")
	}
}

func TestExpandedPods(t *testing.T) {
	s, err := Decode("d.yaml", []byte(deployment))
	if err != nil {
		t.Fatal(err)
	}
	s.Pods[0].Labels["app"] = "changed"
	if s.Pods[1].Labels["app"] != "web" {
		t.Error("pods expanded from one template share labels")
	}
	// The spec is shared, so memory does not grow with replicas times spec size.
	if &s.Pods[0].Spec.Containers[0] != &s.Pods[1].Spec.Containers[0] {
		t.Error("replicas hold copies of the template's containers")
	}
	if s.Pods[0].UID == s.Pods[1].UID {
		t.Error("pods share a UID")
	}
	if got := s.Pods[0].OwnerReferences; len(got) != 1 || got[0].Kind != "Deployment" || got[0].Name != "web" {
		t.Errorf("owner references = %v, want the Deployment web", got)
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte(deployment))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Pod, metadata: {name: p}, spec: {containers: [{name: c}]}}]"))
	f.Add([]byte("apiVersion: stowage.dev/v1\nkind: NodePool\nmetadata: {name: n}\nspec: {limits: {cpu: 1}, template: {spec: {}}}"))
	f.Add([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stowage-reservations}\ndata: {r: \"a b 1\"}"))
	f.Add([]byte("---\n---\n{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		// A small pod cap keeps each input fast: with the default 200,000 the
		// fuzzer finds `replicas: 199999`, one input takes seconds, and the
		// run ends with "context deadline exceeded" instead of a finding.
		l := NewLoader(Options{MaxPods: 1000})
		if err := l.Decode("fuzz.yaml", bytes.NewReader(data)); err != nil {
			return
		}
		s := l.Set()
		for _, p := range s.Pods {
			if p.Name == "" || p.Namespace == "" || len(p.Spec.Containers) == 0 {
				t.Fatalf("decoded pod without name, namespace or containers: %+v", p)
			}
		}
	})
}

func TestUnknownFieldsAsWarnings(t *testing.T) {
	in := strings.Replace(deployment, "      containers:", "      nodeSelecter: {a: b}\n      containers:", 1)
	l := NewLoader(Options{AllowUnknownFields: true})
	if err := l.Decode("w.yaml", strings.NewReader(in)); err != nil {
		t.Fatalf("Decode: %v", err)
	}
	s := l.Set()
	want := `w.yaml: document 1 (Deployment default/web): spec.template.spec.nodeSelecter: unknown field; ignored`
	if len(s.Pods) != 3 || len(s.Warnings) != 1 || s.Warnings[0] != want {
		t.Errorf("got %d pods and warnings %q; want 3 pods and %q", len(s.Pods), s.Warnings, want)
	}
}

// Issue 10 #5: 50 Deployments of 200,000 replicas in a 14 KB file took 6 GB.
// The total cap stops it at the first Deployment past the limit, having
// expanded no more pods than the limit.
func TestPodCapBoundsMemory(t *testing.T) {
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, "---\n%s", strings.NewReplacer("name: web", fmt.Sprintf("name: web-%d", i), "replicas: 3", "replicas: 200000").Replace(deployment))
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	l := NewLoader(Options{MaxPods: 1000})
	err := l.Decode("bomb.yaml", strings.NewReader(b.String()))
	runtime.ReadMemStats(&after)
	want := "bomb.yaml: document 1 (Deployment default/web-0): spec.replicas: 200000 more pods would make 200000 in all, more than the limit of 1000 (--max-pods raises it)"
	if err == nil || err.Error() != want {
		t.Fatalf("Decode: got %v, want %q", err, want)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("decoding allocated %d MiB before refusing; want it refused before expanding", alloc>>20)
	}

	l = NewLoader(Options{MaxPods: 6})
	if err := l.Decode("a.yaml", strings.NewReader(deployment)); err != nil {
		t.Fatal(err)
	}
	// The cap counts pods across files.
	err = l.Decode("b.yaml", strings.NewReader(strings.Replace(deployment, "name: web", "name: api", 1)))
	if err != nil {
		t.Fatalf("6 pods with a cap of 6: %v", err)
	}
	err = l.Decode("c.yaml", strings.NewReader("apiVersion: v1\nkind: Pod\nmetadata: {name: one-more}\nspec: {containers: [{name: c}]}\n"))
	if err == nil || !strings.Contains(err.Error(), "c.yaml: document 1 (Pod default/one-more): 1 more pods would make 7 in all, more than the limit of 6") {
		t.Errorf("the 7th pod: got %v", err)
	}
}

func TestGangWarnings(t *testing.T) {
	gang := func(name string, replicas, size int) string {
		return strings.NewReplacer("name: web", "name: "+name, "replicas: 3", fmt.Sprintf("replicas: %d", replicas),
			"labels: {app: web}", fmt.Sprintf("labels: {app: web, stowage.dev/pod-group: %s, stowage.dev/pod-group-size: \"%d\"}", name, size)).Replace(deployment)
	}
	s, err := Decode("g.yaml", []byte(gang("big", 4, 2)+"---\n"+gang("short", 1, 3)+"---\n"+gang("exact", 2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`g.yaml: document 1 (Deployment default/big): gang default/big has 4 pods but stowage.dev/pod-group-size says 2: it is planned as soon as any 2 of them fit, and the rest are planned as they fit`,
		`g.yaml: document 2 (Deployment default/short): gang default/short has 1 pods but stowage.dev/pod-group-size says 3: none of them is planned until all 3 exist`,
	}
	if diff := cmp.Diff(want, s.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	// Declared by annotations, as the solver also reads them.
	annotated := strings.Replace(deployment, "labels: {app: web}",
		"labels: {app: web}\n      annotations: {stowage.dev/pod-group: web, stowage.dev/pod-group-size: \"5\"}", 1)
	s, err = Decode("a.yaml", []byte(annotated))
	if err != nil {
		t.Fatal(err)
	}
	want = []string{`a.yaml: document 1 (Deployment default/web): gang default/web has 3 pods but stowage.dev/pod-group-size says 5: none of them is planned until all 5 exist`}
	if diff := cmp.Diff(want, s.Warnings); diff != "" {
		t.Errorf("warnings of a gang declared by annotations (-want +got):\n%s", diff)
	}
}

func TestFilesSummary(t *testing.T) {
	l := NewLoader(Options{})
	for name, in := range map[string]string{"empty.yaml": "# nothing\n---\n", "pods.yaml": deployment} {
		if err := l.Decode(name, strings.NewReader(in)); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]int{}
	for _, f := range l.Set().Files {
		got[f.Name] = f.Objects
	}
	if diff := cmp.Diff(map[string]int{"empty.yaml": 0, "pods.yaml": 1}, got); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}

// A key given twice is an error naming it, in YAML and in JSON: kept
// silently, the last value would win (a second nodeSelector dropping a GPU
// selector, a second containers list changing the requests).
func TestDuplicateKeysAreReported(t *testing.T) {
	for name, doc := range map[string]string{
		"yaml": "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec:\n  nodeSelector: {stowage.dev/gpu-name: h100}\n  containers: [{name: c, image: x, resources: {requests: {cpu: \"1\"}}}]\n  nodeSelector: {}\n",
		"json": `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"1"}}}],"containers":[{"name":"c","image":"x","resources":{"requests":{"cpu":"64"}}}]}}`,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Decode("pods."+name, []byte(doc))
			if err == nil {
				t.Fatal("a duplicate key was accepted")
			}
			key := map[string]string{"yaml": "nodeSelector", "json": "containers"}[name]
			if msg := err.Error(); !strings.Contains(msg, "pods."+name) || !strings.Contains(msg, key) {
				t.Errorf("error %q should name the file and the key %s", msg, key)
			}
		})
	}
}
