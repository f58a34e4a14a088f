package importer

import (
	"strings"
	"testing"
)

// An EC2NodeClass whose AMI terms all fail to convert would be refused by
// the API server (amiSelectorTerms is required): import must reject it, as
// it rejects NodePools Stowage would refuse, not print it and succeed.
func TestAuditEC2NodeClassWithoutRequiredFieldsIsRejected(t *testing.T) {
	res, err := ConvertYAML("in", strings.NewReader(`
apiVersion: karpenter.k8s.aws/v1
kind: EC2NodeClass
metadata: {name: legacy}
spec:
  amiSelectorTerms: [{alias: al2@latest}]
  subnetSelectorTerms: [{id: subnet-0a1b}]
  securityGroupSelectorTerms: [{id: sg-0a1b}]
  role: nodes
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Objects) != 0 || len(res.Rejected) != 1 {
		t.Fatalf("%d objects, %d rejected; want the class rejected", len(res.Objects), len(res.Rejected))
	}
	if r := res.Rejected[0].String(); !strings.Contains(r, "spec.amiSelectorTerms") {
		t.Errorf("rejection does not name the field: %s", r)
	}
}
