//go:build unix

package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// TestTerminationDrains deletes a Ready NodeClaim whose Node runs a pod
// protected by a PDB, an unprotected pod and a DaemonSet pod: the Node is
// cordoned, the unprotected pod evicted, the protected one held until the
// PDB is relaxed, the DaemonSet pod never evicted, and finally the machine
// and the Node are deleted.
func TestTerminationDrains(t *testing.T) {
	cl := lifeStartCluster(t)
	c := cl.cp.Client
	ctx := context.Background()
	lifeStartManager(t, cl.cp, cl.cloud, cl.cloud.Unavailable())

	claim := lifeClaim("life-drain", lifeOffering("g5.xlarge", "us-east-1a", v1.CapacityTypeOnDemand))
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	claim = lifeWaitReady(t, c, claim.Name)
	nodeName := claim.Status.NodeName

	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "life-agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "life-agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "life-agent"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "agent"}}},
			},
		},
	}
	// maxUnavailable needs a controller to count the expected pods, hence a Deployment.
	webLabels := map[string]string{"app": "life-web"}
	webDeploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "life-web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: webLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: webLabels},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{corev1.LabelHostname: nodeName},
					Containers:   []corev1.Container{{Name: "web", Image: "web"}},
				},
			},
		},
	}
	free := lifePod("life-free", nodeName, nil)
	for _, obj := range []client.Object{ds, webDeploy, free} {
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "life-web"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &intstr.IntOrString{Type: intstr.Int, IntVal: 0},
			Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": "life-web"}},
		},
	}
	if err := c.Create(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	var agent string
	web := &corev1.Pod{}
	lifeEventually(t, "pods running and the PDB observed", func(ctx context.Context) (bool, error) {
		pods := &corev1.PodList{}
		if err := c.List(ctx, pods, client.InNamespace("default")); err != nil {
			return false, err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Spec.NodeName == nodeName && p.Status.Phase == corev1.PodRunning {
				running++
				switch p.Labels["app"] {
				case "life-agent":
					agent = p.Name
				case "life-web":
					p.DeepCopyInto(web)
				}
			}
		}
		if err := c.Get(ctx, client.ObjectKeyFromObject(pdb), pdb); err != nil {
			return false, err
		}
		ok := running == 3 && agent != "" && web.Name != "" && pdb.Status.ObservedGeneration == pdb.Generation &&
			pdb.Status.ExpectedPods == 1
		if !ok {
			return false, fmt.Errorf("%d of 3 pods running on %s (agent %q), pdb status %+v", running, nodeName, agent, pdb.Status)
		}
		return true, nil
	})

	if err := c.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	lifeWaitGone(t, c, free)
	lifeEventually(t, "the PDB to refuse an eviction", func(ctx context.Context) (bool, error) {
		evs, err := lifeEvents(ctx, c, "default", web.Name)
		return evs["EvictionBlocked"] > 0, err
	})
	node := &corev1.Node{}
	if err := c.Get(ctx, client.ObjectKey{Name: nodeName}, node); err != nil {
		t.Fatalf("node must stay while the PDB holds a pod: %v", err)
	}
	cordoned := false
	for _, taint := range node.Spec.Taints {
		cordoned = cordoned || (taint.Key == v1.DisruptedTaintKey && taint.Effect == corev1.TaintEffectNoSchedule)
	}
	if !cordoned {
		t.Errorf("node taints = %v, want the disrupted taint", node.Spec.Taints)
	}
	for _, name := range []string{web.Name, agent} {
		p := &corev1.Pod{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: name}, p); err != nil || !p.DeletionTimestamp.IsZero() {
			t.Errorf("pod %s must still run while the PDB blocks (err %v)", name, err)
		}
	}
	if _, err := cl.cloud.Get(ctx, claim.Status.ProviderID); err != nil {
		t.Errorf("machine must live until the drain ends: %v", err)
	}

	if err := c.Get(ctx, client.ObjectKeyFromObject(pdb), pdb); err != nil {
		t.Fatal(err)
	}
	pdb.Spec.MaxUnavailable = &intstr.IntOrString{Type: intstr.Int, IntVal: 1}
	if err := c.Update(ctx, pdb); err != nil {
		t.Fatal(err)
	}
	lifeWaitGone(t, c, claim)
	if _, err := cl.cloud.Get(ctx, claim.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("machine %s must be deleted, Get returned %v", claim.Status.ProviderID, err)
	}
	lifeWaitGone(t, c, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}})
	// The DaemonSet pod goes last (evicted once the applications are gone,
	// if the node lives that long); that it stayed while the PDB held the
	// web pod is checked above.
	evs, err := lifeEvents(ctx, c, "default", web.Name)
	if err != nil {
		t.Fatal(err)
	}
	if evs["Evicted"] == 0 {
		t.Errorf("pod %s left without an eviction: %v", web.Name, evs)
	}
}

