package scheduling

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
)

// DeviceResourcePrefix starts the synthetic extended resources a DevicePlan
// turns claims into. They live only inside a plan, never in the API.
const DeviceResourcePrefix = "dra.stowage.dev/"

// ResourceDevices is the synthetic resource counting every DRA device a pod
// claims and a machine has, whatever the request (SlotDevices).
const ResourceDevices corev1.ResourceName = DeviceResourcePrefix + "all"

// labelSharedClaim prefixes the label that keeps the pods of one shared
// ResourceClaim on one node while they are planned.
const labelSharedClaim = "claim.dra.stowage.dev/"

// IsDeviceResource reports whether name is a DevicePlan's synthetic resource.
func IsDeviceResource(name corev1.ResourceName) bool {
	return strings.HasPrefix(string(name), DeviceResourcePrefix)
}

// DRA holds the cluster's Dynamic Resource Allocation objects a plan reads.
// Maps are keyed by name (DeviceClasses) or namespace/name.
type DRA struct {
	Classes   map[string]*resourceapi.DeviceClass
	Templates map[string]*resourceapi.ResourceClaimTemplate
	Claims    map[string]*resourceapi.ResourceClaim
	// Slices are the published ResourceSlices; only node-local ones count.
	Slices []*resourceapi.ResourceSlice
	// Matcher evaluates selectors; nil uses a new one per plan. Keep one
	// across plans so selectors compile once.
	Matcher *DeviceMatcher
}

// UsesResourceClaims reports whether any pod asks for devices through ResourceClaims.
func UsesResourceClaims(pods []*corev1.Pod) bool {
	for _, p := range pods {
		if len(p.Spec.ResourceClaims) > 0 {
			return true
		}
	}
	return false
}

// DeviceNode is an existing or in-flight node as a DevicePlan sees it.
type DeviceNode struct {
	Name   string
	Labels map[string]string
	Pods   []*corev1.Pod
	// Type and Sharing say what a node that has published no ResourceSlice
	// yet (in flight, or its driver still starting) will publish; Type is
	// nil when unknown.
	Type    *cloudprovider.InstanceType
	Sharing *v1.GPUSharing
}

// DeviceType is an instance type as a pool would buy it.
type DeviceType struct {
	Type    *cloudprovider.InstanceType
	Sharing *v1.GPUSharing
}

// DevicePlan is a snapshot's claims turned into synthetic extended
// resources the solver's resource math plans unchanged: one per distinct
// request (device class and selectors), whose capacity on a machine is the
// number of its devices that match, and one per group of requests that can
// take the same devices, so two requests never count one device twice.
type DevicePlan struct {
	// Pending are the pods to plan: copies carrying their device requests
	// (as pod overhead) where they have any. Pods that cannot be planned are
	// left out and listed in Unplaceable.
	Pending []*corev1.Pod
	// NodePods are each node's pods, copied where they carry requests.
	NodePods [][]*corev1.Pod
	// NodeCapacity and TypeCapacity are the synthetic resources to add to
	// each node's allocatable and each type's capacity.
	NodeCapacity []corev1.ResourceList
	TypeCapacity []corev1.ResourceList
	// Unplaceable are pending pods whose claims cannot be read, and why.
	Unplaceable map[*corev1.Pod]string
	// Originals maps each copy back to the pod it was made from.
	Originals map[*corev1.Pod]*corev1.Pod
	names     map[string]string      // synthetic resource -> what it means, for reasons
	asked     map[*corev1.Pod]string // pending copy -> its device requests in words
}

