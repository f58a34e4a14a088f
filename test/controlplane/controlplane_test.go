//go:build linux

package controlplane

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// TestGPUPodRuns is the end-to-end proof the other suites rely on: a kwok
// Node advertising one GPU takes a pod that asks for it, the pod runs, and
// Stop leaves no process or directory behind.
func TestGPUPodRuns(t *testing.T) {
	logs := &lockedBuffer{}
	cp, err := Start(context.Background(), Options{ControllerManager: true, Scheduler: true, Kwok: true, CRDs: true, Log: logs})
	if err != nil {
		t.Fatalf("Start: %v\n%s", err, logs)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cp.Stop()
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs)
		}
	})
	ctx := context.Background()
	c := cp.Client

	gpu := v1.ResourceNvidiaGPU
	alloc := corev1.ResourceList{
		corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods: resource.MustParse("110"), gpu: resource.MustParse("1"),
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "gpu-node",
			Annotations: map[string]string{KwokNodeAnnotation: KwokNodeAnnotationValue},
			Labels:      map[string]string{corev1.LabelHostname: "gpu-node"},
		},
		Status: corev1.NodeStatus{Capacity: alloc, Allocatable: alloc},
	}
	if err := c.Create(ctx, node); err != nil {
		t.Fatalf("creating node: %v", err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "trainer"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "cuda", Image: "cuda",
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{gpu: resource.MustParse("1")},
				Limits:   corev1.ResourceList{gpu: resource.MustParse("1")},
			},
		}}},
	}
	if err := c.Create(ctx, pod); err != nil {
		t.Fatalf("creating pod: %v", err)
	}
	waitCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := wait.PollUntilContextCancel(waitCtx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		return pod.Status.Phase == corev1.PodRunning, nil
	}); err != nil {
		t.Fatalf("pod never ran (phase %q, node %q, conditions %+v): %v",
			pod.Status.Phase, pod.Spec.NodeName, pod.Status.Conditions, err)
	}
	if pod.Spec.NodeName != node.Name {
		t.Errorf("pod bound to %q, want %q", pod.Spec.NodeName, node.Name)
	}

	// CRDs were installed and are served.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := c.Get(ctx, client.ObjectKey{Name: "nodeclaims.stowage.dev"}, crd); err != nil {
		t.Errorf("NodeClaim CRD not installed: %v", err)
	}
	if err := c.List(ctx, &v1.NodePoolList{}); err != nil {
		t.Errorf("listing NodePools: %v", err)
	}

	// The kubeconfig works for other clients (kubectl, the components).
	if cfg, err := clientcmd.BuildConfigFromFlags("", cp.KubeconfigPath); err != nil {
		t.Errorf("loading kubeconfig %s: %v", cp.KubeconfigPath, err)
	} else if kc, err := client.New(cfg, client.Options{Scheme: cp.Scheme}); err != nil {
		t.Errorf("client from kubeconfig: %v", err)
	} else if err := kc.Get(ctx, client.ObjectKeyFromObject(node), &corev1.Node{}); err != nil {
		t.Errorf("reading the node through the kubeconfig: %v", err)
	}

	children := childPIDs(t)
	if len(children) < 5 {
		t.Errorf("expected at least 5 child processes (etcd, apiserver, kcm, scheduler, kwok), found %v", children)
	}
	dir := cp.Dir
	stopped = true
	if err := cp.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, pid := range children {
		if processAlive(pid) {
			t.Errorf("process %d (%s) still running after Stop", pid, procName(pid))
		}
	}
	if left := childPIDs(t); len(left) > 0 {
		t.Errorf("child processes left after Stop: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary directory %s not removed: %v", dir, err)
	}
	if err := cp.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	for _, name := range []string{BinEtcd, BinAPIServer, BinControllerManager, BinScheduler, BinKwok} {
		if !strings.Contains(logs.String(), "\n"+name+": ") {
			t.Errorf("Options.Log has no line from %s", name)
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMissingBinaries checks the message points at `make controlplane`.
func TestMissingBinaries(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: t.TempDir(), Kwok: true})
	var missing *MissingBinariesError
	if err == nil || !errorsAs(err, &missing) {
		t.Fatalf("want MissingBinariesError, got %v", err)
	}
	if !strings.Contains(err.Error(), "make controlplane") || !strings.Contains(err.Error(), "kwok") {
		t.Errorf("error %q must name the binary and `make controlplane`", err)
	}
}

// TestSweepStaleDirs removes a crashed run's directory but not a live one's.
func TestSweepStaleDirs(t *testing.T) {
	live, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(live)
	stale, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(stale)
	writePID := func(dir string, pid int) {
		if err := os.WriteFile(filepath.Join(dir, ownerPIDFile), []byte(strconv.Itoa(pid)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writePID(live, os.Getpid())
	writePID(stale, deadPID(t))
	sweepStaleDirs()
	if _, err := os.Stat(live); err != nil {
		t.Errorf("live directory removed: %v", err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale directory kept: %v", err)
	}
}

func TestPrefixWriter(t *testing.T) {
	var b strings.Builder
	w := &prefixWriter{prefix: []byte("etcd: "), w: &b}
	for _, s := range []string{"one\ntw", "o\n", "three"} {
		if _, err := w.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := b.String(), "etcd: one\netcd: two\n"; got != want {
		t.Errorf("got %q, want %q (an unfinished line waits for its newline)", got, want)
	}
}
