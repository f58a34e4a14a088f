package manifest

import (
	"strings"
	"testing"
)

// Cluster-scoped objects have no namespace; messages must not invent one.
func TestClusterScopedObjectsHaveNoNamespace(t *testing.T) {
	_, err := Decode("sc.yaml", []byte(`apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fast}
provisioner: ebs.csi.aws.com
bogus: 1
`))
	if err == nil {
		t.Fatal("a StorageClass with an unknown field was accepted")
	}
	if want := "(StorageClass fast)"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
	// A kind simulate does not read, from a dump of a live cluster.
	set, err := Decode("nodes.yaml", []byte("apiVersion: v1\nkind: Node\nmetadata: {name: ip-10-0-0-1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Warnings) != 1 || !strings.Contains(set.Warnings[0], "(Node ip-10-0-0-1)") {
		t.Errorf("warnings %q, want one naming (Node ip-10-0-0-1)", set.Warnings)
	}
	// Namespaced kinds simulate reads still go to default, as documented.
	_, err = Decode("web.yaml", []byte(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: -1
  template:
    spec:
      containers: [{name: c}]
`))
	if err == nil || !strings.Contains(err.Error(), "(Deployment default/web)") {
		t.Errorf("error %v, want it to name (Deployment default/web)", err)
	}
}
