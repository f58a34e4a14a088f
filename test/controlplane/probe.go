//go:build unix

package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const probeInterval = 100 * time.Millisecond

// waitReady proves each requested component works by watching it do its job,
// because with leader election off (one replica, fresh etcd) they publish no
// lease, and their health ports are disabled.
func (c *ControlPlane) waitReady(ctx context.Context, opts Options) error {
	if opts.ControllerManager {
		// The serviceaccount controller creates "default" in every namespace.
		if err := c.poll(ctx, "kube-controller-manager to create the default service account", func(ctx context.Context) (bool, error) {
			err := c.Client.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "default"}, &corev1.ServiceAccount{})
			return err == nil, client.IgnoreNotFound(err)
		}); err != nil {
			return err
		}
	}
	if opts.Kwok {
		return c.probeNode(ctx, opts)
	}
	if opts.Scheduler {
		return c.probeScheduler(ctx)
	}
	return nil
}

// probeScheduler creates a pod no node can hold and waits for the scheduler
// to mark it unschedulable.
func (c *ControlPlane) probeScheduler(ctx context.Context) error {
	pod := probePod("stowage-probe-scheduler", map[string]string{"stowage.dev/probe": "no-such-node"})
	if err := c.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating scheduler probe pod: %w", err)
	}
	defer c.deleteAndWait(context.WithoutCancel(ctx), pod)
	return c.poll(ctx, "kube-scheduler to try the probe pod", func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		for _, cond := range pod.Status.Conditions {
			if cond.Type == corev1.PodScheduled {
				return true, nil
			}
		}
		return false, nil
	})
}

// probeNode registers a kwok-managed node and waits for kwok to make it
// Ready; with the controller manager, for the not-ready taint to be lifted;
// with the scheduler too, for a pod to be bound and (by kwok) Running.
func (c *ControlPlane) probeNode(ctx context.Context, opts Options) error {
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "stowage-probe-node",
			Annotations: map[string]string{KwokNodeAnnotation: KwokNodeAnnotationValue},
			Labels:      map[string]string{corev1.LabelHostname: "stowage-probe-node"},
		},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourcePods: resource.MustParse("10"), corev1.ResourceCPU: resource.MustParse("1"),
			corev1.ResourceMemory: resource.MustParse("1Gi"),
		}},
	}
	node.Status.Capacity = node.Status.Allocatable
	if err := c.Client.Create(ctx, node); err != nil {
		return fmt.Errorf("creating probe node: %w", err)
	}
	defer c.deleteAndWait(context.WithoutCancel(ctx), node)
	if err := c.poll(ctx, "kwok to make the probe node Ready", func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(node), node); err != nil {
			return false, err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	}); err != nil {
		return err
	}
	if !opts.ControllerManager || !opts.Scheduler {
		return nil
	}
	pod := probePod("stowage-probe-pod", map[string]string{corev1.LabelHostname: node.Name})
	if err := c.Client.Create(ctx, pod); err != nil {
		return fmt.Errorf("creating probe pod: %w", err)
	}
	defer c.deleteAndWait(context.WithoutCancel(ctx), pod)
	return c.poll(ctx, "the probe pod to be scheduled and Running", func(ctx context.Context) (bool, error) {
		if err := c.Client.Get(ctx, client.ObjectKeyFromObject(pod), pod); err != nil {
			return false, err
		}
		return pod.Spec.NodeName == node.Name && pod.Status.Phase == corev1.PodRunning, nil
	})
}

func probePod(name string, nodeSelector map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: metav1.NamespaceDefault, Name: name},
		Spec: corev1.PodSpec{
			NodeSelector:                  nodeSelector,
			TerminationGracePeriodSeconds: new(int64),
			Containers:                    []corev1.Container{{Name: "probe", Image: "probe"}},
		},
	}
}

// deleteAndWait removes a probe object so tests start from an empty cluster.
func (c *ControlPlane) deleteAndWait(ctx context.Context, obj client.Object) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := c.Client.Delete(ctx, obj, client.GracePeriodSeconds(0)); client.IgnoreNotFound(err) != nil {
		progress("deleting probe %s: %v", obj.GetName(), err)
		return
	}
	err := wait.PollUntilContextCancel(ctx, probeInterval, true, func(ctx context.Context) (bool, error) {
		err := c.Client.Get(ctx, client.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
	if err != nil {
		progress("waiting for probe %s to be deleted: %v", obj.GetName(), err)
	}
}

// poll runs cond until it holds, failing early when a component has exited.
func (c *ControlPlane) poll(ctx context.Context, what string, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextCancel(ctx, probeInterval, true, func(ctx context.Context) (bool, error) {
		for _, ch := range c.children {
			if done, err := ch.exited(); done {
				return false, fmt.Errorf("%s exited during start-up: %v", ch.name, err)
			}
		}
		return cond(ctx)
	})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return fmt.Errorf("timed out waiting for %s: %w", what, err)
		}
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}