// TestTerminationOnNodeDelete: deleting the Node deletes its claim, which
// drains and deletes the machine.
func TestTerminationOnNodeDelete(t *testing.T) {
	cl := lifeStartCluster(t)
	c := cl.cp.Client
	ctx := context.Background()
	lifeStartManager(t, cl.cp, cl.cloud, cl.cloud.Unavailable())

	claim := lifeClaim("life-node-delete", lifeOffering("g5.xlarge", "us-east-1a", v1.CapacityTypeSpot))
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	claim = lifeWaitReady(t, c, claim.Name)
	if err := c.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: claim.Status.NodeName}}); err != nil {
		t.Fatal(err)
	}
	lifeWaitGone(t, c, claim)
	lifeWaitGone(t, c, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: claim.Status.NodeName}})
	if _, err := cl.cloud.Get(ctx, claim.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("machine %s must be deleted, Get returned %v", claim.Status.ProviderID, err)
	}
}

func lifePod(name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:   node,
			Containers: []corev1.Container{{Name: "app", Image: "app"}},
		},
	}
}

// TestTerminationGracePeriod: a do-not-disrupt pod holds the machine until
// the claim's terminationGracePeriod has passed, then it is deleted anyway.
func TestTerminationGracePeriod(t *testing.T) {
	cl := lifeStartCluster(t)
	c := cl.cp.Client
	ctx := context.Background()
	lifeStartManager(t, cl.cp, cl.cloud, nil)

	claim := lifeClaim("life-grace", lifeOffering("g5.xlarge", "us-east-1a", v1.CapacityTypeOnDemand))
	// Long enough that the checks below run well inside it on a loaded machine.
	claim.Spec.TerminationGracePeriod = &metav1.Duration{Duration: 20 * time.Second}
	if err := c.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	claim = lifeWaitReady(t, c, claim.Name)
	training := lifePod("life-training", claim.Status.NodeName, nil)
	training.Annotations = map[string]string{v1.AnnotationDoNotDisrupt: "true"}
	// A pod is deleted once the claim's deadline minus its own grace period
	// has come; with the default 30 s, longer than the claim's 20 s, it would
	// be deleted at once instead of holding the drain.
	training.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
	if err := c.Create(ctx, training); err != nil {
		t.Fatal(err)
	}
	lifeEventually(t, "the pod running", func(ctx context.Context) (bool, error) {
		err := c.Get(ctx, client.ObjectKeyFromObject(training), training)
		return training.Status.Phase == corev1.PodRunning, err
	})

	if err := c.Delete(ctx, claim); err != nil {
		t.Fatal(err)
	}
	lifeEventually(t, "the drain to wait on the do-not-disrupt pod", func(ctx context.Context) (bool, error) {
		evs, err := lifeEvents(ctx, c, metav1.NamespaceDefault, claim.Name)
		return evs["DoNotDisrupt"] > 0, err
	})
	if err := c.Get(ctx, client.ObjectKeyFromObject(training), training); err != nil || !training.DeletionTimestamp.IsZero() {
		t.Fatalf("the do-not-disrupt pod must stay within the grace period (err %v)", err)
	}
	if _, err := cl.cloud.Get(ctx, claim.Status.ProviderID); err != nil {
		t.Fatalf("machine must live within the grace period: %v", err)
	}

	lifeWaitGone(t, c, claim)
	lifeWaitGone(t, c, training)
	if _, err := cl.cloud.Get(ctx, claim.Status.ProviderID); !cloudprovider.IsNotFound(err) {
		t.Errorf("machine %s must be deleted, Get returned %v", claim.Status.ProviderID, err)
	}
	evs, err := lifeEvents(ctx, c, metav1.NamespaceDefault, training.Name)
	if err != nil {
		t.Fatal(err)
	}
	if evs["TerminationGracePeriodElapsed"] == 0 {
		t.Errorf("events for %s = %v, want TerminationGracePeriodElapsed", training.Name, evs)
	}
}