// Describe rewrites a reason given for pod (a pod of Pending) that names
// synthetic resources in words.
func (p *DevicePlan) Describe(pod *corev1.Pod, reason string) string {
	if !strings.Contains(reason, DeviceResourcePrefix) {
		return reason
	}
	if what, ok := p.asked[pod]; ok {
		reason = strings.ReplaceAll(reason, string(ResourceDevices), what)
	}
	keys := make([]string, 0, len(p.names))
	for k := range p.names {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	for _, k := range keys {
		reason = strings.ReplaceAll(reason, k, p.names[k])
	}
	return reason
}

// request is one device request of a claim, reduced to what is planned.
type request struct {
	alts []alternative // one for exactly, several for firstAvailable
}

type alternative struct {
	key       string // class and selectors: which devices
	class     string
	selectors []resourceapi.DeviceSelector // the class's and the request's
	own       []resourceapi.DeviceSelector // the request's
	all       bool
	count     int64
}

// claimUse is one claim a pod refers to.
type claimUse struct {
	id        string // namespace/name of a named claim; "" for a per-pod claim
	requests  []request
	allocated *resourceapi.AllocationResult
}

// Plan resolves every pod's claims and computes the synthetic resources.
// It fails only on a cancelled context; unreadable claims make their pod
// Unplaceable.
func (d *DRA) Plan(ctx context.Context, pending []*corev1.Pod, nodes []DeviceNode, types []DeviceType) (*DevicePlan, error) {
	m := d.Matcher
	if m == nil {
		m = NewDeviceMatcher()
	}
	p := &DevicePlan{Unplaceable: map[*corev1.Pod]string{}, Originals: map[*corev1.Pod]*corev1.Pod{},
		names: map[string]string{}, asked: map[*corev1.Pod]string{}}
	uses := map[*corev1.Pod][]claimUse{}
	alts := map[string]*alternative{}
	collect := func(pod *corev1.Pod) error {
		us, err := d.claimsOf(m, pod)
		if err != nil {
			return err
		}
		uses[pod] = us
		for _, u := range us {
			for _, r := range u.requests {
				for i := range r.alts {
					alts[r.alts[i].key] = &r.alts[i]
				}
			}
		}
		return nil
	}
	for _, pod := range pending {
		if len(pod.Spec.ResourceClaims) == 0 {
			continue
		}
		if err := collect(pod); err != nil {
			p.Unplaceable[pod] = err.Error()
		}
	}
	for _, n := range nodes {
		for _, pod := range n.Pods {
			if len(pod.Spec.ResourceClaims) > 0 {
				_ = collect(pod) // a running pod's unreadable claim only loses its charge
			}
		}
	}

	// The devices each machine has free, and which requests each matches.
	nodeDevs := make([][]devMatch, len(nodes))
	fromSlices := make([]bool, len(nodes))
	allocated := d.allocatedDevices()
	sliced := d.nodeDevices()
	keys := sortedKeys(alts)
	match := func(driver string, devs []resourceapi.Device) ([]devMatch, error) {
		out := make([]devMatch, 0, len(devs))
		for i := range devs {
			dm := devMatch{}
			for _, k := range keys {
				a := alts[k]
				ok, err := m.Matches(ctx, driver, &devs[i], a.selectors)
				if err != nil {
					return nil, err
				}
				if ok {
					dm.keys = append(dm.keys, k)
				}
			}
			out = append(out, dm)
		}
		return out, nil
	}
	for i, n := range nodes {
		if byDriver, ok := sliced[n.Name]; ok {
			fromSlices[i] = true
			for _, dd := range byDriver {
				var free []resourceapi.Device
				for _, dev := range dd.devices {
					if !allocated[dd.driver+"/"+dd.pool+"/"+dev.Name] {
						free = append(free, dev)
					}
				}
				ms, err := match(dd.driver, free)
				if err != nil {
					return nil, err
				}
				nodeDevs[i] = append(nodeDevs[i], ms...)
			}
			continue
		}
		if n.Type != nil {
			driver, devs := Devices(n.Type, n.Sharing)
			ms, err := match(driver, devs)
			if err != nil {
				return nil, err
			}
			nodeDevs[i] = ms
		}
	}
	typeDevs := make([][]devMatch, len(types))
	for i, t := range types {
		driver, devs := Devices(t.Type, t.Sharing)
		ms, err := match(driver, devs)
		if err != nil {
			return nil, err
		}
		typeDevs[i] = ms
	}

	// Requests that can take the same device share a pool of devices.
	uf := newUnionFind(keys)
	for _, group := range [][][]devMatch{nodeDevs, typeDevs} {
		for _, devs := range group {
			for _, dm := range devs {
				for _, k := range dm.keys[min(1, len(dm.keys)):] {
					uf.union(dm.keys[0], k)
				}
			}
		}
	}
	poolName := map[string]string{} // root key -> resource
	members := map[string][]string{}
	for _, k := range keys {
		members[uf.find(k)] = append(members[uf.find(k)], k)
	}
	for root, ks := range members {
		if len(ks) == 1 {
			// A request that shares its devices with no other is its own
			// pool: one resource is enough, and each one costs the packer.
			poolName[root] = resourceOf(ks[0])
			continue
		}
		poolName[root] = DeviceResourcePrefix + "devices-" + shortHash(strings.Join(ks, "\x01"))
		descs := make([]string, len(ks))
		for i, k := range ks {
			descs[i] = alts[k].describe()
		}
		p.names[poolName[root]] = strings.Join(descs, " or ")
	}
	for _, k := range keys {
		p.names[resourceOf(k)] = alts[k].describe()
	}
	capacity := func(devs []devMatch) corev1.ResourceList {
		per := map[string]int64{}
		pools := map[string]int64{}
		var total int64
		for _, dm := range devs {
			if len(dm.keys) > 0 {
				total++
			}
			seen := map[string]bool{}
			for _, k := range dm.keys {
				per[k]++
				if r := poolName[uf.find(k)]; !seen[r] {
					seen[r] = true
					pools[r]++
				}
			}
		}
		out := corev1.ResourceList{}
		for r, n := range pools {
			out[corev1.ResourceName(r)] = *resource.NewQuantity(n, resource.DecimalSI)
		}
		for k, n := range per {
			out[corev1.ResourceName(resourceOf(k))] = *resource.NewQuantity(n, resource.DecimalSI)
		}
		if total > 0 {
			out[ResourceDevices] = *resource.NewQuantity(total, resource.DecimalSI)
		}
		return out
	}
	p.NodeCapacity = make([]corev1.ResourceList, len(nodes))
	for i := range nodes {
		p.NodeCapacity[i] = capacity(nodeDevs[i])
	}
	p.TypeCapacity = make([]corev1.ResourceList, len(types))
	for i := range types {
		p.TypeCapacity[i] = capacity(typeDevs[i])
	}

	charge := func(u claimUse) corev1.ResourceList {
		out := corev1.ResourceList{}
		add := func(name string, n int64) {
			q := out[corev1.ResourceName(name)]
			q.Add(*resource.NewQuantity(n, resource.DecimalSI))
			out[corev1.ResourceName(name)] = q
		}
		for _, r := range u.requests {
			a := r.alts[0]
			if len(r.alts) > 1 {
				// firstAvailable: plan with the cheapest alternative's count;
				// its devices still come from the shared pool.
				for _, alt := range r.alts[1:] {
					if !alt.all && (a.all || alt.count < a.count) {
						a = alt
					}
				}
			}
			n := a.count
			if a.all {
				n = 1 // at least one matching device; see docs/training.md
			}
			add(resourceOf(a.key), n)
			if pool := poolName[uf.find(a.key)]; pool != resourceOf(a.key) {
				add(pool, n)
			}
			add(string(ResourceDevices), n)
		}
		return out
	}

	// Shared claims are charged once: to a pod already on a node if any,
	// else to the first pending pod; the others follow it to its node.
	carrier := map[string]*corev1.Pod{}
	for _, n := range nodes {
		for _, pod := range n.Pods {
			for _, u := range uses[pod] {
				if u.id != "" && u.allocated == nil && carrier[u.id] == nil {
					carrier[u.id] = pod
				}
			}
		}
	}
	sortedPending := append([]*corev1.Pod(nil), pending...)
	sort.SliceStable(sortedPending, func(i, j int) bool {
		return sortedPending[i].Namespace+"/"+sortedPending[i].Name < sortedPending[j].Namespace+"/"+sortedPending[j].Name
	})
	sharers := map[string]int{}
	for _, pod := range sortedPending {
		for _, u := range uses[pod] {
			if u.id != "" && u.allocated == nil {
				sharers[u.id]++
				if carrier[u.id] == nil {
					carrier[u.id] = pod
				}
			}
		}
	}
	hostnames := map[string]string{}
	for _, n := range nodes {
		hostnames[n.Name] = n.Labels[v1.LabelHostname]
	}
	rewrite := func(pod *corev1.Pod, onNode, typeDerived bool) (*corev1.Pod, error) {
		us, ok := uses[pod]
		if !ok {
			return pod, nil
		}
		extra := corev1.ResourceList{}
		// marks are the shared claims the pod carries (it is charged their
		// devices, or is on a node already), joins those whose carrier it
		// must run beside.
		var marks, joins []string
		var pins []*corev1.NodeSelector
		for _, u := range us {
			switch {
			case u.allocated != nil && !onNode:
				if u.allocated.NodeSelector != nil {
					pins = append(pins, u.allocated.NodeSelector)
				}
				continue
			case u.allocated != nil && !typeDerived:
				continue // its devices are already off the node's free list
			case u.id != "" && u.allocated == nil:
				if carrier[u.id] != pod {
					if onNode {
						marks = append(marks, u.id)
					} else {
						joins = append(joins, u.id)
					}
					continue
				}
				if sharers[u.id] > 1 || onNode {
					marks = append(marks, u.id)
				}
			}
			for k, q := range charge(u) {
				cur := extra[k]
				cur.Add(q)
				extra[k] = cur
			}
		}
		if len(extra) == 0 && len(marks) == 0 && len(joins) == 0 && len(pins) == 0 {
			return pod, nil
		}
		cp := pod.DeepCopy()
		p.Originals[cp] = pod
		if len(extra) > 0 {
			if cp.Spec.Overhead == nil {
				cp.Spec.Overhead = corev1.ResourceList{}
			}
			for k, q := range extra {
				cp.Spec.Overhead[k] = q
			}
		}
		// Only the carrier, charged the devices, may open the group: the
		// other sharers follow it, so none of them lands first on a node
		// without the devices.
		for _, id := range marks {
			if cp.Labels == nil {
				cp.Labels = map[string]string{}
			}
			cp.Labels[labelSharedClaim+shortHash(id)] = "true"
		}
		for _, id := range joins {
			aff := ensurePodAffinity(cp)
			aff.RequiredDuringSchedulingIgnoredDuringExecution = append(aff.RequiredDuringSchedulingIgnoredDuringExecution, corev1.PodAffinityTerm{
				TopologyKey:   v1.LabelHostname,
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{labelSharedClaim + shortHash(id): "true"}},
			})
		}
		for _, sel := range pins {
			if err := pinTo(cp, sel, hostnames); err != nil {
				return nil, err
			}
		}
		return cp, nil
	}
	for _, pod := range pending {
		if _, bad := p.Unplaceable[pod]; bad {
			continue
		}
		cp, err := rewrite(pod, false, false)
		if err != nil {
			p.Unplaceable[pod] = err.Error()
			continue
		}
		var asked []string
		for _, u := range uses[pod] {
			for _, r := range u.requests {
				asked = append(asked, r.alts[0].describe())
			}
		}
		p.asked[cp] = "devices: " + strings.Join(asked, "; ")
		p.Pending = append(p.Pending, cp)
	}
	p.NodePods = make([][]*corev1.Pod, len(nodes))
	for i, n := range nodes {
		for _, pod := range n.Pods {
			cp, err := rewrite(pod, true, !fromSlices[i])
			if err != nil {
				cp = pod
			}
			p.NodePods[i] = append(p.NodePods[i], cp)
		}
	}
	return p, nil
}

