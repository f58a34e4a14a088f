package disruption

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/solver"
)

var start = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// firstFit is a small stand-in for solver.Solve with the same contract:
// pods go first-fit onto existing nodes, the rest onto the fewest cheapest
// new machines. It ignores affinity and topology, which these tests do not use.
func firstFit(_ context.Context, s *solver.Snapshot) (*solver.Plan, error) {
	plan := &solver.Plan{}
	free := map[string]corev1.ResourceList{}
	for _, n := range s.Nodes {
		f := n.Allocatable.DeepCopy()
		for _, p := range n.Pods {
			f = subtract(f, requests(p))
		}
		free[n.Name] = f
	}
	var rest []*corev1.Pod
	for _, p := range s.Pods {
		placed := false
		for _, n := range s.Nodes {
			if tolerates(p, n.Taints) && fits(requests(p), free[n.Name]) {
				free[n.Name] = subtract(free[n.Name], requests(p))
				plan.Bindings = append(plan.Bindings, solver.Binding{Pod: p, NodeName: n.Name})
				placed = true
				break
			}
		}
		if !placed {
			rest = append(rest, p)
		}
	}
	type option struct {
		pool string
		it   *cloudprovider.InstanceType
		off  cloudprovider.Offering
	}
	var opts []option
	for _, np := range s.NodePools {
		for _, it := range np.InstanceTypes {
			for _, o := range it.Offerings {
				if o.Available {
					opts = append(opts, option{np.Name, it, o})
				}
			}
		}
	}
	sort.SliceStable(opts, func(i, j int) bool { return opts[i].off.PricePerHour < opts[j].off.PricePerHour })
	for len(rest) > 0 {
		// The cheapest option holding the most of the remaining pods, in order.
		var best *solver.NewNode
		bestN := 0
		for _, o := range opts {
			f := o.it.Allocatable()
			var pods []*corev1.Pod
			for _, p := range rest {
				if fits(requests(p), f) {
					f = subtract(f, requests(p))
					pods = append(pods, p)
				}
			}
			if len(pods) > bestN {
				bestN = len(pods)
				best = &solver.NewNode{NodePool: o.pool, Pods: pods, Choices: []solver.Choice{{InstanceType: o.it, Offering: o.off}}}
			}
		}
		if best == nil {
			for _, p := range rest {
				plan.Unschedulable = append(plan.Unschedulable, solver.Unschedulable{Pod: p, Reason: "no instance type fits"})
			}
			break
		}
		plan.NewNodes = append(plan.NewNodes, best)
		plan.CostPerHour += best.PricePerHour()
		in := map[*corev1.Pod]bool{}
		for _, p := range best.Pods {
			in[p] = true
		}
		var left []*corev1.Pod
		for _, p := range rest {
			if !in[p] {
				left = append(left, p)
			}
		}
		rest = left
	}
	return plan, nil
}

func requests(p *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, c := range p.Spec.Containers {
		addTo(out, c.Resources.Requests)
	}
	return out
}

func fits(req, free corev1.ResourceList) bool {
	for k, q := range req {
		f, ok := free[k]
		if !ok || f.Cmp(q) < 0 {
			return false
		}
	}
	return true
}

func tolerates(p *corev1.Pod, taints []corev1.Taint) bool {
	for _, t := range taints {
		ok := false
		for _, tol := range p.Spec.Tolerations {
			if tol.Key == t.Key || (tol.Key == "" && tol.Operator == corev1.TolerationOpExists) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// fakeCloud serves instance types whose prices a test may change.
type fakeCloud struct {
	mu    sync.Mutex
	types []*cloudprovider.InstanceType
}

func (f *fakeCloud) InstanceTypes(context.Context, *v1.NodePool) ([]*cloudprovider.InstanceType, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]*cloudprovider.InstanceType, 0, len(f.types))
	for _, it := range f.types {
		cp := *it
		cp.Offerings = append([]cloudprovider.Offering(nil), it.Offerings...)
		out = append(out, &cp)
	}
	return out, nil
}

func (f *fakeCloud) setPrice(name, capacityType string, price float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range f.types {
		for i := range it.Offerings {
			if it.Name == name && it.Offerings[i].CapacityType == capacityType {
				it.Offerings[i].PricePerHour = price
			}
		}
	}
}

func instanceType(name, cpu, mem string, gpus int, prices map[string]float64) *cloudprovider.InstanceType {
	it := &cloudprovider.InstanceType{
		Name: name,
		Capacity: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem),
			corev1.ResourcePods: resource.MustParse("110")},
	}
	if gpus > 0 {
		it.Capacity[v1.ResourceNvidiaGPU] = *resource.NewQuantity(int64(gpus), resource.DecimalSI)
		it.GPU = &cloudprovider.GPU{Manufacturer: "nvidia", Name: "l4", Count: gpus}
	}
	cts := make([]string, 0, len(prices))
	for ct := range prices {
		cts = append(cts, ct)
	}
	sort.Strings(cts)
	for _, ct := range cts {
		it.Offerings = append(it.Offerings, cloudprovider.Offering{Zone: "zone-a", CapacityType: ct, PricePerHour: prices[ct], Available: true})
	}
	return it
}

