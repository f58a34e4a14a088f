package solver

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// model is the immutable, preprocessed form of a Snapshot that every
// strategy run shares: pools with their pre-filtered instance types, pod
// shapes, and the selector groups topology rules count.
type model struct {
	// lpStopped counts simplex runs stopped at their pivot limit (see
	// lpPivotLimit), for Stats.
	lpStopped atomic.Int64
	pools     []*pool
	shapes    []*shape // pending shapes first (in placement order), then shapes only present on nodes
	groups    []*group
	// groupIDs finds a group by what it selects, so rules that select the
	// same pods share one: thousands of shapes of one app differing only in
	// requests would otherwise each add (and scan every shape for) their own.
	groupIDs map[string]int
	// domainMemo caches eligibleDomains, viableMemo viability.
	domainMemo map[string][]string
	viableMemo map[string][][][]bool
	// pending is the number of shapes with pods to place.
	pending int
	// nodePods are the shapes of the pods already on each node, by node index.
	nodePods [][]int
	nodes    []*Node
	// gangs in name order, each with its shapes and how many of its pods are already on nodes.
	gangs []*gang
	zones []string
	// reservations is how many machines each capacity reservation can still hold.
	reservations map[string]int
	// maxAlloc normalises dominant-resource sizes.
	maxAlloc scheduling.Resources
	// antiTerms caches antiTermList, antiBy antiSelecting.
	antiTerms []*antiTerm
	antiBy    [][]*antiTerm
	// byLabel indexes shapes by "key=value" of their labels, for candidates.
	byLabel   map[string][]int32
	allShapes []int32
	// byPort indexes shapes by the host ports they bind.
	byPort map[string][]int32
	// typeBase[p] numbers pool p's first type among every pool's types,
	// numTypes counts them all: see typeBit.
	typeBase []int
	numTypes int
	// zoneBits numbers every zone of an offering or existing node with a
	// bit, for the node index (nil past 63 zones: no zone filtering);
	// otherZone is the bit of a zone outside it, anyZone every bit in use.
	zoneBits           map[string]uint64
	otherZone, anyZone uint64
}

// typeBit numbers type ti of pool pi among the types of every pool.
func (m *model) typeBit(pi, ti int) int { return m.typeBase[pi] + ti }

// pool is a NodePool with its instance types filtered once by its
// requirements and sorted by their cheapest offering.
type pool struct {
	idx    int
	np     *NodePool
	name   string
	weight int32
	reqs   scheduling.Requirements
	taints []corev1.Taint
	types  []*poolType
	// fixed holds each type's fixed allocatable slots (alloc.Fixed), in
	// types' order and side by side: the fit checks that scan a node's
	// candidates reject almost all of them on these alone, and reading them
	// here spares a pointer chase per candidate.
	fixed [][scheduling.NumSlots]int64
	// ext says which types have extended resources beyond the fixed slots
	// that some pod requests (set by trimUnrequested).
	ext    []bool
	allIdx []int32
	// hasReserved says some type has a capacity reservation.
	hasReserved bool
	// maxAlloc is the element-wise maximum allocatable over types.
	maxAlloc scheduling.Resources
	// limit and limited say which resources the pool caps; remaining is limit - usage.
	limited   scheduling.Resources // 1 in each limited dimension
	remaining scheduling.Resources
	hasLimits bool
}

// poolType is one instance type as a pool would buy it.
type poolType struct {
	it       *cloudprovider.InstanceType
	labels   map[string]string
	alloc    scheduling.Resources // effective allocatable less DaemonSet overhead
	capacity scheduling.Resources // effective capacity, what limits count
	daemon   scheduling.Resources
	// daemonPorts are the host ports the pool's DaemonSet pods bind on it.
	daemonPorts []string
	offs        []cloudprovider.Offering // allowed, available; cheapest first
	minPrice    float64
	zones       uint64   // zone bits of offs
	offZone     []uint64 // the zone bit of each of offs (0 when zones are not numbered)
	offCT       []uint8  // the capacity type of each of offs: its index in capacityTypes, or otherCT
	// zonesByCT are the zone bits of offs per capacity type, for a filter
	// to answer with a mask per type rather than a scan of offs; offSlow
	// says they do not tell (zones not numbered, a reservation, whose count
	// is the state's, or a capacity type not in capacityTypes).
	zonesByCT [len(capacityTypes)]uint64
	offSlow   bool
}