type devMatch struct{ keys []string }

type driverDevices struct {
	driver, pool string
	devices      []resourceapi.Device
}

// nodeDevices are the devices of node-local ResourceSlices, by node.
func (d *DRA) nodeDevices() map[string][]driverDevices {
	out := map[string][]driverDevices{}
	for _, s := range d.Slices {
		if s.Spec.NodeName == nil || *s.Spec.NodeName == "" {
			continue
		}
		n := *s.Spec.NodeName
		out[n] = append(out[n], driverDevices{driver: s.Spec.Driver, pool: s.Spec.Pool.Name, devices: s.Spec.Devices})
	}
	return out
}

// allocatedDevices are the driver/pool/device triples claims hold.
func (d *DRA) allocatedDevices() map[string]bool {
	out := map[string]bool{}
	for _, c := range d.Claims {
		if c.Status.Allocation == nil {
			continue
		}
		for _, r := range c.Status.Allocation.Devices.Results {
			out[r.Driver+"/"+r.Pool+"/"+r.Device] = true
		}
	}
	return out
}

// claimsOf resolves the claims a pod refers to. Errors name what is missing.
func (d *DRA) claimsOf(m *DeviceMatcher, pod *corev1.Pod) ([]claimUse, error) {
	generated := map[string]string{}
	for _, s := range pod.Status.ResourceClaimStatuses {
		if s.ResourceClaimName != nil {
			generated[s.Name] = *s.ResourceClaimName
		}
	}
	var out []claimUse
	for _, rc := range pod.Spec.ResourceClaims {
		var u claimUse
		var spec *resourceapi.ResourceClaimSpec
		switch {
		case rc.ResourceClaimName != nil:
			u.id = pod.Namespace + "/" + *rc.ResourceClaimName
			c, ok := d.Claims[u.id]
			if !ok {
				return nil, fmt.Errorf("spec.resourceClaims[%s]: resourceclaim %s not found", rc.Name, u.id)
			}
			spec, u.allocated = &c.Spec, c.Status.Allocation
		case rc.ResourceClaimTemplateName != nil:
			if name, ok := generated[rc.Name]; ok {
				if c, ok := d.Claims[pod.Namespace+"/"+name]; ok {
					spec, u.allocated = &c.Spec, c.Status.Allocation
					break
				}
			}
			t, ok := d.Templates[pod.Namespace+"/"+*rc.ResourceClaimTemplateName]
			if !ok {
				return nil, fmt.Errorf("spec.resourceClaims[%s]: resourceclaimtemplate %s/%s not found", rc.Name, pod.Namespace, *rc.ResourceClaimTemplateName)
			}
			spec = &t.Spec.Spec
		default:
			continue
		}
		for _, r := range spec.Devices.Requests {
			req, err := d.request(m, r)
			if err != nil {
				return nil, fmt.Errorf("spec.resourceClaims[%s] request %s: %w", rc.Name, r.Name, err)
			}
			u.requests = append(u.requests, req)
		}
		out = append(out, u)
	}
	return out, nil
}

