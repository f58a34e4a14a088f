package azuretest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/providers/azure"
)

// Kwok hands a Node to kwok, which then plays its kubelet.
const (
	KwokAnnotation      = "kwok.x-k8s.io/node"
	KwokAnnotationValue = "fake"
)

// Kubelet stands in for the kubelet on every VM: latency after a VM is
// running it registers the Node its custom data describes (name, providerID,
// labels, taints, max pods), with the size's capacity, and hands it to kwok;
// when the VM goes, the Node goes too, as AKS's cloud-node-manager does.
type Kubelet struct {
	cloud   *Cloud
	kube    client.Client
	latency time.Duration

	mu      sync.Mutex
	stopped bool
	wg      sync.WaitGroup
	errs    []error
}

// StartKubelet registers Nodes for VMs that run from now on, until Stop.
func (c *Cloud) StartKubelet(kube client.Client, latency time.Duration) *Kubelet {
	k := &Kubelet{cloud: c, kube: kube, latency: latency}
	c.OnRunning(func(vm VM) { k.register(vm) })
	c.OnDeleted(func(vm VM) { k.remove(vm) })
	return k
}

// Stop ends pending registrations and waits for them.
func (k *Kubelet) Stop() {
	k.mu.Lock()
	k.stopped = true
	k.mu.Unlock()
	k.wg.Wait()
}

// Errors are the registrations that failed.
func (k *Kubelet) Errors() []error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]error(nil), k.errs...)
}

func (k *Kubelet) fail(err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.errs = append(k.errs, err)
}

func (k *Kubelet) register(vm VM) {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.wg.Add(1)
	k.mu.Unlock()
	go func() {
		defer k.wg.Done()
		time.Sleep(k.latency)
		k.mu.Lock()
		stopped := k.stopped
		k.mu.Unlock()
		if stopped {
			return
		}
		node, err := k.node(vm)
		if err != nil {
			k.fail(fmt.Errorf("VM %s: %w", vm.Name, err))
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// The VM may have gone while the kubelet "booted".
		if !k.cloud.hasVM(vm.Name) {
			return
		}
		if err := k.kube.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
			k.fail(fmt.Errorf("registering node %s: %w", node.Name, err))
			return
		}
		log.FromContext(ctx).V(1).Info("azuretest kubelet registered node", "node", node.Name)
	}()
}

func (k *Kubelet) remove(vm VM) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: vm.ComputerName}}
	if err := k.kube.Delete(ctx, node); err != nil && !apierrors.IsNotFound(err) {
		k.fail(fmt.Errorf("removing node %s: %w", node.Name, err))
	}
}

func (c *Cloud) hasVM(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.vms[strings.ToLower(name)]
	return ok
}

// node builds the Node from what the VM's custom data tells its kubelet.
func (k *Kubelet) node(vm VM) (*corev1.Node, error) {
	nb, err := azure.ParseCustomData(vm.CustomData)
	if err != nil {
		return nil, err
	}
	k.cloud.mu.Lock()
	sku := k.cloud.skuLocked(vm.Size)
	k.cloud.mu.Unlock()
	if sku == nil {
		return nil, fmt.Errorf("unknown size %s", vm.Size)
	}
	vcpu, _ := strconv.Atoi(capability(sku, "vCPUs"))
	memGB, _ := strconv.ParseFloat(capability(sku, "MemoryGB"), 64)
	gpus, _ := strconv.Atoi(capability(sku, "GPUs"))
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:              *resource.NewQuantity(int64(vcpu), resource.DecimalSI),
		corev1.ResourceMemory:           *resource.NewQuantity(int64(memGB*1024)<<20, resource.BinarySI),
		corev1.ResourcePods:             *resource.NewQuantity(int64(nb.MaxPods), resource.DecimalSI),
		corev1.ResourceEphemeralStorage: *resource.NewQuantity(int64(max(vm.OSDiskSizeGB, 30))<<30, resource.BinarySI),
	}
	if gpus > 0 {
		capacity[v1.ResourceNvidiaGPU] = *resource.NewQuantity(int64(gpus), resource.DecimalSI)
	}
	allocatable := capacity.DeepCopy()
	for name, q := range nb.KubeReserved {
		r, err := resource.ParseQuantity(q)
		if err != nil {
			return nil, fmt.Errorf("kubeReserved %s %q: %w", name, q, err)
		}
		a := allocatable[corev1.ResourceName(name)]
		a.Sub(r)
		allocatable[corev1.ResourceName(name)] = a
	}
	labels := map[string]string{corev1.LabelHostname: vm.ComputerName}
	for key, val := range nb.Labels {
		labels[key] = val
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: vm.ComputerName, Labels: labels,
			Annotations: map[string]string{KwokAnnotation: KwokAnnotationValue}},
		Spec: corev1.NodeSpec{ProviderID: nb.ProviderID, Taints: nb.Taints},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: allocatable,
			NodeInfo: corev1.NodeSystemInfo{Architecture: labels[v1.LabelArch], OperatingSystem: "linux",
				KubeletVersion: "v" + nb.KubernetesVersion, OSImage: vm.Image}},
	}, nil
}