// shape is a set of pods identical in everything the solver looks at, so
// 10,000 replicas are analysed once.
type shape struct {
	idx    int
	key    string
	ns     string
	labels map[string]string
	pods   []*corev1.Pod // pending pods of this shape, by namespace/name
	req    scheduling.Resources
	pc     *scheduling.PodConstraints
	err    error // constraints that could not be read
	gang   string
	// gangSize is how many pods the gang needs, as its pods declare it.
	gangSize int
	size     float64
	// antiOwn are the required anti-affinity terms, kept for symmetry.
	antiOwn []scheduling.AffinityTerm
	// ports are the host ports the shape's pods bind (scheduling.HostPorts).
	ports []string
	// groups this shape is a member of.
	groups []int
	// pinKeys are the non-hostname topology keys whose counts include this
	// shape, so a new node it lands on must settle its value for them.
	pinKeys []string
	// levels[i] is the shape with its i weakest soft constraints relaxed.
	levels []*level
}

// level is what a shape requires at one relaxation level.
type level struct {
	alts   []scheduling.Requirements
	viable [][][]bool // [alt][pool][type]
	// domainAlts are the required alternatives alone, and domainViable their
	// viability: the scheduler finds a spread's domains from the pod's
	// nodeSelector and required affinity, never its preferences, so a
	// preference must not narrow them (it would let every pod pile into the
	// preferred zone while the scheduler counts the others).
	domainAlts   []scheduling.Requirements
	domainViable [][][]bool
	tolerates    []error // per pool
	spread       []spreadRule
	aff          []termRule
	anti         []termRule
	// prefAff and prefAnti are preferred pod (anti-)affinity: honoured when
	// choosing among nodes that can take the pod, never a reason to buy one.
	prefAff, prefAnti []termRule
	keys              []string // non-hostname topology keys with rules, sorted
	// topoKeys are keys and then the shape's pinKeys not among them: every
	// key a node must have settled (or settle) to take the pod.
	topoKeys []string
	domains  map[string][]string // eligible values per non-hostname key
	perNode  int                 // max pods of the shape per node (0: no cap)
}

type spreadRule struct {
	key        string
	maxSkew    int32
	minDomains int32
	group      int
	self       bool
	hard       bool
}

type termRule struct {
	key   string
	group int
	self  bool
}

// group is a set of shapes some topology rule counts.
type group struct {
	// members are the indexes of the shapes in the group, ascending:
	// sparse, since a dense flag per shape and group was quadratic
	// (tens of thousands of both on diverse-100k).
	members []int32
	keys    []string // non-hostname keys the group is counted at
}

type gang struct {
	name    string
	size    int
	shapes  []int
	pending int
	present int
	zones   []string // zones of the gang's pods already on nodes
}

func newModel(snap *Snapshot) (*model, error) {
	m := &model{nodes: slices.Clone(snap.Nodes)}
	sort.SliceStable(m.nodes, func(i, j int) bool { return m.nodes[i].Name < m.nodes[j].Name })
	if err := m.buildPools(snap); err != nil {
		return nil, err
	}
	m.buildShapes(snap)
	m.buildGroups()
	m.trimUnrequested()
	return m, nil
}

// trimUnrequested drops from the instance types' allocatable the extended
// resources no pod requests (attach limits when no pod mounts a volume, EFA
// interfaces, accelerators of CPU-only workloads): they cannot limit a fit,
// and keeping them made every per-type maximum a map merge, the hottest
// step when a node opens. Capacity, which NodePool limits count, is kept.
func (m *model) trimUnrequested() {
	requested := map[corev1.ResourceName]bool{}
	for _, s := range m.shapes {
		for k := range s.req.Ext {
			requested[k] = true
		}
	}
	m.maxAlloc = scheduling.Resources{}
	for _, p := range m.pools {
		p.maxAlloc = scheduling.Resources{}
		for i, t := range p.types {
			// Each type's allocatable map is its own (newPoolType builds it).
			maps.DeleteFunc(t.alloc.Ext, func(k corev1.ResourceName, _ int64) bool { return !requested[k] })
			p.ext[i] = len(t.alloc.Ext) > 0
			p.maxAlloc = p.maxAlloc.Max(t.alloc)
		}
		m.maxAlloc = m.maxAlloc.Max(p.maxAlloc)
	}
}

