package fake

import (
	"context"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// KwokAnnotation (value KwokAnnotationValue) hands a Node to kwok, which
// plays its kubelet: marks it Ready, heartbeats, and runs its pods.
const (
	KwokAnnotation      = "kwok.x-k8s.io/node"
	KwokAnnotationValue = "fake"
)

// A kubelet keeps trying to register until it does: failed attempts back
// off from registerBackoff, doubling up to registerMaxBackoff.
const (
	registerBackoff    = time.Second
	registerMaxBackoff = 30 * time.Second
	registerTimeout    = 30 * time.Second
)

// Start makes the cloud restart-safe: it registers Nodes for recorded
// instances whose Node is missing (now, or when their launch latency is
// up), then waits for ctx and stops pending registrations. It implements
// controller-runtime's manager.Runnable.
func (c *Cloud) Start(ctx context.Context) error {
	if err := c.RegisterMissing(ctx); err != nil {
		return err
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.control(ctx)
	}()
	<-ctx.Done()
	c.Stop()
	return nil
}

// NeedLeaderElection runs Start on the leader only, the one that launches.
func (c *Cloud) NeedLeaderElection() bool { return true }

// Stop cancels delayed registrations and waits for them to end. It is safe
// to call more than once.
func (c *Cloud) Stop() {
	c.mu.Lock()
	select {
	case <-c.stopping:
	default:
		close(c.stopping)
	}
	c.mu.Unlock()
	c.wg.Wait()
}

// RegisterMissing registers the Node of every instance that has none, as a
// kubelet coming back would: immediately when the launch latency has
// passed, else when it does.
func (c *Cloud) RegisterMissing(ctx context.Context) error {
	insts, err := c.listInstances(ctx)
	if err != nil {
		return fmt.Errorf("fake cloud: registering missing nodes: %w", err)
	}
	for _, inst := range insts {
		if err := c.ensureRegistered(ctx, inst); err != nil {
			return err
		}
	}
	return nil
}

// ensureRegistered registers the instance's Node unless it exists, as its
// kubelet still trying would: at once when the launch latency has passed,
// else when it does.
func (c *Cloud) ensureRegistered(ctx context.Context, inst *instance) error {
	err := c.reader.Get(ctx, client.ObjectKey{Name: inst.ID}, &corev1.Node{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("fake cloud: reading node %s: %w", inst.ID, err)
	}
	if wait := inst.LaunchTime.Add(c.latency).Sub(c.clock.Now()); wait > 0 {
		c.registerAfter(log.FromContext(ctx), inst.ID, wait)
		return nil
	}
	return c.registerNode(ctx, inst.ID)
}

// scheduleRegistration registers the instance's Node after the launch
// latency, or before returning when the latency is zero.
func (c *Cloud) scheduleRegistration(ctx context.Context, inst *instance) error {
	if c.latency == 0 {
		return c.registerNode(ctx, inst.ID)
	}
	c.registerAfter(log.FromContext(ctx), inst.ID, c.latency)
	return nil
}

// registerAfter starts one goroutine per instance that waits on the
// injected clock, so tests step time instead of sleeping.
func (c *Cloud) registerAfter(logger logr.Logger, id string, after time.Duration) {
	c.mu.Lock()
	select {
	case <-c.stopping:
		c.mu.Unlock()
		return
	default:
	}
	if _, ok := c.pending[id]; ok {
		c.mu.Unlock()
		return
	}
	cancel := make(chan struct{})
	c.pending[id] = cancel
	c.wg.Add(1)
	c.mu.Unlock()

	go func() {
		defer c.wg.Done()
		defer func() {
			c.mu.Lock()
			if c.pending[id] == cancel {
				delete(c.pending, id)
			}
			c.mu.Unlock()
		}()
		wait := after
		for attempt := 1; ; attempt++ {
			timer := c.clock.NewTimer(wait)
			select {
			case <-timer.C():
			case <-cancel:
				timer.Stop()
				return
			case <-c.stopping:
				timer.Stop()
				return
			}
			ctx, done := context.WithTimeout(context.Background(), registerTimeout)
			err := c.registerNode(ctx, id)
			done()
			if err == nil {
				if c.registered != nil {
					c.registered <- id
				}
				return
			}
			wait = min(registerBackoff<<min(attempt-1, 10), registerMaxBackoff)
			logger.Error(err, "fake kubelet failed to register node, retrying", "instance", id, "attempt", attempt, "in", wait)
		}
	}()
}

func (c *Cloud) cancelRegistration(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cancel, ok := c.pending[id]; ok {
		close(cancel)
		delete(c.pending, id)
	}
}

// registerNode creates the instance's Node as its kubelet would. It re-reads
// the record under nodeMu so a Node never appears for a deleted instance.
func (c *Cloud) registerNode(ctx context.Context, id string) error {
	c.nodeMu.Lock()
	defer c.nodeMu.Unlock()
	inst, err := c.getInstance(ctx, id)
	if err != nil {
		return fmt.Errorf("fake kubelet: registering %s: %w", id, err)
	}
	n := node(inst)
	if err := c.client.Create(ctx, n); err != nil {
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("fake kubelet: creating node %s: %w", id, err)
		}
		n = nil // a restart: the slice, if any, is owned by the Node already there
	}
	if err := c.publishSlice(ctx, inst, n); err != nil {
		return err
	}
	log.FromContext(ctx).V(1).Info("fake kubelet registered node", "node", id, "providerID", inst.ProviderID)
	return nil
}

// node is the Node a kubelet on the instance registers: Stowage's
// unregistered taint plus the claim's taints and startup taints, and the
// capacity the device plugins will report.
func node(inst *instance) *corev1.Node {
	taints := v1.RegistrationTaints(inst.Taints, inst.StartupTaints)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        inst.ID,
			Labels:      inst.Labels,
			Annotations: map[string]string{KwokAnnotation: KwokAnnotationValue},
		},
		Spec: corev1.NodeSpec{ProviderID: inst.ProviderID, Taints: taints},
		Status: corev1.NodeStatus{
			Capacity:    nodeResources(inst.Capacity),
			Allocatable: nodeResources(inst.Allocatable),
			NodeInfo: corev1.NodeSystemInfo{
				Architecture:    inst.Labels[v1.LabelArch],
				OperatingSystem: inst.Labels[v1.LabelOS],
				OSImage:         inst.image(),
			},
		},
	}
}

// nodeResources is what a kubelet reports of l: attach limits are the CSI
// driver's to report, in its CSINode.
func nodeResources(l corev1.ResourceList) corev1.ResourceList {
	out := l.DeepCopy()
	for name := range out {
		if cloudprovider.IsAttachLimitResource(name) {
			delete(out, name)
		}
	}
	return out
}
