//go:build unix

package e2e

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// TestProvisioning runs the operator against the local control plane and the
// fake cloud: pending pods become Running on nodes Stowage bought, within
// each NodePool's requirements, taints and limits.
func TestProvisioning(t *testing.T) {
	pc := provStart(t)
	ctx := context.Background()
	const ns = "prov"
	provCreate(t, pc.c,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		provPool("a10g", "a10g", corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("16")},
			provReq(v1.LabelGPUName, corev1.NodeSelectorOpIn, "a10g"),
			provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)),
		provPool("limited", "limited", corev1.ResourceList{v1.ResourceNvidiaGPU: resource.MustParse("2")},
			provReq(v1.LabelGPUName, corev1.NodeSelectorOpIn, "l4"),
			provReq(v1.LabelGPUCount, corev1.NodeSelectorOpIn, "1"),
			provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeSpot)),
		provPool("ports", "ports", nil, provReq(v1.LabelCapacityType, corev1.NodeSelectorOpIn, v1.CapacityTypeOnDemand)),
	)

	t.Run("GPU pods run on nodes of the pool's types", func(t *testing.T) {
		names := []string{"infer-0", "infer-1", "infer-2"}
		for _, n := range names {
			provCreate(t, pc.c, provPod(ns, n, nil, []string{"a10g"}, "cpu", "2", "memory", "8Gi", "nvidia.com/gpu", "1"))
		}
		for _, n := range names {
			pod := &corev1.Pod{}
			provEventually(t, "pod "+n+" Running", func(ctx context.Context) (bool, error) {
				err := pc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, pod)
				return err == nil && pod.Status.Phase == corev1.PodRunning, err
			})
			node := &corev1.Node{}
			if err := pc.c.Get(ctx, client.ObjectKey{Name: pod.Spec.NodeName}, node); err != nil {
				t.Fatalf("getting node of %s: %v", n, err)
			}
			want := map[string]string{
				v1.LabelNodePool:     "a10g",
				v1.LabelGPUName:      "a10g",
				v1.LabelCapacityType: v1.CapacityTypeOnDemand,
			}
			for k, v := range want {
				if node.Labels[k] != v {
					t.Errorf("pod %s runs on node %s with %s=%q, want %q", n, node.Name, k, node.Labels[k], v)
				}
			}
			if it := node.Labels[v1.LabelInstanceType]; !strings.HasPrefix(it, "g5.") {
				t.Errorf("pod %s runs on instance type %q, want an a10g type (g5.*)", n, it)
			}
			if !provHasTaint(node.Spec.Taints, "a10g") {
				t.Errorf("node %s lacks the pool's taint a10g: %v", node.Name, node.Spec.Taints)
			}
			notes, err := provEventNotes(ctx, pc.c, ns, n, "Nominated")
			if err != nil {
				t.Fatal(err)
			}
			if len(notes) == 0 || !strings.Contains(notes[0], "planned onto") {
				t.Errorf("pod %s has Nominated events %q, want one saying where it was planned", n, notes)
			}
		}
	})

	t.Run("a pool limit of 2 GPUs stops at 2", func(t *testing.T) {
		names := []string{"small-0", "small-1", "small-2", "small-3"}
		for _, n := range names {
			provCreate(t, pc.c, provPod(ns, n, map[string]string{v1.LabelNodePool: "limited"}, []string{"limited"},
				"cpu", "1", "memory", "2Gi", "nvidia.com/gpu", "1"))
		}
		// Two pods fit under the limit; the other two are refused with a reason.
		var running, refused []string
		provEventually(t, "2 pods Running and 2 refused", func(ctx context.Context) (bool, error) {
			running, refused = nil, nil
			for _, n := range names {
				pod := &corev1.Pod{}
				if err := pc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, pod); err != nil {
					return false, err
				}
				if pod.Status.Phase == corev1.PodRunning {
					running = append(running, n)
					continue
				}
				notes, err := provEventNotes(ctx, pc.c, ns, n, "FailedProvisioning")
				if err != nil {
					return false, err
				}
				if len(notes) > 0 {
					refused = append(refused, n)
				}
			}
			return len(running) == 2 && len(refused) == 2, nil
		})
		claims, err := provClaims(ctx, pc.c, "limited")
		if err != nil {
			t.Fatal(err)
		}
		gpus := resource.Quantity{}
		for _, c := range claims {
			if q, ok := c.Status.Capacity[v1.ResourceNvidiaGPU]; ok {
				gpus.Add(q)
			}
		}
		if gpus.Cmp(resource.MustParse("2")) != 0 {
			t.Errorf("pool limited holds %s GPUs in %d claims, want exactly its limit of 2", gpus.String(), len(claims))
		}
	})

	t.Run("pods binding one host port are planned a node each", func(t *testing.T) {
		// Small enough to share one machine, but the kube-scheduler lets only
		// one pod per node bind a host port: a plan putting them together
		// leaves the others pending on a machine bought for them.
		names := []string{"agent-0", "agent-1", "agent-2"}
		for _, n := range names {
			pod := provPod(ns, n, map[string]string{v1.LabelNodePool: "ports"}, []string{"ports"}, "cpu", "500m", "memory", "512Mi")
			pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9100, HostPort: 9100}}
			provCreate(t, pc.c, pod)
		}
		nodes := map[string]string{}
		provEventually(t, "3 agents Running", func(ctx context.Context) (bool, error) {
			for _, n := range names {
				pod := &corev1.Pod{}
				if err := pc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: n}, pod); err != nil || pod.Status.Phase != corev1.PodRunning {
					return false, err
				}
				nodes[n] = pod.Spec.NodeName
			}
			return true, nil
		})
		planned := map[string]bool{}
		for _, n := range names {
			notes, err := provEventNotes(ctx, pc.c, ns, n, "Nominated")
			if err != nil {
				t.Fatal(err)
			}
			claimsOf := map[string]bool{}
			for _, note := range notes {
				if _, rest, ok := strings.Cut(note, "nodeclaim "); ok {
					claimsOf[strings.Fields(rest)[0]] = true
				}
			}
			if len(claimsOf) != 1 {
				t.Errorf("pod %s was planned onto %d machines (%q), want one", n, len(claimsOf), notes)
			}
			for c := range claimsOf {
				planned[c] = true
			}
		}
		if len(planned) != len(names) {
			t.Errorf("the agents were planned onto %d machines, want one each: %v", len(planned), planned)
		}
		claims, err := provClaims(ctx, pc.c, "ports")
		if err != nil {
			t.Fatal(err)
		}
		if len(claims) != len(names) {
			t.Errorf("pool ports has %d NodeClaims for %d agents (nodes %v), want one each", len(claims), len(names), nodes)
		}
	})

	t.Run("a pod no pool's taints are tolerated by gets an event and no node", func(t *testing.T) {
		provCreate(t, pc.c, provPod(ns, "untolerated", nil, nil, "cpu", "1", "nvidia.com/gpu", "1"))
		var notes []string
		provEventually(t, "a NoCompatibleNodePool event", func(ctx context.Context) (bool, error) {
			var err error
			notes, err = provEventNotes(ctx, pc.c, ns, "untolerated", "NoCompatibleNodePool")
			return len(notes) > 0, err
		})
		for _, want := range []string{"nodepool a10g: taint a10g=true:NoSchedule not tolerated", "nodepool limited:"} {
			if !strings.Contains(notes[0], want) {
				t.Errorf("event note %q does not mention %q", notes[0], want)
			}
		}
		pod := &corev1.Pod{}
		if err := pc.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "untolerated"}, pod); err != nil {
			t.Fatal(err)
		}
		if pod.Spec.NodeName != "" {
			t.Errorf("untolerated pod was bound to %s", pod.Spec.NodeName)
		}
		if nominated, _ := provEventNotes(ctx, pc.c, ns, "untolerated", "Nominated"); len(nominated) > 0 {
			t.Errorf("untolerated pod was nominated: %q", nominated)
		}
	})
}

func provHasTaint(taints []corev1.Taint, key string) bool {
	for _, t := range taints {
		if t.Key == key {
			return true
		}
	}
	return false
}