func (m *model) buildPools(snap *Snapshot) error {
	zones := map[string]bool{}
	cache := snap.Types
	if !cache.serves(snap.DaemonSetPods) {
		cache = nil
	}
	for _, np := range snap.NodePools {
		if np == nil || np.NodePool == nil {
			continue
		}
		p := &pool{np: np, name: np.Name, taints: np.Spec.Template.Spec.Taints}
		if np.Spec.Weight != nil {
			p.weight = *np.Spec.Weight
		}
		reqs, err := scheduling.FromAPI(np.Spec.Template.Spec.Requirements)
		if err != nil {
			return fmt.Errorf("nodepool %s: spec.template.spec.%w", np.Name, err)
		}
		reqs = reqs.Intersect(scheduling.FromLabels(np.Spec.Template.ObjectMeta.Labels))
		reqs.Add(scheduling.MustRequirement(v1.LabelNodePool, corev1.NodeSelectorOpIn, np.Name))
		p.reqs = reqs
		for name, q := range np.Spec.Limits {
			p.hasLimits = true
			one := scheduling.FromList(corev1.ResourceList{name: q})
			p.remaining = p.remaining.Add(one)
			p.limited = p.limited.Max(scheduling.FromList(corev1.ResourceList{name: resource.MustParse("1")}))
		}
		if p.hasLimits {
			p.remaining = p.remaining.Sub(scheduling.FromList(np.Usage))
		}
		// A "nodes" limit counts machines: each type's capacity holds one.
		_, limitsNodes := np.Spec.Limits[ResourceNodes]
		for _, it := range np.InstanceTypes {
			var pt *poolType
			if cache != nil {
				pt = cache.poolType(it, p)
			} else {
				pt = newPoolType(it, p, snap.DaemonSetPods)
			}
			if pt != nil {
				if limitsNodes {
					pt.capacity = pt.capacity.Add(scheduling.FromList(corev1.ResourceList{ResourceNodes: resource.MustParse("1")}))
				}
				p.types = append(p.types, pt)
				for _, o := range pt.offs {
					zones[o.Zone] = true
				}
			}
		}
		slices.SortStableFunc(p.types, func(a, b *poolType) int {
			return cmp.Or(cmp.Compare(a.minPrice, b.minPrice), cmp.Compare(a.it.Name, b.it.Name))
		})
		p.allIdx = make([]int32, len(p.types))
		p.fixed = make([][scheduling.NumSlots]int64, len(p.types))
		p.ext = make([]bool, len(p.types))
		for i, t := range p.types {
			p.allIdx[i] = int32(i)
			p.fixed[i] = t.alloc.Fixed
		}
		for _, t := range p.types {
			p.maxAlloc = p.maxAlloc.Max(t.alloc)
		}
		m.maxAlloc = m.maxAlloc.Max(p.maxAlloc)
		m.pools = append(m.pools, p)
	}
	slices.SortStableFunc(m.pools, func(a, b *pool) int {
		return cmp.Or(cmp.Compare(b.weight, a.weight), cmp.Compare(a.name, b.name))
	})
	m.typeBase = make([]int, len(m.pools))
	for i, p := range m.pools {
		p.idx = i
		m.typeBase[i] = m.numTypes
		m.numTypes += len(p.types)
	}
	for z := range zones {
		m.zones = append(m.zones, z)
	}
	m.reservations = map[string]int{}
	for _, p := range m.pools {
		for _, t := range p.types {
			for _, o := range t.offs {
				if o.CapacityType == v1.CapacityTypeReserved {
					m.reservations[reservationKey(t.it.Name, o)] = o.ReservedCount
					p.hasReserved = true
				}
			}
		}
	}
	sort.Strings(m.zones)
	m.numberZones(snap)
	return nil
}

// numberZones gives each zone a bit for the node index.
func (m *model) numberZones(snap *Snapshot) {
	all := slices.Clone(m.zones)
	for _, n := range snap.Nodes {
		if z, ok := n.Labels[v1.LabelZone]; ok && !slices.Contains(all, z) {
			all = append(all, z)
		}
	}
	if len(all) > 63 {
		return
	}
	sort.Strings(all)
	m.zoneBits = map[string]uint64{}
	for i, z := range all {
		m.zoneBits[z] = 1 << i
		m.anyZone |= 1 << i
	}
	m.otherZone = 1 << 63
	m.anyZone |= m.otherZone
	for _, p := range m.pools {
		for _, t := range p.types {
			t.offZone = make([]uint64, len(t.offs))
			t.zonesByCT, t.offSlow = [len(capacityTypes)]uint64{}, false
			for k, o := range t.offs {
				t.offZone[k] = m.zoneBits[o.Zone]
				t.zones |= t.offZone[k]
				if c := t.offCT[k]; c == otherCT || c == ctReserved || t.offZone[k] == 0 {
					t.offSlow = true
				} else {
					t.zonesByCT[c] |= t.offZone[k]
				}
			}
		}
	}
}

