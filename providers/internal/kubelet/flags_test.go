package kubelet

import "testing"

func TestMaySetLabel(t *testing.T) {
	for key, want := range map[string]bool{
		"stowage.dev/nodepool": true, "team": true, "node.kubernetes.io/instance-type": true,
		"topology.kubernetes.io/zone": true, "kubernetes.io/arch": true, "beta.kubernetes.io/os": true,
		"node.kubernetes.io/exclude-from-external-load-balancers": true, "kubelet.kubernetes.io/foo": true,
		"example.node.kubernetes.io/x": true, "kubernetes.azure.com/cluster": true,
		"node-role.kubernetes.io/gpu": false, "kubernetes.io/role": false, "example.k8s.io/x": false,
		"karpenter.k8s.io/x": false, "notkubernetes.io/x": true,
	} {
		if got := MaySetLabel(key); got != want {
			t.Errorf("MaySetLabel(%q) = %v, want %v", key, got, want)
		}
	}
}
