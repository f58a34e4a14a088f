package importer

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Fields Stowage's aws.stowage.dev/v1 EC2NodeClass has (kubelet,
// capacityReservationSelectorTerms, amiFamily, AMI terms by name alone)
// must carry over, not be dropped as having "no Stowage equivalent".
func TestConvertEC2NodeClassFieldsStowageHas(t *testing.T) {
	in := `
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: custom}
spec:
  amiFamily: Bottlerocket
  amiSelectorTerms:
    - name: my-bottlerocket-*
      owner: "123456789012"
  subnetSelectorTerms: [{id: subnet-0a1b}]
  securityGroupSelectorTerms: [{id: sg-0a1b}]
  capacityReservationSelectorTerms:
    - id: cr-0123456789abcdef0
    - tags: {team: ml}
      ownerID: "123456789012"
  role: nodes
  kubelet:
    maxPods: 58
    podsPerCore: 4
    kubeReserved: {cpu: 200m, memory: 1Gi}
    systemReserved: {memory: 500Mi}
    evictionHard: {memory.available: 5%}
    evictionSoft: {memory.available: 10%}
    evictionSoftGracePeriod: {memory.available: 1m0s}
    imageGCHighThresholdPercent: 85
    imageGCLowThresholdPercent: 80
    clusterDNS: [10.0.0.10]
`
	res, err := ConvertYAML("in", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 1 {
		t.Fatalf("got %d objects", len(res.Objects))
	}
	out, err := MarshalYAML(res.Objects)
	if err != nil {
		t.Fatal(err)
	}
	want := `
apiVersion: aws.stowage.dev/v1
kind: EC2NodeClass
metadata: {name: custom}
spec:
  amiFamily: Bottlerocket
  amiSelectorTerms:
    - name: my-bottlerocket-*
      owner: "123456789012"
  subnetSelectorTerms: [{id: subnet-0a1b}]
  securityGroupSelectorTerms: [{id: sg-0a1b}]
  capacityReservationSelectorTerms:
    - id: cr-0123456789abcdef0
    - tags: {team: ml}
      ownerID: "123456789012"
  role: nodes
  kubelet:
    maxPods: 58
    kubeReserved: {cpu: 200m, memory: 1Gi}
    systemReserved: {memory: 500Mi}
    evictionHard: {memory.available: 5%}
    evictionSoft: {memory.available: 10%}
    evictionSoftGracePeriod: {memory.available: 1m0s}
    imageGCHighThresholdPercent: 85
    imageGCLowThresholdPercent: 80
`
	if diff := cmp.Diff(mustYAML(t, want), mustYAML(t, string(out))); diff != "" {
		t.Errorf("object mismatch (-want +got):\n%s", diff)
	}
	var got []string
	for _, w := range res.Warnings {
		got = append(got, w.String())
	}
	wantWarnings := []string{
		"in#1: EC2NodeClass/custom: spec.kubelet.clusterDNS: no Stowage equivalent; dropped",
		"in#1: EC2NodeClass/custom: spec.kubelet.podsPerCore: no Stowage equivalent; dropped",
	}
	if diff := cmp.Diff(wantWarnings, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// Karpenter lets amiFamily name an alias's own family; Stowage refuses
// amiFamily beside an alias, so the import must not carry it over.
func TestConvertEC2NodeClassAliasWithAMIFamily(t *testing.T) {
	in := `
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: std}
spec:
  amiFamily: AL2023
  amiSelectorTerms: [{alias: al2023@latest}]
  subnetSelectorTerms: [{id: subnet-0a1b}]
  securityGroupSelectorTerms: [{id: sg-0a1b}]
  role: nodes
`
	res, err := ConvertYAML("in", strings.NewReader(in))
	if err != nil || len(res.Objects) != 1 {
		t.Fatalf("%v, %d objects", err, len(res.Objects))
	}
	spec := res.Objects[0].Object["spec"].(map[string]any)
	if _, ok := spec["amiFamily"]; ok {
		t.Errorf("amiFamily kept beside an alias term; Stowage refuses that")
	}
}