// newPoolType filters an instance type by the pool's requirements and keeps
// the offerings the pool may buy; nil when there are none.
func newPoolType(it *cloudprovider.InstanceType, p *pool, daemons []*corev1.Pod) *poolType {
	lbls := scheduling.NodeLabels(it, p.np.NodePool)
	typeReqs := scheduling.FromLabels(lbls)
	if p.reqs.Compatible(typeReqs) != nil {
		return nil
	}
	zoneReq, ctReq := p.reqs.Get(v1.LabelZone), p.reqs.Get(v1.LabelCapacityType)
	pt := &poolType{it: it, labels: lbls}
	for _, o := range it.Offerings {
		if !o.Available || (o.CapacityType == v1.CapacityTypeReserved && o.ReservedCount <= 0) ||
			(o.Commitment != "" && (o.CommitmentCost <= 0 || o.CommitmentLeft < o.CommitmentCost-1e-9)) {
			continue
		}
		if (zoneReq != nil && !zoneReq.Allows(o.Zone)) || (ctReq != nil && !ctReq.Allows(o.CapacityType)) {
			continue
		}
		pt.offs = append(pt.offs, o)
	}
	if len(pt.offs) == 0 {
		return nil
	}
	slices.SortStableFunc(pt.offs, compareOfferings)
	pt.minPrice = pt.offs[0].PricePerHour
	pt.offCT = make([]uint8, len(pt.offs))
	for k, o := range pt.offs {
		pt.offCT[k] = otherCT
		if c := slices.Index(capacityTypes[:], o.CapacityType); c >= 0 {
			pt.offCT[k] = uint8(c)
		}
	}
	capacity, alloc := scheduling.EffectiveCapacity(it, p.np.Spec.Template.Spec.GPU)
	pt.capacity = scheduling.FromList(capacity)
	if len(daemons) > 0 {
		pt.daemon, pt.daemonPorts = scheduling.DaemonSets(daemons, p.reqs.Intersect(typeReqs), p.taints)
	}
	pt.alloc = scheduling.FromList(alloc).Sub(pt.daemon)
	return pt
}

func compareOfferings(a, b cloudprovider.Offering) int {
	return cmp.Or(cmp.Compare(a.PricePerHour, b.PricePerHour), cmp.Compare(a.Zone, b.Zone),
		cmp.Compare(a.CapacityType, b.CapacityType), cmp.Compare(a.ReservationID, b.ReservationID))
}

