package provisioning

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/state"
	"github.com/stowage-k8s/stowage/pkg/utils/steer"
)

// steerWorkers patch pods of different nodes in parallel; the pods of one
// node are patched by one worker.
const steerWorkers = 8

// steerer makes the kube-scheduler put pods where the plan put them. Once a
// planned node reports Ready, it sets status.nominatedNodeName on the pods
// nominated to it. The scheduler then tries that node first for those pods,
// and, when placing any other pod on the node, counts the nominated pods as
// if they already ran there. Without it, in a pool whose GPU machines are not
// tainted, the scheduler spread CPU pods onto fresh GPU machines (they are the
// emptiest nodes), the GPU pods planned there no longer fit, and a second GPU
// machine was bought for each.
//
// The scheduler clears nominatedNodeName whenever the pod fails a scheduling
// attempt, so it is set only once the node is Ready (a failed attempt while
// the node boots would clear it at once), and set again when a pod that is
// still nominated shows up without it.
type steerer struct {
	client  client.Client
	cluster *state.Cluster
	queue   workqueue.TypedRateLimitingInterface[string]
}

func newSteerer(c client.Client, cluster *state.Cluster) *steerer {
	return &steerer{
		client:  c,
		cluster: cluster,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 10*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "provisioning-steer"}),
	}
}

// enqueue asks for the pods nominated to the named node to be steered there.
func (s *steerer) enqueue(nodeName string) {
	if nodeName != "" {
		s.queue.Add(nodeName)
	}
}

// run processes the queue until ctx ends; only the leader steers.
func (s *steerer) run(ctx context.Context) {
	var wg sync.WaitGroup
	for range steerWorkers {
		wg.Go(func() {
			for s.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
}

func (s *steerer) next(ctx context.Context) bool {
	name, shutdown := s.queue.Get()
	if shutdown {
		return false
	}
	defer s.queue.Done(name)
	if err := s.steer(ctx, name); err != nil {
		log.FromContext(ctx).V(1).Info("steering pods to their planned node failed; retrying", "node", name, "error", err.Error())
		s.queue.AddRateLimited(name)
		return true
	}
	s.queue.Forget(name)
	return true
}

// steer sets nominatedNodeName on the pods nominated to the node, if the node
// is ready to take them.
func (s *steerer) steer(ctx context.Context, nodeName string) error {
	node := s.cluster.Node(nodeName)
	if node == nil || !steerable(node) {
		return nil
	}
	n, err := steer.Pods(ctx, s.client, s.cluster.NominatedPods(nodeName), nodeName)
	if n > 0 {
		log.FromContext(ctx).V(1).Info("steered pods to their planned node", "pods", n, "node", nodeName)
	}
	return err
}

// steerable reports whether pods may be pointed at node now: it is Ready,
// registered by Stowage (or not Stowage's at all) and not going away.
func steerable(node *corev1.Node) bool {
	if node.DeletionTimestamp != nil || node.Spec.Unschedulable {
		return false
	}
	for _, t := range node.Spec.Taints {
		if t.Key == v1.UnregisteredTaintKey || t.Key == v1.DisruptedTaintKey {
			return false
		}
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