func (d *DRA) request(m *DeviceMatcher, r resourceapi.DeviceRequest) (request, error) {
	mk := func(class string, selectors []resourceapi.DeviceSelector, mode resourceapi.DeviceAllocationMode, count int64) (alternative, error) {
		c, ok := d.Classes[class]
		if !ok {
			return alternative{}, fmt.Errorf("deviceclass %s not found", class)
		}
		all := append(append([]resourceapi.DeviceSelector(nil), c.Spec.Selectors...), selectors...)
		var exprs []string
		for _, s := range all {
			if s.CEL == nil {
				continue
			}
			if err := m.Compile(s.CEL.Expression); err != nil {
				return alternative{}, err
			}
			exprs = append(exprs, s.CEL.Expression)
		}
		a := alternative{class: class, selectors: all, own: selectors, all: mode == resourceapi.DeviceAllocationModeAll, count: max(count, 1)}
		a.key = class + "\x00" + strings.Join(exprs, "\x00")
		if a.all {
			a.key = "all\x00" + a.key
		}
		return a, nil
	}
	var out request
	if r.Exactly != nil {
		a, err := mk(r.Exactly.DeviceClassName, r.Exactly.Selectors, r.Exactly.AllocationMode, r.Exactly.Count)
		if err != nil {
			return request{}, err
		}
		out.alts = append(out.alts, a)
	}
	for _, s := range r.FirstAvailable {
		a, err := mk(s.DeviceClassName, s.Selectors, s.AllocationMode, s.Count)
		if err != nil {
			return request{}, fmt.Errorf("firstAvailable %s: %w", s.Name, err)
		}
		out.alts = append(out.alts, a)
	}
	if len(out.alts) == 0 {
		return request{}, fmt.Errorf("neither exactly nor firstAvailable is set")
	}
	return out, nil
}