// buildShapes groups pending pods (and pods already on nodes, which count for
// topology) into shapes, and orders pending shapes for placement: gangs
// first, then largest dominant resource first.
func (m *model) buildShapes(snap *Snapshot) {
	// The gang is part of a shape's identity: it may be declared by
	// annotations, which the key does not read.
	type shapeID struct{ key, gang string }
	byKey := map[shapeID]*shape{}
	get := func(pod *corev1.Pod) *shape {
		req, key := snap.Types.podShape(pod)
		name, size, gangErr := snap.Gangs.Of(pod)
		id := shapeID{key, name}
		if s, ok := byKey[id]; ok {
			return s
		}
		req.Ext = maps.Clone(req.Ext)
		s := &shape{key: key + "|" + name, ns: pod.Namespace, labels: pod.Labels, req: req, idx: -1, ports: scheduling.HostPorts(pod)}
		s.pc, s.err = scheduling.NewPodConstraints(pod)
		if s.pc != nil && pod.Spec.Affinity != nil && pod.Spec.Affinity.PodAntiAffinity != nil {
			s.antiOwn = s.pc.AntiAffinity
		}
		if gangErr != nil && s.err == nil {
			s.err = gangErr
		}
		if name != "" {
			s.gang, s.gangSize = pod.Namespace+"/"+name, size
		}
		byKey[id] = s
		return s
	}
	pods := slices.Clone(snap.Pods)
	slices.SortStableFunc(pods, func(a, b *corev1.Pod) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	var pending []*shape
	for _, pod := range pods {
		s := get(pod)
		if len(s.pods) == 0 {
			pending = append(pending, s)
		}
		s.pods = append(s.pods, pod)
	}
	for _, s := range pending {
		s.size = dominantShare(&s.req, &m.maxAlloc)
	}
	slices.SortStableFunc(pending, func(a, b *shape) int {
		return cmp.Or(cmp.Compare(boolInt(b.gang != ""), boolInt(a.gang != "")) /* gangs first */, cmp.Compare(a.gang, b.gang),
			cmp.Compare(b.size, a.size), cmp.Compare(a.key, b.key))
	})
	m.shapes = pending
	m.pending = len(pending)
	for i, s := range pending {
		s.idx = i
	}
	// Shapes of bound pods only are numbered as they are met; idx -1 marks
	// one not yet in m.shapes.
	m.nodePods = make([][]int, len(m.nodes))
	for i, n := range m.nodes {
		for _, pod := range n.Pods {
			s := get(pod)
			if s.idx < 0 {
				s.idx = len(m.shapes)
				m.shapes = append(m.shapes, s)
			}
			m.nodePods[i] = append(m.nodePods[i], s.idx)
		}
	}
	m.buildGangs(snap)
}

func (m *model) buildGangs(snap *Snapshot) {
	byName := map[string]*gang{}
	for _, s := range m.shapes[:m.pending] {
		if s.gang == "" {
			continue
		}
		g, ok := byName[s.gang]
		if !ok {
			g = &gang{name: s.gang, size: s.gangSize}
			byName[s.gang] = g
			m.gangs = append(m.gangs, g)
		}
		g.shapes = append(g.shapes, s.idx)
		g.pending += len(s.pods)
	}
	present := func(g *gang, n *Node) {
		g.present++
		if z := n.Labels[v1.LabelZone]; z != "" && !slices.Contains(g.zones, z) {
			g.zones = append(g.zones, z)
		}
	}
	for i, n := range m.nodes {
		for _, si := range m.nodePods[i] {
			if g, ok := byName[m.shapes[si].gang]; ok {
				present(g, n)
			}
		}
	}
	if len(byName) == 0 {
		return
	}
	for _, n := range snap.Closed {
		for _, pod := range n.Pods {
			if name, _, err := snap.Gangs.Of(pod); name != "" && err == nil {
				if g, ok := byName[pod.Namespace+"/"+name]; ok {
					present(g, n)
				}
			}
		}
	}
	for _, g := range m.gangs {
		sort.Strings(g.zones)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dominantShare is the largest fraction of the biggest machine a request takes.
func dominantShare(r, maxAlloc *scheduling.Resources) float64 {
	var share float64
	for i, v := range r.Fixed {
		if scheduling.Slot(i) == scheduling.SlotPods || v == 0 {
			continue
		}
		if c := maxAlloc.Fixed[i]; c > 0 {
			share = max(share, float64(v)/float64(c))
		} else {
			share = max(share, 1)
		}
	}
	for k, v := range r.Ext {
		if c := maxAlloc.Ext[k]; c > 0 && v > 0 {
			share = max(share, float64(v)/float64(c))
		} else if v > 0 {
			share = max(share, 1)
		}
	}
	return share
}

// shapeKey is a canonical string of everything the solver reads from a pod.
func shapeKey(pod *corev1.Pod, req *scheduling.Resources) string {
	var b strings.Builder
	b.WriteString(pod.Namespace)
	b.WriteByte('|')
	writeMap(&b, pod.Labels)
	b.WriteByte('|')
	b.WriteString(req.Key())
	b.WriteByte('|')
	writeMap(&b, pod.Spec.NodeSelector)
	for _, v := range []any{pod.Spec.Affinity, pod.Spec.Tolerations, pod.Spec.TopologySpreadConstraints} {
		b.WriteByte('|')
		if v != nil {
			raw, _ := json.Marshal(v) // these API types always marshal
			b.Write(raw)
		}
	}
	b.WriteByte('|')
	b.WriteString(strings.Join(scheduling.HostPorts(pod), ","))
	return b.String()
}

func writeMap(b *strings.Builder, mp map[string]string) {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(mp[k])
		b.WriteByte(',')
	}
}

// buildGroups turns every topology term of the pending shapes (and the
// anti-affinity of every shape, for symmetry) into counted groups.
func (m *model) buildGroups() {
	for _, s := range m.shapes[:m.pending] {
		if s.err != nil {
			continue
		}
		s.levels = m.newLevels(s)
	}
	for gi, g := range m.groups {
		for _, i := range g.members {
			sh := m.shapes[i]
			sh.groups = append(sh.groups, gi) // groups ascending: gi grows
			for _, k := range g.keys {
				if !slices.Contains(sh.pinKeys, k) {
					sh.pinKeys = append(sh.pinKeys, k)
				}
			}
		}
	}
	for _, s := range m.shapes {
		sort.Strings(s.pinKeys)
		for _, l := range s.levels {
			l.topoKeys = slices.Clip(l.keys)
			for _, k := range s.pinKeys {
				if !slices.Contains(l.topoKeys, k) {
					l.topoKeys = append(l.topoKeys, k)
				}
			}
		}
	}
}

// newGroup returns the index of the group of shapes match selects, counted
// at key, adding it unless a group with the same id exists. Equal ids must
// mean equal selection.
func (m *model) newGroup(id, key string, sel labels.Selector, match func(s *shape) bool) int {
	id = key + "\x00" + id
	if g, ok := m.groupIDs[id]; ok {
		return g
	}
	if m.groupIDs == nil {
		m.groupIDs = map[string]int{}
	}
	m.groupIDs[id] = len(m.groups)
	g := &group{}
	for _, i := range m.candidates(sel) {
		if match(m.shapes[i]) {
			g.members = append(g.members, i)
		}
	}
	if key != v1.LabelHostname {
		g.keys = []string{key}
	}
	m.groups = append(m.groups, g)
	return len(m.groups) - 1
}

// candidates narrows the shapes a selector may match by one of its
// equality or set requirements, through an index of label pairs; every
// shape when it has none. Ascending indexes.
func (m *model) candidates(sel labels.Selector) []int32 {
	if m.byLabel == nil {
		m.byLabel = map[string][]int32{}
		m.allShapes = make([]int32, len(m.shapes))
		for i, s := range m.shapes {
			m.allShapes[i] = int32(i)
			for k, v := range s.labels {
				m.byLabel[k+"="+v] = append(m.byLabel[k+"="+v], int32(i))
			}
		}
	}
	reqs, ok := sel.Requirements()
	if !ok {
		return m.allShapes
	}
	for _, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			var out []int32
			for _, v := range r.Values().UnsortedList() {
				out = append(out, m.byLabel[r.Key()+"="+v]...)
			}
			slices.Sort(out)
			return slices.Compact(out)
		}
	}
	return m.allShapes
}

