package importer

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/yaml"
)

func mustYAML(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("bad expected YAML: %v", err)
	}
	return m
}

const wantNodePool = `
apiVersion: stowage.dev/v1
kind: NodePool
metadata:
  name: gpu-inference
  annotations:
    team.example.com/owner: ml-platform
spec:
  template:
    metadata:
      labels:
        workload: inference
    spec:
      nodeClassRef:
        group: aws.stowage.dev
        kind: EC2NodeClass
        name: gpu
      requirements:
        - key: stowage.dev/capacity-type
          operator: In
          values: ["spot", "on-demand"]
        - key: stowage.dev/gpu-name
          operator: In
          values: ["a10g", "l4"]
        - key: stowage.dev/gpu-count
          operator: Gt
          values: ["0"]
        - key: stowage.dev/gpu-memory
          operator: Gt
          values: ["16000"]
        - key: node.kubernetes.io/instance-type
          operator: Exists
          minValues: 3
        - key: kubernetes.io/arch
          operator: In
          values: ["amd64"]
      taints:
        - key: nvidia.com/gpu
          effect: NoSchedule
      startupTaints:
        - key: example.com/gpu-not-ready
          effect: NoExecute
      expireAfter: 168h
      terminationGracePeriod: 2h
  disruption:
    consolidationPolicy: WhenEmptyOrUnderutilized
    consolidateAfter: 10m
    budgets:
      - nodes: "10%"
      - nodes: "0"
        schedule: "0 9 * * mon-fri"
        duration: 8h
        reasons: ["Underutilized", "Drifted"]
  limits:
    cpu: "1000"
    nvidia.com/gpu: "64"
  weight: 50
`

const wantEC2NodeClass = `
apiVersion: aws.stowage.dev/v1
kind: EC2NodeClass
metadata:
  name: gpu
spec:
  amiSelectorTerms:
    - alias: al2023@v20261101
  subnetSelectorTerms:
    - tags:
        karpenter.sh/discovery: prod
    - id: subnet-0a1b2c3d
  securityGroupSelectorTerms:
    - tags:
        karpenter.sh/discovery: prod
  role: KarpenterNodeRole-prod
  tags:
    team: ml-platform
  blockDeviceMappings:
    - deviceName: /dev/xvda
      rootVolume: true
      ebs:
        volumeSize: 200Gi
        volumeType: gp3
        iops: 6000
        throughput: 500
        encrypted: true
        deleteOnTermination: true
  userData: |
    #!/bin/bash
    echo "pre-bootstrap"
  kubelet:
    maxPods: 110
  metadataOptions:
    httpEndpoint: enabled
    httpPutResponseHopLimit: 1
    httpTokens: required
`

func TestConvertKarpenterExample(t *testing.T) {
	f, err := os.Open("testdata/karpenter-gpu.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ConvertYAML("karpenter-gpu.yaml", f)
	if err != nil {
		t.Fatalf("ConvertYAML: %v", err)
	}
	if len(res.Objects) != 2 {
		t.Fatalf("got %d objects, want 2", len(res.Objects))
	}
	// Round-trip through YAML so numbers compare the way a reader sees them.
	out, err := MarshalYAML(res.Objects)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(out), "---\n")
	for i, want := range []string{wantNodePool, wantEC2NodeClass} {
		if diff := cmp.Diff(mustYAML(t, want), mustYAML(t, docs[i])); diff != "" {
			t.Errorf("object %d mismatch (-want +got):\n%s", i, diff)
		}
	}

	var got []string
	for _, w := range res.Warnings {
		got = append(got, w.String())
	}
	want := []string{
		"karpenter-gpu.yaml#1: NodePool/gpu-inference: metadata.annotations[karpenter.sh/nodepool-hash]: Karpenter-owned key dropped",
		"karpenter-gpu.yaml#1: NodePool/gpu-inference: spec.template.spec.requirements[4].key: karpenter.k8s.aws/instance-category has no Stowage equivalent; requirement dropped (constrain node.kubernetes.io/instance-type or stowage.dev/instance-family instead)",
		"karpenter-gpu.yaml#2: EC2NodeClass/gpu: spec.blockDeviceMappings[1].ebs.volumeSize: 500G is not a whole number of Gi or Ti as Stowage requires",
		"karpenter-gpu.yaml#2: EC2NodeClass/gpu: spec.blockDeviceMappings[1]: no convertible ebs settings; mapping dropped",
		"karpenter-gpu.yaml#2: EC2NodeClass/gpu: spec.detailedMonitoring: no Stowage equivalent; dropped",
		"karpenter-gpu.yaml#2: EC2NodeClass/gpu: spec.metadataOptions.httpProtocolIPv6: no Stowage equivalent; dropped",
		"karpenter-gpu.yaml#2: EC2NodeClass/gpu: spec.securityGroupSelectorTerms[1].name: no Stowage equivalent; dropped",
		"karpenter-gpu.yaml#2: EC2NodeClass/gpu: spec.tags[karpenter.sh/discovery]: Karpenter-owned key dropped",
		"karpenter-gpu.yaml#3: ConfigMap/unrelated: v1 ConfigMap is not a Karpenter NodePool or EC2NodeClass; skipped",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings mismatch (-want +got):\n%s", diff)
	}
}

