package manifest

import (
	"os"
	"path/filepath"
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
		name: "job uses completions when parallelism is unset",
		in: `{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
 "spec": {"completions": 2, "template": {"spec": {"containers": [{"name": "c"}]}}}}`,
		want: summary{Pods: []string{"default/j-0 app= cpu=0 gpu=0", "default/j-1 app= cpu=0 gpu=0"}},
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
		want: `pods.yaml: document 1 (Deployment default/web): spec.replicas: 1000000000 pods is more than`,
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

func TestExpandedPodsAreIndependent(t *testing.T) {
	s, err := Decode("d.yaml", []byte(deployment))
	if err != nil {
		t.Fatal(err)
	}
	s.Pods[0].Labels["app"] = "changed"
	s.Pods[0].Spec.Containers[0].Name = "changed"
	if s.Pods[1].Labels["app"] != "web" || s.Pods[1].Spec.Containers[0].Name != "c" {
		t.Error("pods expanded from one template share labels or spec")
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
		s, err := Decode("fuzz.yaml", data)
		if err != nil {
			return
		}
		for _, p := range s.Pods {
			if p.Name == "" || p.Namespace == "" || len(p.Spec.Containers) == 0 {
				t.Fatalf("decoded pod without name, namespace or containers: %+v", p)
			}
		}
	})
}