// newOwnerGroup is the group of one shape alone, for the symmetry of its
// anti-affinity: built without scanning every shape.
func (m *model) newOwnerGroup(owner *shape, key string) int {
	id := key + "\x00owner\x00" + strconv.Itoa(owner.idx)
	if g, ok := m.groupIDs[id]; ok {
		return g
	}
	if m.groupIDs == nil {
		m.groupIDs = map[string]int{}
	}
	m.groupIDs[id] = len(m.groups)
	g := &group{members: []int32{int32(owner.idx)}}
	if key != v1.LabelHostname {
		g.keys = []string{key}
	}
	m.groups = append(m.groups, g)
	return len(m.groups) - 1
}

// newPortGroup is the group of the shapes (pending or bound) that bind a
// host port, counted per node.
func (m *model) newPortGroup(port string) int {
	id := v1.LabelHostname + "\x00port\x00" + port
	if g, ok := m.groupIDs[id]; ok {
		return g
	}
	if m.groupIDs == nil {
		m.groupIDs = map[string]int{}
	}
	if m.byPort == nil {
		m.byPort = map[string][]int32{}
		for i, s := range m.shapes {
			for _, p := range s.ports {
				m.byPort[p] = append(m.byPort[p], int32(i))
			}
		}
	}
	m.groupIDs[id] = len(m.groups)
	m.groups = append(m.groups, &group{members: m.byPort[port]})
	return len(m.groups) - 1
}

// has reports whether shape index i is in the group.
func (g *group) has(i int) bool {
	_, ok := slices.BinarySearch(g.members, int32(i))
	return ok
}

// newLevels builds the shape's relaxation ladder: level 0 keeps every
// constraint; each next level drops the lightest remaining preferred node
// affinity term, then one soft topology spread constraint. Rules share their
// counted groups across levels.
func (m *model) newLevels(s *shape) []*level {
	base := m.newLevel(s, s.pc)
	levels := []*level{base}
	pc := *s.pc
	for len(pc.Preferred) > 0 {
		pc.Preferred = pc.Preferred[:len(pc.Preferred)-1]
		l := *levels[len(levels)-1]
		l.alts = pc.EffectiveNodeRequirements()
		l.viable = m.viability(l.alts)
		levels = append(levels, m.withDomains(&l))
	}
	for {
		prev := levels[len(levels)-1]
		i := slices.IndexFunc(prev.spread, func(r spreadRule) bool { return !r.hard })
		if i < 0 {
			return levels
		}
		l := *prev
		l.spread = slices.Delete(slices.Clone(prev.spread), i, i+1)
		levels = append(levels, m.withDomains(&l))
	}
}

// daemonPortClash is why a pod binding ports cannot run in pool p: a
// DaemonSet pod binds one of them on some of its types. The whole pool is
// ruled out, not those types alone: the packing narrows a node's types by
// requirements only, so a type-level rule would not hold through merges.
func daemonPortClash(p *pool, ports []string) error {
	for _, port := range ports {
		for _, t := range p.types {
			if slices.Contains(t.daemonPorts, port) {
				return fmt.Errorf("host port %s is bound by a DaemonSet pod on its %s nodes", port, t.it.Name)
			}
		}
	}
	return nil
}

// viability is memoised on the alternatives: shapes of one app that differ
// only in requests share it. Callers must not modify it.
func (m *model) viability(alts []scheduling.Requirements) [][][]bool {
	var id strings.Builder
	for _, alt := range alts {
		id.WriteString(alt.String())
		id.WriteString("\x00")
	}
	if v, ok := m.viableMemo[id.String()]; ok {
		return v
	}
	v := m.computeViability(alts)
	if m.viableMemo == nil {
		m.viableMemo = map[string][][][]bool{}
	}
	m.viableMemo[id.String()] = v
	return v
}

func (m *model) computeViability(alts []scheduling.Requirements) [][][]bool {
	viable := make([][][]bool, len(alts))
	for ai, alt := range alts {
		viable[ai] = make([][]bool, len(m.pools))
		for pi, p := range m.pools {
			row := make([]bool, len(p.types))
			if p.reqs.Admits(alt) == nil {
				for ti, t := range p.types {
					row[ti] = typeAdmits(t, p, alt)
				}
			}
			viable[ai][pi] = row
		}
	}
	return viable
}