// describe says in words which devices the request asks for.
func (a *alternative) describe() string {
	what := "devices of class " + a.class
	if a.all {
		what = "all " + what
	}
	var exprs []string
	for _, s := range a.own {
		if s.CEL != nil {
			exprs = append(exprs, s.CEL.Expression)
		}
	}
	if len(exprs) > 0 {
		what += " matching " + strings.Join(exprs, " && ")
	}
	return what
}

// resourceOf is the synthetic resource of one request key.
func resourceOf(key string) string { return DeviceResourcePrefix + "request-" + shortHash(key) }

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:12]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func ensurePodAffinity(p *corev1.Pod) *corev1.PodAffinity {
	if p.Spec.Affinity == nil {
		p.Spec.Affinity = &corev1.Affinity{}
	}
	if p.Spec.Affinity.PodAffinity == nil {
		p.Spec.Affinity.PodAffinity = &corev1.PodAffinity{}
	}
	return p.Spec.Affinity.PodAffinity
}

// pinTo narrows the pod's required node affinity to the nodes an allocated
// claim can be used on. A matchFields term on the node's name becomes a
// hostname requirement, which is what the solver can read.
func pinTo(pod *corev1.Pod, sel *corev1.NodeSelector, hostnames map[string]string) error {
	var terms []corev1.NodeSelectorTerm
	for _, t := range sel.NodeSelectorTerms {
		out := corev1.NodeSelectorTerm{MatchExpressions: append([]corev1.NodeSelectorRequirement(nil), t.MatchExpressions...)}
		for _, f := range t.MatchFields {
			if f.Key != "metadata.name" {
				return fmt.Errorf("allocated claim selects nodes by field %s, which Stowage cannot plan", f.Key)
			}
			var vals []string
			for _, name := range f.Values {
				h := hostnames[name]
				if h == "" {
					h = name
				}
				vals = append(vals, h)
			}
			out.MatchExpressions = append(out.MatchExpressions, corev1.NodeSelectorRequirement{Key: v1.LabelHostname, Operator: f.Operator, Values: vals})
		}
		terms = append(terms, out)
	}
	if pod.Spec.Affinity == nil {
		pod.Spec.Affinity = &corev1.Affinity{}
	}
	if pod.Spec.Affinity.NodeAffinity == nil {
		pod.Spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	na := pod.Spec.Affinity.NodeAffinity
	cur := na.RequiredDuringSchedulingIgnoredDuringExecution
	if cur == nil || len(cur.NodeSelectorTerms) == 0 {
		na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: terms}
		return nil
	}
	var product []corev1.NodeSelectorTerm
	for _, a := range cur.NodeSelectorTerms {
		for _, b := range terms {
			product = append(product, corev1.NodeSelectorTerm{
				MatchExpressions: append(append([]corev1.NodeSelectorRequirement(nil), a.MatchExpressions...), b.MatchExpressions...),
				MatchFields:      a.MatchFields,
			})
		}
	}
	na.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{NodeSelectorTerms: product}
	return nil
}

type unionFind struct{ parent map[string]string }

func newUnionFind(keys []string) *unionFind {
	u := &unionFind{parent: make(map[string]string, len(keys))}
	for _, k := range keys {
		u.parent[k] = k
	}
	return u
}

func (u *unionFind) find(k string) string {
	for u.parent[k] != k {
		u.parent[k] = u.parent[u.parent[k]]
		k = u.parent[k]
	}
	return k
}

func (u *unionFind) union(a, b string) {
	ra, rb := u.find(a), u.find(b)
	if ra == rb {
		return
	}
	if ra < rb {
		u.parent[rb] = ra
	} else {
		u.parent[ra] = rb
	}
}