func TestConvertCases(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		want         string // expected single output object; empty for none
		wantWarnings []string
		wantErr      string
	}{
		{
			name: "minimal general-purpose pool",
			in: `
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: karpenter.k8s.aws, kind: EC2NodeClass, name: default}
      requirements:
        - {key: karpenter.k8s.aws/instance-family, operator: In, values: [m7i, c7i]}
        - {key: karpenter.k8s.aws/instance-cpu, operator: Lt, values: ["33"]}
        - {key: karpenter.k8s.aws/instance-memory, operator: Gt, values: ["2048"]}
        - {key: karpenter.sh/capacity-type, operator: In, values: [reserved]}
`,
			want: `
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: default}
spec:
  template:
    spec:
      nodeClassRef: {group: aws.stowage.dev, kind: EC2NodeClass, name: default}
      requirements:
        - {key: stowage.dev/instance-family, operator: In, values: [m7i, c7i]}
        - {key: stowage.dev/instance-cpu, operator: Lt, values: ["33"]}
        - {key: stowage.dev/instance-memory, operator: Gt, values: ["2048"]}
        - {key: stowage.dev/capacity-type, operator: In, values: [reserved]}
`,
		},
		{
			name: "azure node class and static replicas are reported",
			in: `
apiVersion: karpenter.sh/v1
kind: NodePool
metadata: {name: az}
spec:
  replicas: 3
  template:
    metadata:
      labels: {stowage.dev/team: a, karpenter.sh/custom: b, app: x, topology.kubernetes.io/zone: eastus-1}
    spec:
      nodeClassRef: {group: karpenter.azure.com, kind: AKSNodeClass, name: default}
`,
			want: `
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: az}
spec:
  template:
    metadata:
      labels: {app: x}
    spec: {}
`,
			wantWarnings: []string{
				"in#1: NodePool/az: spec.replicas: no Stowage equivalent; dropped",
				"in#1: NodePool/az: spec.template.metadata.labels[karpenter.sh/custom]: Karpenter-owned key dropped",
				"in#1: NodePool/az: spec.template.metadata.labels[stowage.dev/team]: labels in the stowage.dev domain are reserved; use a requirement instead; dropped",
				"in#1: NodePool/az: spec.template.metadata.labels[topology.kubernetes.io/zone]: comes from each node's machine; use a requirement instead; dropped",
				"in#1: NodePool/az: spec.template.spec.nodeClassRef: karpenter.azure.com/AKSNodeClass is not convertible (only karpenter.k8s.aws/EC2NodeClass is); dropped, set it by hand",
			},
		},
		{
			name: "v1beta1 is skipped",
			in:   "apiVersion: karpenter.sh/v1beta1\nkind: NodePool\nmetadata: {name: old}\nspec: {}\n",
			wantWarnings: []string{
				"in#1: NodePool/old: apiVersion: karpenter.sh/v1beta1 is not supported, only karpenter.sh/v1: convert it with Karpenter's own upgrade first; skipped",
			},
		},
		{
			name: "node class whose AMI terms all fail",
			in: `
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: win}
spec:
  amiSelectorTerms:
    - alias: windows2022@latest
    - owner: "123456789012"
  subnetSelectorTerms: [{id: subnet-1}]
  securityGroupSelectorTerms: [{id: sg-1}]
  instanceProfile: nodes
`,
			// Rejected: amiSelectorTerms is required (TestAuditEC2NodeClassWithoutRequiredFieldsIsRejected).
			want: "",
			wantWarnings: []string{
				`in#1: EC2NodeClass/win: spec.amiSelectorTerms[0].alias: alias "windows2022@latest" has no Stowage equivalent (al2023 and bottlerocket are supported); term dropped`,
				"in#1: EC2NodeClass/win: spec.amiSelectorTerms[1]: owner without tags or name cannot be converted; term dropped (add tags or a name, or use an id)",
				"in#1: EC2NodeClass/win: spec.amiSelectorTerms: no term could be converted; the field is required, set it by hand",
			},
		},
		{
			name: "kubectl get -o yaml list",
			in: `
apiVersion: v1
kind: List
items:
  - apiVersion: karpenter.sh/v1
    kind: NodePool
    metadata:
      name: a
      resourceVersion: "1"
      creationTimestamp: "2026-01-01T00:00:00Z"
      annotations: {kubectl.kubernetes.io/last-applied-configuration: "{}"}
    spec:
      template:
        spec:
          requirements:
            - {key: karpenter.sh/capacity-type, operator: In, values: [spot]}
      disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: 1m}
`,
			want: `
apiVersion: stowage.dev/v1
kind: NodePool
metadata: {name: a}
spec:
  template:
    spec:
      requirements:
        - {key: stowage.dev/capacity-type, operator: In, values: [spot]}
  disruption: {consolidationPolicy: WhenEmpty, consolidateAfter: 1m}
`,
		},
		{
			name:    "list item without a name names the item",
			in:      "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: karpenter.sh/v1, kind: NodePool, spec: {}}\n",
			wantErr: "in: object 1: items[0]: NodePool: metadata.name must be set",
		},
		{
			name:    "missing name is an error naming the document",
			in:      "apiVersion: karpenter.sh/v1\nkind: NodePool\nspec: {}\n",
			wantErr: "in: object 1: NodePool: metadata.name must be set",
		},
		{
			name:    "missing kind",
			in:      "---\n---\napiVersion: v1\nmetadata: {name: x}\n",
			wantErr: "in: object 1: apiVersion and kind must be set",
		},
		{
			name:    "broken YAML",
			in:      "apiVersion: [\n",
			wantErr: "in: object 1:",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := ConvertYAML("in", strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want prefix %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ConvertYAML: %v", err)
			}
			var got []string
			for _, w := range res.Warnings {
				got = append(got, w.String())
			}
			if diff := cmp.Diff(tt.wantWarnings, got); diff != "" {
				t.Errorf("warnings mismatch (-want +got):\n%s", diff)
			}
			if tt.want == "" {
				if len(res.Objects) != 0 {
					t.Fatalf("got %d objects, want none", len(res.Objects))
				}
				return
			}
			if len(res.Objects) != 1 {
				t.Fatalf("got %d objects, want 1", len(res.Objects))
			}
			out, err := MarshalYAML(res.Objects)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(mustYAML(t, tt.want), mustYAML(t, string(out))); diff != "" {
				t.Errorf("object mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestConvertRejectsInvalid is issue 10 #7: realistic Karpenter NodePools
// carrying values Stowage refuses are rejected with every reason instead of
// passed through, and the valid ones in the same file still convert.
func TestConvertRejectsInvalid(t *testing.T) {
	f, err := os.Open("testdata/karpenter-invalid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := ConvertYAML("bad.yaml", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 1 || res.Objects[0].GetName() != "fine" {
		var names []string
		for _, o := range res.Objects {
			names = append(names, o.GetName())
		}
		t.Errorf("converted %v, want only the valid pool fine", names)
	}
	want := map[string][]string{
		"NodePool/budget-over-100":   {`spec.disruption.budgets[0].nodes: Invalid value: "150%"`},
		"NodePool/bad-cron":          {`spec.disruption.budgets[0].schedule: Invalid value: "0 25 * * *": not a valid cron expression`},
		"NodePool/negative-duration": {`spec.disruption.consolidateAfter: Invalid value: "-5s": invalid duration "-5s"`},
		"NodePool/heavy":             {`spec.weight: Invalid value: 1000: must be from 1 to 100`},
		"NodePool/bogus-operator":    {`spec.template.spec.requirements[0].operator: Unsupported value: "Bogus"`},
		"NodePool/gt-spot":           {`spec.template.spec.requirements[0].values: Invalid value: ["spot"]: operators Gt and Lt take exactly one integer value`},
		"NodePool/hello":             {`spec: must be an object, got string hello`},
		"NodePool/contradiction": {
			`spec.template.spec.expireAfter: Invalid value: "99999999999999h"`,
			`spec.template.spec.requirements[0]: Invalid value: "stowage.dev/instance-family": requirements contradict each other`,
			`spec.template.spec.taints[0].effect: Unsupported value: "Bogus"`,
		},
	}
	got := map[string][]string{}
	for _, r := range res.Rejected {
		got[r.Object] = r.Reasons
		if !strings.HasPrefix(r.String(), "bad.yaml#") {
			t.Errorf("rejection %q does not name its source", r)
		}
	}
	for obj, reasons := range want {
		for _, w := range reasons {
			if !slices.ContainsFunc(got[obj], func(s string) bool { return strings.HasPrefix(s, w) }) {
				t.Errorf("%s: reasons %q lack one starting %q", obj, got[obj], w)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("rejected %d objects, want %d: %v", len(got), len(want), got)
	}
}