// withDomains recomputes the level's topology keys, per-node cap and domains.
func (m *model) withDomains(l *level) *level {
	keys := map[string]bool{}
	l.perNode = 0
	for _, r := range l.spread {
		if r.key != v1.LabelHostname {
			keys[r.key] = true
		} else if r.self && r.hard {
			l.perNode = capPerNode(l.perNode, int(r.maxSkew))
		}
	}
	for _, r := range l.aff {
		if r.key != v1.LabelHostname {
			keys[r.key] = true
		}
	}
	for _, r := range l.anti {
		if r.key != v1.LabelHostname {
			keys[r.key] = true
		} else if r.self {
			l.perNode = 1
		}
	}
	l.keys = nil
	for k := range keys {
		l.keys = append(l.keys, k)
	}
	sort.Strings(l.keys)
	l.domains = map[string][]string{}
	for _, k := range l.keys {
		l.domains[k] = m.eligibleDomains(l, k)
	}
	return l
}

func (m *model) newLevel(s *shape, pc *scheduling.PodConstraints) *level {
	l := &level{alts: pc.EffectiveNodeRequirements(), domainAlts: pc.NodeRequirements, domains: map[string][]string{}}
	l.tolerates = make([]error, len(m.pools))
	for pi, p := range m.pools {
		l.tolerates[pi] = scheduling.Tolerates(pc.Tolerations, p.taints)
		if l.tolerates[pi] == nil {
			l.tolerates[pi] = daemonPortClash(p, s.ports)
		}
	}
	l.viable = m.viability(l.alts)
	l.domainViable = m.viability(l.domainAlts)
	selfSel := func(sel labels.Selector) bool { return sel.Matches(labels.Set(s.labels)) }
	for _, tsc := range pc.Spread {
		ns := s.ns
		sel := tsc.Selector
		g := m.newGroup("spread\x00"+ns+"\x00"+sel.String(), tsc.Key, sel, func(o *shape) bool { return o.ns == ns && sel.Matches(labels.Set(o.labels)) })
		l.spread = append(l.spread, spreadRule{key: tsc.Key, maxSkew: tsc.MaxSkew, minDomains: tsc.MinDomains, group: g, self: selfSel(sel), hard: tsc.Hard})
	}
	for i := range pc.Affinity {
		t := &pc.Affinity[i]
		g := m.newGroup(termID(t), t.Key, t.Selector, func(o *shape) bool { return t.Matches(o.ns, o.labels) })
		l.aff = append(l.aff, termRule{key: t.Key, group: g, self: t.Matches(s.ns, s.labels)})
	}
	for i := range pc.AntiAffinity {
		t := &pc.AntiAffinity[i]
		g := m.newGroup(termID(t), t.Key, t.Selector, func(o *shape) bool { return t.Matches(o.ns, o.labels) })
		l.anti = append(l.anti, termRule{key: t.Key, group: g, self: t.Matches(s.ns, s.labels)})
	}
	for i := range pc.PreferredAffinity {
		t := &pc.PreferredAffinity[i]
		g := m.newGroup(termID(t), t.Key, t.Selector, func(o *shape) bool { return t.Matches(o.ns, o.labels) })
		l.prefAff = append(l.prefAff, termRule{key: t.Key, group: g, self: t.Matches(s.ns, s.labels)})
	}
	for i := range pc.PreferredAntiAffinity {
		t := &pc.PreferredAntiAffinity[i]
		g := m.newGroup(termID(t), t.Key, t.Selector, func(o *shape) bool { return t.Matches(o.ns, o.labels) })
		l.prefAnti = append(l.prefAnti, termRule{key: t.Key, group: g, self: t.Matches(s.ns, s.labels)})
	}
	// A host port is an anti-affinity at the hostname among the pods that
	// bind it: one of them per node.
	for _, port := range s.ports {
		l.anti = append(l.anti, termRule{key: v1.LabelHostname, group: m.newPortGroup(port), self: true})
	}
	// Symmetry: a pod may not join a domain holding a pod whose anti-affinity
	// selects it. Each distinct term is matched once, not once per owner.
	for _, at := range m.antiSelecting(s) {
		for _, owner := range at.owners {
			if owner == s {
				continue
			}
			g := m.newOwnerGroup(owner, at.term.Key)
			l.anti = append(l.anti, termRule{key: at.term.Key, group: g})
		}
	}
	return m.withDomains(l)
}

// antiTerm is one distinct required anti-affinity term (selector,
// namespaces and key) with the shapes that carry it.
type antiTerm struct {
	term   *scheduling.AffinityTerm
	owners []*shape
}

// antiTermList groups every shape's required anti-affinity terms by what
// they select, in shape order; built once.
func (m *model) antiTermList() []*antiTerm {
	if m.antiTerms != nil {
		return m.antiTerms
	}
	m.antiTerms = []*antiTerm{}
	byID := map[string]*antiTerm{}
	for _, o := range m.shapes {
		for i := range o.antiOwn {
			t := &o.antiOwn[i]
			id := termID(t) + "\x00" + t.Key
			at := byID[id]
			if at == nil {
				at = &antiTerm{term: t}
				byID[id] = at
				m.antiTerms = append(m.antiTerms, at)
			}
			if !slices.Contains(at.owners, o) {
				at.owners = append(at.owners, o)
			}
		}
	}
	return m.antiTerms
}