// catalog: small and large CPU machines and a 1-GPU machine.
func catalog() []*cloudprovider.InstanceType {
	return []*cloudprovider.InstanceType{
		instanceType("small", "4", "16Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.20}),
		instanceType("large", "16", "64Gi", 0, map[string]float64{v1.CapacityTypeOnDemand: 0.80}),
		instanceType("gpu1", "8", "32Gi", 1, map[string]float64{v1.CapacityTypeOnDemand: 1.00, v1.CapacityTypeSpot: 0.40}),
	}
}

func pool(name string, mutate ...func(*v1.NodePool)) *v1.NodePool {
	p := &v1.NodePool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.NodePoolSpec{
			Template: v1.NodeClaimTemplate{Spec: v1.NodeClaimTemplateSpec{ExpireAfter: v1.Never}},
			Disruption: v1.Disruption{
				ConsolidationPolicy: v1.ConsolidationPolicyWhenEmptyOrUnderutilized,
				ConsolidateAfter:    v1.DurationOf(30 * time.Second),
				Budgets:             []v1.Budget{{Nodes: "100%"}},
				MinNodeLifetime:     &metav1.Duration{},
				RepairAfter:         v1.DurationOf(15 * time.Minute),
			},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

// machine is a launched, initialized and Ready claim with its node.
func machine(name, poolName string, it *cloudprovider.InstanceType, capacityType string, created time.Time) (*v1.NodeClaim, *corev1.Node) {
	var price float64
	for _, o := range it.Offerings {
		if o.CapacityType == capacityType {
			price = o.PricePerHour
		}
	}
	pid := "fake://zone-a/" + name
	claim := &v1.NodeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{v1.LabelNodePool: poolName},
			CreationTimestamp: metav1.NewTime(created)},
		Spec: v1.NodeClaimSpec{
			Offerings:   []v1.OfferingChoice{{InstanceType: it.Name, Zone: "zone-a", CapacityType: capacityType}},
			ExpireAfter: v1.Never,
		},
		Status: v1.NodeClaimStatus{
			ProviderID: pid, NodeName: name, InstanceType: it.Name, Zone: "zone-a", CapacityType: capacityType,
			PricePerHour: formatPrice(price), Capacity: it.Capacity, Allocatable: it.Allocatable(),
			Conditions: []metav1.Condition{
				{Type: v1.ConditionInitialized, Status: metav1.ConditionTrue, Reason: "Initialized", LastTransitionTime: metav1.NewTime(created)},
				{Type: v1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Ready", LastTransitionTime: metav1.NewTime(created)},
				// What nodeclaim.disruption sets once consolidateAfter has
				// passed; settled() also checks the claim's own times.
				{Type: v1.ConditionConsolidatable, Status: metav1.ConditionTrue, Reason: "Consolidatable", LastTransitionTime: metav1.NewTime(created)},
			},
		},
	}
	labels := map[string]string{
		v1.LabelNodePool: poolName, v1.LabelNodeClaim: name, v1.LabelInstanceType: it.Name,
		v1.LabelZone: "zone-a", v1.LabelCapacityType: capacityType, v1.LabelHostname: name,
	}
	if it.GPU != nil {
		labels[v1.LabelGPUCount] = "1"
	}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, CreationTimestamp: metav1.NewTime(created)},
		Spec:       corev1.NodeSpec{ProviderID: pid},
		Status: corev1.NodeStatus{Capacity: it.Capacity, Allocatable: it.Allocatable(), Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(created)},
		}},
	}
	return claim, node
}

// withCondition sets a True condition on a claim, as nodeclaim.disruption would.
func withCondition(claim *v1.NodeClaim, condType, reason string, at time.Time) {
	meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: condType, Status: metav1.ConditionTrue,
		Reason: reason, LastTransitionTime: metav1.NewTime(at)})
}

// notReady marks a node's Ready condition Unknown since at.
func notReady(node *corev1.Node, at time.Time) {
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, LastTransitionTime: metav1.NewTime(at)}}
}

func formatPrice(p float64) string { return strconv.FormatFloat(p, 'f', -1, 64) }

func pod(name, node, cpu string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, UID: types.UID("uid-" + name), Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func ownedBy(kind string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: kind, Name: "owner", UID: "owner", Controller: ptr.To(true)}}
	}
}

func annotated(k, val string) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{k: val} }
}

func gpuRequest(p *corev1.Pod) {
	p.Spec.Containers[0].Resources.Requests[v1.ResourceNvidiaGPU] = resource.MustParse("1")
}

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
