package state

import (
	"context"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Register feeds the view from the cache's informers for Nodes, Pods,
// NodeClaims and NodePools. Call it before the cache starts; Synced turns
// true once every informer has delivered its initial list.
func (c *Cluster) Register(ctx context.Context, informers cache.Informers) error {
	feeds := []struct {
		obj     client.Object
		update  func(client.Object)
		deleted func(client.Object)
	}{
		{&corev1.Node{}, func(o client.Object) { c.UpdateNode(o.(*corev1.Node)) },
			func(o client.Object) { c.DeleteNode(o.GetName()) }},
		{&corev1.Pod{}, func(o client.Object) { c.UpdatePod(o.(*corev1.Pod)) },
			func(o client.Object) {
				c.DeletePod(types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()})
			}},
		{&v1.NodeClaim{}, func(o client.Object) { c.UpdateNodeClaim(o.(*v1.NodeClaim)) },
			func(o client.Object) { c.DeleteNodeClaim(o.GetName()) }},
		{&v1.NodePool{}, func(o client.Object) { c.UpdateNodePool(o.(*v1.NodePool)) },
			func(o client.Object) { c.DeleteNodePool(o.GetName()) }},
	}
	var regs []toolscache.ResourceEventHandlerRegistration
	for _, f := range feeds {
		inf, err := informers.GetInformer(ctx, f.obj)
		if err != nil {
			return fmt.Errorf("getting informer for %T: %w", f.obj, err)
		}
		reg, err := inf.AddEventHandler(handler(f.obj, f.update, f.deleted))
		if err != nil {
			return fmt.Errorf("watching %T: %w", f.obj, err)
		}
		regs = append(regs, reg)
	}
	c.mu.Lock()
	c.synced = func() bool {
		for _, r := range regs {
			if !r.HasSynced() {
				return false
			}
		}
		return true
	}
	c.mu.Unlock()
	return nil
}

// handler adapts typed update and delete funcs to an informer handler,
// ignoring objects of other types and unwrapping tombstones.
func handler(want client.Object, update, deleted func(client.Object)) toolscache.ResourceEventHandler {
	typed := func(o any) (client.Object, bool) {
		if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
			o = t.Obj
		}
		obj, ok := o.(client.Object)
		if !ok || reflect.TypeOf(obj) != reflect.TypeOf(want) {
			return nil, false
		}
		return obj, true
	}
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) {
			if obj, ok := typed(o); ok {
				update(obj)
			}
		},
		UpdateFunc: func(_, o any) {
			if obj, ok := typed(o); ok {
				update(obj)
			}
		},
		DeleteFunc: func(o any) {
			if obj, ok := typed(o); ok {
				deleted(obj)
			}
		},
	}
}