// antiSelecting is the distinct required anti-affinity terms that select
// s, in antiTermList order. Built once for every shape through the label
// index: matching each term against each shape was quadratic (2,000 terms
// by tens of thousands of shapes on diverse-100k).
func (m *model) antiSelecting(s *shape) []*antiTerm {
	if m.antiBy == nil {
		m.antiBy = make([][]*antiTerm, len(m.shapes))
		for _, at := range m.antiTermList() {
			for _, i := range m.candidates(at.term.Selector) {
				if o := m.shapes[i]; at.term.Matches(o.ns, o.labels) {
					m.antiBy[i] = append(m.antiBy[i], at)
				}
			}
		}
	}
	return m.antiBy[s.idx]
}

// termID identifies what an affinity term selects.
func termID(t *scheduling.AffinityTerm) string {
	return "term\x00" + strings.Join(t.Namespaces, ",") + "\x00" + t.Selector.String()
}

func capPerNode(cur, n int) int {
	if cur == 0 || n < cur {
		return n
	}
	return cur
}

// eligibleDomains are the values of key a pod at this level could land in:
// from the offerings of every type it may run on, and from existing nodes it matches.
// The result depends only on the key, the alternatives and which pools are
// tolerated, so it is memoised on those: shapes of one app that differ only
// in requests share it. Callers must not modify it.
func (m *model) eligibleDomains(l *level, key string) []string {
	var id strings.Builder
	id.WriteString(key)
	for _, alt := range l.domainAlts {
		id.WriteString("\x00")
		id.WriteString(alt.String())
	}
	id.WriteString("\x00")
	for _, err := range l.tolerates {
		id.WriteByte(byte('0' + b2i(err == nil)))
	}
	if out, ok := m.domainMemo[id.String()]; ok {
		return out
	}
	out := m.computeDomains(l, key)
	if m.domainMemo == nil {
		m.domainMemo = map[string][]string{}
	}
	m.domainMemo[id.String()] = out
	return out
}

func (m *model) computeDomains(l *level, key string) []string {
	set := map[string]bool{}
	for ai, alt := range l.domainAlts {
		for pi, p := range m.pools {
			if l.tolerates[pi] != nil {
				continue
			}
			for ti, t := range p.types {
				if !l.domainViable[ai][pi][ti] {
					continue
				}
				for _, o := range t.offs {
					if v, ok := offeringValue(t, o, key); ok && (alt.Get(key) == nil || alt.Get(key).Allows(v)) {
						set[v] = true
					}
				}
			}
		}
	}
	for i, n := range m.nodes {
		v, ok := n.Labels[key]
		if !ok {
			continue
		}
		for _, alt := range l.domainAlts {
			if alt.Matches(m.nodes[i].Labels) {
				set[v] = true
				break
			}
		}
	}
	out := make([]string, 0, len(set))
	for v := range set {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// offeringValue is the value of a label key on a machine of type t bought as o.
func offeringValue(t *poolType, o cloudprovider.Offering, key string) (string, bool) {
	switch key {
	case v1.LabelZone:
		return o.Zone, true
	case v1.LabelCapacityType:
		return o.CapacityType, true
	}
	v, ok := t.labels[key]
	return v, ok
}

// typeAdmits reports whether a machine of type t from pool p can satisfy the
// pod requirements alt: its labels, and at least one offering's zone and capacity type.
func typeAdmits(t *poolType, p *pool, alt scheduling.Requirements) bool {
	for k, r := range alt {
		switch k {
		case v1.LabelZone, v1.LabelCapacityType:
			continue
		case v1.LabelHostname:
			// A new node's hostname is not known before launch, so only
			// requirements every name meets (NotIn, Exists) can hold.
			if r.Values() != nil {
				return false
			}
			continue
		}
		if v, ok := t.labels[k]; ok {
			if !r.Allows(v) {
				return false
			}
		} else if p.reqs.Get(k) == nil && !r.AllowsAbsent() && (!v1.WellKnownLabels[k] || len(r.Values()) != 1) {
			// Registration writes a well-known label the type lacks only
			// when the claim pins it to one value (claims.Labels): under
			// Exists, Gt, Lt or In of several values the node would come
			// up without it and the scheduler refuse the pod.
			return false
		}
	}
	return hasOffering(t, alt.Get(v1.LabelZone), alt.Get(v1.LabelCapacityType))
}

func hasOffering(t *poolType, zone, ct *scheduling.Requirement) bool {
	for _, o := range t.offs {
		if (zone == nil || zone.Allows(o.Zone)) && (ct == nil || ct.Allows(o.CapacityType)) {
			return true
		}
	}
	return false
}
