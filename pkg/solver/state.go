package solver

import (
	"cmp"
	"maps"
	"math"
	"math/bits"
	"slices"

	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// state is one strategy run's mutable view: node fill, topology counts,
// pool limits and the placements made so far. Everything immutable lives in
// the model, so a state can be cloned cheaply to try a gang in each zone.
type state struct {
	m        *model
	strategy Strategy
	// demand is the summed requests of the pods not yet placed, for StrategyDemandAware.
	demand scheduling.Resources
	exist  []*existNode
	nodes  []*newNode
	// counts[key][value][group] counts pods of a group per topology domain.
	counts    map[string]map[string][]int32
	total     []int32                // pods per group, everywhere
	remaining []scheduling.Resources // per pool: limits minus usage minus planned
	level     []int                  // per shape: relaxation level
	left      []int                  // per shape: pods not yet placed
	// cursorE and cursorN: per shape, nodes before these indexes are known
	// not to take the shape for reasons that only get worse as nodes fill.
	cursorE, cursorN []int
	// guide steers the LP-guided strategies; cursorG is placePlanned's
	// cursor over the nodes of the LP's types, per shape, which are the
	// first guidedEnd planned nodes.
	guide     *lpGuide
	cursorG   []int
	guidedEnd int
	// guideBlocks are the runs of nodes preopen started per type, in order;
	// shared by clones, since nothing rewrites them.
	guideBlocks []guideBlock
	// prefer and quota are this run's copies of the guide's per-class
	// types and quotas: a type leaves a class's set once the class has put
	// as many pods on started machines of it as the LP does.
	prefer [][]uint64
	quota  []map[int]float64
	// rooms and eRooms index the planned and existing nodes by free room
	// and zone (see roomIndex); nil until first used, and after anything
	// that reorders nodes.
	rooms, eRooms *roomIndex
	// minCache holds minDomainCount's answers per group.
	minCache map[int]map[minKey]int32
	// forceZone confines placements to one zone while a gang is planned.
	forceZone string
	// reservations left per reservation key, for nodes that must be reserved.
	reservations map[string]int
	bindings     []Binding
	unsched      []Unschedulable
	scratch      []int32
	// lists interns the candidate lists of nodes that do not own theirs.
	lists map[uint64][][]int32
	picks []pick   // scratch for finish's choices
	names []string // scratch for finish's instance types, zones and capacity types
	// allowMemo holds allowsValue's answers, and zoneMemo allowedZones',
	// until the next pod of a grouped shape is counted (see forgetAllowed).
	allowMemo []allowEntry
	zoneMemo  []zoneEntry
}

type existNode struct {
	n           *Node
	alloc, used scheduling.Resources
	groupCount  groupCounts
	// tolerates caches, by shape, whether the node's taints are tolerated.
	// A pure function of immutable inputs, so clones may share it.
	tolerates map[int]bool
}

type newNode struct {
	pool *pool
	// reqs are the pool's requirements narrowed by each merged pod
	// alternative and by topology pins. Never mutated in place.
	reqs scheduling.Requirements
	// cands index pool.types, cheapest first: every type able to hold all of
	// pods under reqs and the pool's limits, plus possibly some later in the
	// list that no longer fit (dropped lazily when reached; cands[0] always fits).
	cands      []int32
	owned      bool // cands is this node's own slice
	used       scheduling.Resources
	pods       []*corev1.Pod
	groupCount groupCounts
	merged     []mergeKey
	charged    scheduling.Resources // capacity counted against the pool's limits
	reserved   bool                 // holds a reservation taken during packing
	// extra are the types the cost-aware cap took out of cands: too pricey to
	// grow into, but still launch fallbacks when they hold the pods. Never
	// written, so it may share the pool's list of types.
	extra []int32
	// maxAlloc is the element-wise maximum allocatable over cands: a pod that
	// does not fit beside used within it fits no candidate.
	maxAlloc scheduling.Resources
	// guided is the instance type (index in pool.types) StrategyLP opened
	// the node as, or -1.
	guided int32
	// possMemo caches the last few answers of possible() until the node
	// changes. It is small and fixed: an unbounded map per node held
	// millions of entries on diverse-100k (full nodes are tried by every
	// shape and never change).
	possMemo [possMemoSize]possEntry
	possNext int
}

const possMemoSize = 4

type possEntry struct {
	key  possKey
	vals []string
	ok   bool
}

type possKey struct {
	shape, level, alt int
	key               string
	zones             uint64
}

// possibleMemo is possible, remembered per node until a pod joins it: first
// fit asks it for every node a pod of the same shape tries.
func (st *state) possibleMemo(n *newNode, s *shape, l *level, ai int, reqs scheduling.Requirements, key string) []string {
	zones := allZones
	if key == v1.LabelZone {
		zones = st.allowedZones(s, l)
	}
	pk := possKey{shape: s.idx, level: st.level[s.idx], alt: ai, key: key, zones: zones}
	for i := range n.possMemo {
		if e := &n.possMemo[i]; e.ok && e.key == pk {
			return e.vals
		}
	}
	v := st.possible(n, s, l, ai, reqs, key, zones)
	n.possMemo[n.possNext] = possEntry{key: pk, vals: v, ok: true}
	n.possNext = (n.possNext + 1) % possMemoSize
	return v
}

func (n *newNode) refreshMaxAlloc() {
	// Fixed slots in place; only types with extended resources (few, once
	// unrequested ones are trimmed) take the map merge.
	var m scheduling.Resources
	p := n.pool
	for _, ti := range n.cands {
		for d, v := range &p.fixed[ti] {
			m.Fixed[d] = max(m.Fixed[d], v)
		}
		if p.ext[ti] {
			m = m.Max(scheduling.Resources{Fixed: m.Fixed, Ext: p.types[ti].alloc.Ext})
		}
	}
	n.maxAlloc = m
}

var noResources scheduling.Resources

type mergeKey struct{ shape, level, alt int }

func newState(m *model, strategy Strategy) *state {
	st := &state{
		m: m, strategy: strategy,
		counts:    map[string]map[string][]int32{},
		total:     make([]int32, len(m.groups)),
		remaining: make([]scheduling.Resources, len(m.pools)),
		level:     make([]int, len(m.shapes)),
		left:      make([]int, len(m.shapes)),
		cursorE:   make([]int, len(m.shapes)),
		cursorN:   make([]int, len(m.shapes)),
	}
	for i, p := range m.pools {
		st.remaining[i] = p.remaining
	}
	st.reservations = maps.Clone(m.reservations)
	for i, s := range m.shapes {
		st.left[i] = len(s.pods)
		for range s.pods {
			st.demand = st.demand.Add(s.req)
		}
	}
	for i, n := range m.nodes {
		e := &existNode{n: n, alloc: scheduling.FromList(n.Allocatable), tolerates: map[int]bool{}}
		for _, si := range m.nodePods[i] {
			s := m.shapes[si]
			e.used = e.used.Add(s.req)
			st.count(s, e)
		}
		st.exist = append(st.exist, e)
	}
	return st
}

// clone copies everything a placement mutates.
func (st *state) clone() *state {
	c := *st
	c.counts = make(map[string]map[string][]int32, len(st.counts))
	for k, byVal := range st.counts {
		cv := make(map[string][]int32, len(byVal))
		for v, g := range byVal {
			cv[v] = slices.Clone(g)
		}
		c.counts[k] = cv
	}
	c.total = slices.Clone(st.total)
	c.minCache = nil
	c.reservations = maps.Clone(st.reservations)
	c.remaining = slices.Clone(st.remaining)
	c.level, c.left = slices.Clone(st.level), slices.Clone(st.left)
	c.cursorE, c.cursorN = slices.Clone(st.cursorE), slices.Clone(st.cursorN)
	c.cursorG = slices.Clone(st.cursorG)
	c.prefer, c.quota = clonePrefer(st.prefer), cloneQuota(st.quota)
	c.exist = make([]*existNode, len(st.exist))
	for i, e := range st.exist {
		ce := *e
		ce.groupCount = slices.Clone(e.groupCount)
		c.exist[i] = &ce
	}
	c.nodes = make([]*newNode, len(st.nodes))
	for i, n := range st.nodes {
		cn := *n
		if n.owned {
			cn.cands = slices.Clone(n.cands)
		}
		cn.pods = slices.Clone(n.pods)
		cn.groupCount = slices.Clone(n.groupCount)
		cn.merged = slices.Clone(n.merged)
		cn.extra = slices.Clone(n.extra)
		cn.possMemo = [possMemoSize]possEntry{}
		c.nodes[i] = &cn
	}
	c.rooms, c.eRooms, c.allowMemo, c.zoneMemo = nil, nil, nil, nil
	c.bindings = slices.Clone(st.bindings)
	c.unsched = slices.Clone(st.unsched)
	c.scratch, c.picks, c.names, c.lists = nil, nil, nil, nil
	return &c
}

// target is a node a pod may be placed on, as the topology rules see it.
type target interface {
	count(group int) int32
	// value returns the node's value for a label key, and whether it is settled.
	value(key string) (string, bool)
	isNew() bool
}

func (e *existNode) count(g int) int32 { return e.groupCount.get(g) }
func (e *existNode) value(key string) (string, bool) {
	v, ok := e.n.Labels[key]
	return v, ok
}
func (e *existNode) isNew() bool { return false }

func (n *newNode) count(g int) int32 { return n.groupCount.get(g) }

// groupCounts counts a node's pods per group, sparsely: a node holds pods
// of a few groups, and a dense slice per node of every group (tens of
// thousands on diverse-100k) took gigabytes.
type groupCounts []groupCount

type groupCount struct{ g, c int32 }

func (gc groupCounts) get(g int) int32 {
	for _, e := range gc {
		if int(e.g) == g {
			return e.c
		}
	}
	return 0
}

func (gc *groupCounts) add(g int, delta int32) {
	for i := range *gc {
		if int((*gc)[i].g) == g {
			(*gc)[i].c += delta
			return
		}
	}
	*gc = append(*gc, groupCount{g: int32(g), c: delta})
}
func (n *newNode) value(key string) (string, bool) {
	if r := n.reqs.Get(key); r != nil && r.Len() == 1 {
		return r.Any()
	}
	return "", false
}
func (n *newNode) isNew() bool { return true }

// possible lists the values of key the node may still take with one more pod
// of shape s (alternative ai, requirements reqs), cheapest offering first;
// for the zone key only those in allowed (the zones the pod may land in).
func (st *state) possible(n *newNode, s *shape, l *level, ai int, reqs scheduling.Requirements, key string, allowed uint64) []string {
	zone, ct := reqs.Get(v1.LabelZone), reqs.Get(v1.LabelCapacityType)
	r := reqs.Get(key)
	viable := l.viable[ai][n.pool.idx]
	type priced struct {
		v     string
		price float64
	}
	var out []priced
	maxPrice := 0.0 // the highest price in out
	zones := len(st.m.zones)
	if key == v1.LabelZone && st.m.zoneBits != nil {
		zones = bits.OnesCount64(st.nodeZones(n) & allowed &^ st.m.otherZone)
	}
	// Read once: the loop below visits every offering of every candidate type.
	numbered := st.m.zoneBits != nil
	offers := st.newOfferFilter(zone, ct)
	need := fixedSum(&n.used, &s.req)
	for _, ti := range n.cands {
		// A type that cannot take the pod adds nothing, so it is passed
		// before the stop below (which a later type meets as well).
		if !viable[ti] || !fitsFixed(&need, &n.pool.fixed[ti]) {
			continue
		}
		t := n.pool.types[ti]
		// Every zone the candidates offer seen, none can get cheaper: types
		// are sorted by their cheapest offering, so no later one changes
		// the list. A single value needs no price.
		if key == v1.LabelZone && len(out) >= zones && (zones == 1 || t.minPrice >= maxPrice) {
			break
		}
		if !scheduling.FitsSum(&n.used, &s.req, &t.alloc) {
			continue
		}
		for k, o := range t.offs {
			if !offers.admits(t, k, numbered) || (numbered && allowed != allZones && t.offZone[k]&allowed == 0) {
				continue
			}
			v, ok := offeringValue(t, o, key)
			// For the zone key r is the zone rule, applied above as bits.
			if !ok || (r != nil && !(key == v1.LabelZone && numbered) && !r.Allows(v)) {
				continue
			}
			if !numbered && allowed != allZones && st.m.zoneBits[v]&allowed == 0 {
				continue
			}
			if i := slices.IndexFunc(out, func(p priced) bool { return p.v == v }); i < 0 {
				out = append(out, priced{v, o.PricePerHour})
			} else if o.PricePerHour < out[i].price {
				out[i].price = o.PricePerHour
			}
		}
		maxPrice = 0
		for _, p := range out {
			maxPrice = max(maxPrice, p.price)
		}
	}
	slices.SortStableFunc(out, func(a, b priced) int { return cmpFloat(a.price, b.price) })
	vals := make([]string, len(out))
	for i, p := range out {
		vals[i] = p.v
	}
	return vals
}

// capacityTypes are the capacity types possible and filter read as flags.
var capacityTypes = [3]string{v1.CapacityTypeReserved, v1.CapacityTypeSpot, v1.CapacityTypeOnDemand}

// ctReserved is the reserved capacity type's index in capacityTypes;
// otherCT stands for a capacity type not in it.
const (
	ctReserved = 0
	otherCT    = uint8(len(capacityTypes))
)

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// pin settles a new node's value for a topology key.
type pin struct{ key, value string }

// topology checks the shape's topology rules against a node, returning the
// pins an unsettled new node needs. permanent reports a failure that more
// placements can only make worse, so first-fit cursors may skip the node.
// For a new node, ai and reqs are the pod alternative being tried and the
// node's requirements with it merged.
func (st *state) topology(s *shape, l *level, t target, ai int, reqs scheduling.Requirements) (pins []pin, ok, permanent bool) {
	for _, r := range l.spread {
		if r.key == v1.LabelHostname && int(t.count(r.group))+b2i(r.self) > int(r.maxSkew) {
			return nil, false, true
		}
	}
	for _, r := range l.anti {
		if r.key == v1.LabelHostname && t.count(r.group) > 0 {
			return nil, false, true
		}
	}
	for _, r := range l.aff {
		if r.key == v1.LabelHostname && t.count(r.group) == 0 && !(r.self && st.total[r.group] == 0) {
			return nil, false, false
		}
	}
	keys := l.topoKeys
	if st.forceZone != "" && !slices.Contains(keys, v1.LabelZone) {
		keys = append(slices.Clip(keys), v1.LabelZone)
	}
	for _, key := range keys {
		if v, settled := t.value(key); settled {
			if ok, perm := st.allowsValueMemo(s, l, key, v); !ok {
				return nil, false, perm
			}
			continue
		}
		if !t.isNew() {
			// An existing node without the key is outside every domain: hard
			// spread and affinity exclude it, anti-affinity does not.
			if st.needsKey(l, key) || (key == v1.LabelZone && st.forceZone != "") {
				return nil, false, true
			}
			continue
		}
		// A key settled after another pin must take a value the pinned
		// node can still have: picked on its own, a zone and an instance
		// size could each be offered yet never together. The memo does not
		// know earlier pins, so they are read afresh.
		var vals []string
		if len(pins) == 0 {
			vals = st.possibleMemo(t.(*newNode), s, l, ai, reqs, key)
		} else {
			zones := allZones
			if key == v1.LabelZone {
				zones = st.allowedZones(s, l)
			}
			vals = st.possible(t.(*newNode), s, l, ai, withPins(reqs, pins), key, zones)
		}
		best, bestCount := "", int32(-1)
		for _, v := range vals {
			if ok, _ := st.allowsValueMemo(s, l, key, v); !ok {
				continue
			}
			c := st.spreadCount(l, key, v)
			if bestCount < 0 || c < bestCount {
				best, bestCount = v, c
			}
		}
		if bestCount < 0 {
			return nil, false, false
		}
		pins = append(pins, pin{key: key, value: best})
	}
	return pins, true, false
}

// withPins is reqs narrowed to the pins, as a copy.
func withPins(reqs scheduling.Requirements, pins []pin) scheduling.Requirements {
	out := reqs.Copy()
	for _, pn := range pins {
		out.Add(scheduling.MustRequirement(pn.key, corev1.NodeSelectorOpIn, pn.value))
	}
	return out
}

func (st *state) needsKey(l *level, key string) bool {
	for _, r := range l.spread {
		if r.key == key {
			return true
		}
	}
	for _, r := range l.aff {
		if r.key == key {
			return true
		}
	}
	return false
}

// spreadCount is the count a pin choice minimises: the first spread rule's.
func (st *state) spreadCount(l *level, key, v string) int32 {
	for _, r := range l.spread {
		if r.key == key {
			return st.domainCount(key, v, r.group)
		}
	}
	return 0
}

// minDomainCount is the least count of group g over domains, cached until
// a pod of g is counted: first fit asks it for every node it tries.
func (st *state) minDomainCount(key string, domains []string, g int) int32 {
	if len(domains) == 0 {
		return 0
	}
	mk := minKey{key: key, first: &domains[0], n: len(domains)}
	if c, ok := st.minCache[g][mk]; ok {
		return c
	}
	minCount := int32(0)
	for i, d := range domains {
		if c := st.domainCount(key, d, g); i == 0 || c < minCount {
			minCount = c
		}
	}
	if st.minCache == nil {
		st.minCache = map[int]map[minKey]int32{}
	}
	byKey := st.minCache[g]
	if byKey == nil {
		byKey = map[minKey]int32{}
		st.minCache[g] = byKey
	}
	byKey[mk] = minCount
	return minCount
}

// minKey identifies a domain list (shared, read-only, from the model) of a key.
type minKey struct {
	key   string
	first *string
	n     int
}

func (st *state) domainCount(key, v string, g int) int32 {
	if c := st.counts[key][v]; c != nil {
		return c[g]
	}
	return 0
}

// allowEntry is one remembered answer of allowsValue.
type allowEntry struct {
	l        *level
	key, v   string
	ok, perm bool
}

// zoneEntry is one remembered answer of allowedZones.
type zoneEntry struct {
	l     *level
	zones uint64
}

// forgetAllowed drops the remembered answers of allowsValue and
// allowedZones: group counts changed, or the gang's zone was lifted.
func (st *state) forgetAllowed() {
	st.allowMemo, st.zoneMemo = st.allowMemo[:0], st.zoneMemo[:0]
}

// allowsValueMemo is allowsValue remembered until a pod is counted: first
// fit asks the same question of every node of a zone it tries.
func (st *state) allowsValueMemo(s *shape, l *level, key, v string) (ok, permanent bool) {
	for i := range st.allowMemo {
		if e := &st.allowMemo[i]; e.l == l && e.key == key && e.v == v {
			return e.ok, e.perm
		}
	}
	ok, permanent = st.allowsValue(s, l, key, v)
	if len(st.allowMemo) >= 64 {
		st.allowMemo = st.allowMemo[:0]
	}
	st.allowMemo = append(st.allowMemo, allowEntry{l: l, key: key, v: v, ok: ok, perm: permanent})
	return ok, permanent
}

func (st *state) allowsValue(s *shape, l *level, key, v string) (ok, permanent bool) {
	if key == v1.LabelZone && st.forceZone != "" && v != st.forceZone {
		return false, false
	}
	for _, r := range l.anti {
		if r.key == key && st.domainCount(key, v, r.group) > 0 {
			return false, true
		}
	}
	for _, r := range l.aff {
		if r.key == key && st.domainCount(key, v, r.group) == 0 && !(r.self && st.total[r.group] == 0) {
			return false, false
		}
	}
	for _, r := range l.spread {
		if r.key != key {
			continue
		}
		minCount := int32(0)
		if domains := l.domains[key]; len(domains) >= int(r.minDomains) {
			minCount = st.minDomainCount(key, domains, r.group)
		}
		if st.domainCount(key, v, r.group)+int32(b2i(r.self))-minCount > r.maxSkew {
			return false, false
		}
	}
	return true, false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// count records a pod of shape s on node t in every group it belongs to.
func (st *state) count(s *shape, t target) {
	if len(s.groups) > 0 {
		st.forgetAllowed()
	}
	for _, g := range s.groups {
		clear(st.minCache[g]) // keeps the map: a pod is counted per placement
		switch n := t.(type) {
		case *existNode:
			n.groupCount.add(g, 1)
		case *newNode:
			n.groupCount.add(g, 1)
		}
		st.total[g]++
		for _, key := range st.m.groups[g].keys {
			v, ok := t.value(key)
			if !ok {
				continue
			}
			byVal := st.counts[key]
			if byVal == nil {
				byVal = map[string][]int32{}
				st.counts[key] = byVal
			}
			c := byVal[v]
			if c == nil {
				c = make([]int32, len(st.m.groups))
				byVal[v] = c
			}
			c[g]++
		}
	}
}

func (st *state) tryExisting(s *shape, l *level, e *existNode, pod *corev1.Pod) (ok, permanent bool) {
	tol, cached := e.tolerates[s.idx]
	if !cached {
		tol = scheduling.Tolerates(s.pc.Tolerations, e.n.Taints) == nil
		e.tolerates[s.idx] = tol
	}
	if !tol || !scheduling.FitsSum(&e.used, &s.req, &e.alloc) {
		return false, true
	}
	matched := false
	for _, alt := range l.alts {
		if alt.Matches(e.n.Labels) {
			matched = true
			break
		}
	}
	if !matched {
		return false, true
	}
	if _, ok, perm := st.topology(s, l, e, 0, nil); !ok {
		return false, perm
	}
	e.used = e.used.Add(s.req)
	st.count(s, e)
	st.bindings = append(st.bindings, Binding{Pod: pod, NodeName: e.n.Name})
	return true, false
}

func (st *state) tryNew(s *shape, l *level, n *newNode, pod *corev1.Pod) (ok, permanent bool) {
	p := n.pool
	if l.tolerates[p.idx] != nil || !scheduling.FitsSum(&n.used, &s.req, &n.maxAlloc) {
		return false, true
	}
	permanent = true
	for ai, alt := range l.alts {
		key := mergeKey{shape: s.idx, level: st.level[s.idx], alt: ai}
		merged := len(alt) == 0 || slices.Contains(n.merged, key)
		reqs := n.reqs
		if !merged {
			if !reqs.CompatibleWith(alt) {
				continue
			}
			reqs = reqs.Intersect(alt)
		}
		pins, ok, perm := st.topology(s, l, n, ai, reqs)
		if !ok {
			permanent = permanent && perm
			continue
		}
		if len(pins) > 0 {
			reqs = withPins(reqs, pins)
		}
		var next []int32 // the node's candidates with the pod, not yet committed
		if merged && len(pins) == 0 {
			// Fast path: cands already satisfy every requirement, only fit can
			// have changed. Types before the first fit can never fit again.
			i := st.firstFit(n, &s.req)
			if i < 0 {
				continue
			}
			next = n.cands[i:]
		} else {
			k := st.filter(n, s, l.viable[ai][p.idx], reqs, true)
			if k == 0 {
				permanent = permanent && len(pins) == 0
				continue
			}
			next = st.scratch[:k]
		}
		if !n.reserved && p.hasReserved && (settledReserved(reqs) || st.onlyReservedIn(p, next, &n.used, &s.req, reqs)) {
			// A node that must be reserved takes one machine of one
			// reservation now, so later nodes cannot count on it too.
			ti, o, ok := st.takeReservation(n, next, reqs)
			if !ok {
				permanent = false
				continue
			}
			next = []int32{ti}
			reqs = reqs.Copy()
			reqs.Add(scheduling.MustRequirement(v1.LabelZone, corev1.NodeSelectorOpIn, o.Zone))
			reqs.Add(scheduling.MustRequirement(v1.LabelInstanceType, corev1.NodeSelectorOpIn, p.types[ti].it.Name))
			n.cands, n.owned, n.reserved = next, true, true
			n.refreshMaxAlloc()
		}
		if len(next) != len(n.cands) || &next[0] != &n.cands[0] {
			if len(next) > 0 && len(n.cands) > 0 && &next[0] == &n.cands[len(n.cands)-len(next)] {
				n.cands = next // a suffix of the node's own list
			} else if n.owned {
				n.cands = append(n.cands[:0], next...)
			} else {
				n.cands = st.intern(next)
			}
			n.refreshMaxAlloc()
		}
		n.reqs = reqs
		if !merged && len(alt) > 0 {
			n.merged = append(n.merged, key)
		}
		n.used = n.used.Add(s.req)
		n.possMemo = [possMemoSize]possEntry{}
		n.pods = append(n.pods, pod)
		if p.hasLimits {
			c := p.types[n.cands[0]].capacity
			st.remaining[p.idx] = st.remaining[p.idx].Add(n.charged).Sub(c)
			n.charged = c
		}
		st.count(s, n)
		return true, false
	}
	return false, permanent
}

// offerFilter is a zone and a capacity-type rule (nil: any), read once into
// bits and flags for the many offerings filter and possible check.
type offerFilter struct {
	zone, ct *scheduling.Requirement
	zoneMask uint64 // the zones zone allows, when the model numbers zones
	ctOK     [len(capacityTypes)]bool
}

func (st *state) newOfferFilter(zone, ct *scheduling.Requirement) offerFilter {
	f := offerFilter{zone: zone, ct: ct, zoneMask: allZones}
	if zone != nil && st.m.zoneBits != nil {
		f.zoneMask = 0
		for z, bit := range st.m.zoneBits {
			if zone.Allows(z) {
				f.zoneMask |= bit
			}
		}
	}
	for i, v := range capacityTypes {
		f.ctOK[i] = ct == nil || ct.Allows(v)
	}
	return f
}

// admits reports whether offering k of t passes the filter's rules;
// numbered says the model numbers zones (t.offZone is set).
func (f *offerFilter) admits(t *poolType, k int, numbered bool) bool {
	if f.zone != nil && ((numbered && t.offZone[k]&f.zoneMask == 0) || (!numbered && !f.zone.Allows(t.offs[k].Zone))) {
		return false
	}
	c := t.offCT[k]
	return f.ct == nil || (c != otherCT && f.ctOK[c]) || (c == otherCT && f.ct.Allows(t.offs[k].CapacityType))
}

// hasOffering is hasOffering under a filter, counting only reservations
// with machines left.
func (st *state) hasOffering(t *poolType, f *offerFilter) bool {
	numbered := st.m.zoneBits != nil
	if numbered && !t.offSlow {
		for c, zones := range t.zonesByCT {
			if f.ctOK[c] && zones&f.zoneMask != 0 {
				return true
			}
		}
		return false
	}
	for k, o := range t.offs {
		if f.admits(t, k, numbered) &&
			(t.offCT[k] != ctReserved || st.reservations[reservationKey(t.it.Name, o)] > 0) {
			return true
		}
	}
	return false
}

// onlyReservedIn reports whether every offering left to candidates cands,
// holding used + req under reqs, is a reservation.
func (st *state) onlyReservedIn(p *pool, cands []int32, used, req *scheduling.Resources, reqs scheduling.Requirements) bool {
	zone, ct := reqs.Get(v1.LabelZone), reqs.Get(v1.LabelCapacityType)
	for _, ti := range cands {
		t := p.types[ti]
		if !scheduling.FitsSum(used, req, &t.alloc) {
			continue
		}
		for _, o := range t.offs {
			if o.CapacityType != v1.CapacityTypeReserved && (zone == nil || zone.Allows(o.Zone)) && (ct == nil || ct.Allows(o.CapacityType)) {
				return false
			}
		}
	}
	return true
}

// takeReservation picks, for a node that must run on reserved capacity, the
// cheapest candidate with a reservation left in the zones reqs allow.
func (st *state) takeReservation(n *newNode, cands []int32, reqs scheduling.Requirements) (int32, cloudprovider.Offering, bool) {
	zone := reqs.Get(v1.LabelZone)
	for _, ti := range cands {
		t := n.pool.types[ti]
		for _, o := range t.offs {
			if o.CapacityType != v1.CapacityTypeReserved || (zone != nil && !zone.Allows(o.Zone)) {
				continue
			}
			if k := reservationKey(t.it.Name, o); st.reservations[k] > 0 {
				st.reservations[k]--
				return ti, o, true
			}
		}
	}
	return 0, cloudprovider.Offering{}, false
}

// firstFit is the index of the cheapest candidate that holds one more req
// within the pool's limits, or -1.
func (st *state) firstFit(n *newNode, req *scheduling.Resources) int {
	p := n.pool
	need := fixedSum(&n.used, req)
	for i, ti := range n.cands {
		if !fitsFixed(&need, &p.fixed[ti]) {
			continue
		}
		t := p.types[ti]
		if scheduling.FitsSum(&n.used, req, &t.alloc) &&
			(!p.hasLimits || withinLimits(&p.limited, &st.remaining[p.idx], &n.charged, &t.capacity)) {
			return i
		}
	}
	return -1
}

// filter writes into st.scratch the node's candidates that stay viable with
// one more pod of shape s under reqs, and returns how many there are.
func (st *state) filter(n *newNode, s *shape, viable []bool, reqs scheduling.Requirements, reqsChanged bool) int {
	p := n.pool
	var zone, ct *scheduling.Requirement
	var labelPins []*scheduling.Requirement
	var offers offerFilter
	if reqsChanged {
		// A requirement that is still the pool's own holds for every type
		// and offering of the pool (newPoolType kept only those), so it is
		// not checked again per type.
		zone, ct = reqs.Get(v1.LabelZone), reqs.Get(v1.LabelCapacityType)
		if zone == p.reqs.Get(v1.LabelZone) {
			zone = nil
		}
		if ct == p.reqs.Get(v1.LabelCapacityType) {
			ct = nil
		}
		for k, r := range reqs {
			if k != v1.LabelZone && k != v1.LabelCapacityType && r.Len() == 1 && r != p.reqs[k] {
				labelPins = append(labelPins, r)
			}
		}
		offers = st.newOfferFilter(zone, ct)
	}
	if cap(st.scratch) < len(n.cands) {
		st.scratch = make([]int32, len(n.cands))
	}
	st.scratch = st.scratch[:len(n.cands)]
	k := 0
	need := fixedSum(&n.used, &s.req)
	for _, ti := range n.cands {
		if !viable[ti] || !fitsFixed(&need, &p.fixed[ti]) {
			continue
		}
		t := p.types[ti]
		if !scheduling.FitsSum(&n.used, &s.req, &t.alloc) {
			continue
		}
		if reqsChanged {
			if !st.hasOffering(t, &offers) || !labelsAllow(t, labelPins) {
				continue
			}
		}
		if p.hasLimits && !withinLimits(&p.limited, &st.remaining[p.idx], &n.charged, &t.capacity) {
			continue
		}
		st.scratch[k] = ti
		k++
	}
	return k
}

// fixedSum is the fixed slots of a + b.
func fixedSum(a, b *scheduling.Resources) [scheduling.NumSlots]int64 {
	sum := a.Fixed
	for i, v := range b.Fixed {
		sum[i] += v
	}
	return sum
}

// fitsFixed reports whether need fits within alloc, slot by slot; extended
// resources are left to scheduling.FitsSum.
func fitsFixed(need, alloc *[scheduling.NumSlots]int64) bool {
	for i, v := range need {
		if v > alloc[i] {
			return false
		}
	}
	return true
}

func labelsAllow(t *poolType, reqs []*scheduling.Requirement) bool {
	for _, r := range reqs {
		if v, ok := t.labels[r.Key]; ok && !r.Allows(v) {
			return false
		}
	}
	return true
}

// withinLimits reports whether swapping a node's charged capacity for c keeps
// every limited resource within what remains.
func withinLimits(limited, remaining, charged, c *scheduling.Resources) bool {
	for i, on := range limited.Fixed {
		if on != 0 && c.Fixed[i]-charged.Fixed[i] > remaining.Fixed[i] {
			return false
		}
	}
	for k, on := range limited.Ext {
		if on != 0 && c.Ext[k]-charged.Ext[k] > remaining.Ext[k] {
			return false
		}
	}
	return true
}

// open starts a new node for the pod from the highest-weight pool that can
// take it. A lower-weight pool is used only when every heavier one cannot.
func (st *state) open(s *shape, l *level, pod *corev1.Pod) bool {
	for _, p := range st.m.pools {
		if l.tolerates[p.idx] != nil || len(p.types) == 0 {
			continue
		}
		n := &newNode{pool: p, reqs: p.reqs, cands: p.all(), maxAlloc: p.maxAlloc, guided: -1}
		if ok, _ := st.tryNew(s, l, n, pod); !ok {
			continue
		}
		switch st.strategy {
		case StrategyCostAware:
			st.capNode(n, s, l)
		case StrategyDemandAware, StrategyInterleaved, StrategyLP, StrategyLPInterleaved, StrategyLPFill:
			st.capNodeByDemand(n, s)
		}
		st.nodes = append(st.nodes, n)
		st.touchPlanned(len(st.nodes) - 1)
		return true
	}
	return false
}

// capNode is the cost-aware step: of the types that could hold the node, it
// picks the one with the lowest price per pod of this shape it would hold
// (counting only pods still waiting), and keeps the node from growing into
// anything pricier. Pricier types remain launch fallbacks. Plain first-fit-decreasing lets a node grow to the
// largest type, which is often not the cheapest per unit.
func (st *state) capNode(n *newNode, s *shape, l *level) {
	waiting := st.left[s.idx] // includes the pod just placed
	best, bestPer, bestHeld := -1, 0.0, 0
	for i, ti := range n.cands {
		t := n.pool.types[ti]
		if maxHeld := float64(cappedHeld(waiting, l.perNode)); best >= 0 && t.minPrice/maxHeld > bestPer+1e-12 {
			break // cands are cheapest first: no later type can beat bestPer
		}
		if !n.used.Fits(&t.alloc) {
			continue // stale: cands may keep types that no longer fit until they are reached
		}
		held := 1 + fitCount(&n.used, &s.req, &t.alloc)
		if l.perNode > 0 {
			held = min(held, l.perNode)
		}
		held = min(held, waiting)
		per := t.minPrice / float64(held)
		if best < 0 || per < bestPer-1e-12 || (per <= bestPer+1e-12 && held > bestHeld) {
			best, bestPer, bestHeld = i, per, held
		}
	}
	if best < 0 {
		return
	}
	st.capAt(n, best)
}

func cappedHeld(waiting, perNode int) int {
	if perNode > 0 {
		return max(min(waiting, perNode), 1)
	}
	return max(waiting, 1)
}

// capNodeByDemand is the demand-aware step: it scores each type by its price
// per fraction of the remaining demand (in the resources the opening pod
// uses) it could absorb, so a node is sized for the aggregate mix of what is
// still waiting rather than for one shape, and caps growth like capNode.
func (st *state) capNodeByDemand(n *newNode, s *shape) {
	best, bestPer, bestFrac := -1, 0.0, 0.0
	for i, ti := range n.cands {
		t := n.pool.types[ti]
		if best >= 0 && t.minPrice > bestPer+1e-12 {
			break // a fraction is at most 1, so price alone bounds the score
		}
		if !n.used.Fits(&t.alloc) {
			continue
		}
		frac := 1.0
		for d, r := range s.req.Fixed {
			if r <= 0 || scheduling.Slot(d) == scheduling.SlotPods {
				continue
			}
			if want := st.demand.Fixed[d]; want > 0 {
				frac = min(frac, float64(t.alloc.Fixed[d])/float64(want))
			}
		}
		if frac <= 0 {
			continue
		}
		per := t.minPrice / frac
		if best < 0 || per < bestPer-1e-12 || (per <= bestPer+1e-12 && frac > bestFrac) {
			best, bestPer, bestFrac = i, per, frac
		}
	}
	if best < 0 {
		return
	}
	st.capAt(n, best)
}

// intern returns a read-only list equal to cands, shared by every node of
// the state that was given an equal one: most nodes opened for one shape
// narrow the pool's types the same way, and a copy of hundreds of type
// indexes per node was the largest allocation of a 100,000-pod solve.
func (st *state) intern(cands []int32) []int32 {
	h := uint64(14695981039346656037) // FNV-1a over the indexes
	for _, c := range cands {
		h = (h ^ uint64(uint32(c))) * 1099511628211
	}
	for _, l := range st.lists[h] {
		if slices.Equal(l, cands) {
			return l
		}
	}
	if st.lists == nil {
		st.lists = map[uint64][][]int32{}
	}
	l := slices.Clip(slices.Clone(cands))
	st.lists[h] = append(st.lists[h], l)
	return l
}

// capAt keeps the node from growing into types pricier than cands[best].
func (st *state) capAt(n *newNode, best int) {
	limit := n.pool.types[n.cands[best]].minPrice
	k := best + 1
	for k < len(n.cands) && n.pool.types[n.cands[k]].minPrice <= limit {
		k++
	}
	if n.owned {
		n.extra = slices.Clone(n.cands[k:])
	} else {
		// The pool's own list, which no node writes to: share it rather
		// than copy hundreds of types into each of tens of thousands of nodes.
		n.extra = slices.Clip(n.cands[k:])
	}
	n.cands = n.cands[:k]
	n.refreshMaxAlloc()
}

// fitCount is how many more req fit into alloc beside used.
func fitCount(used, req, alloc *scheduling.Resources) int {
	best := -1
	for i, r := range req.Fixed {
		if r <= 0 {
			continue
		}
		free := alloc.Fixed[i] - used.Fixed[i]
		if n := int(free / r); best < 0 || n < best {
			best = n
		}
	}
	for k, r := range req.Ext {
		if r <= 0 {
			continue
		}
		free := alloc.Ext[k] - used.Ext[k]
		if n := int(free / r); best < 0 || n < best {
			best = n
		}
	}
	return max(best, 0)
}

// all is every type index of the pool, shared read-only by fresh nodes.
func (p *pool) all() []int32 { return p.allIdx }

// place puts one pod: existing nodes first, then nodes already planned, then
// a new node; when nothing fits it relaxes the shape's soft constraints and
// tries again.
func (st *state) place(s *shape, pod *corev1.Pod) bool {
	for {
		l := s.levels[st.level[s.idx]]
		if st.placeExisting(s, l, pod) || st.placePlanned(s, l, pod) || st.open(s, l, pod) {
			st.left[s.idx]--
			st.demand = st.demand.Sub(s.req)
			return true
		}
		if st.level[s.idx]+1 >= len(s.levels) {
			st.demand = st.demand.Sub(s.req)
			return false
		}
		st.level[s.idx]++
		st.cursorE[s.idx], st.cursorN[s.idx] = 0, 0
	}
}

func (st *state) placeExisting(s *shape, l *level, pod *corev1.Pod) bool {
	if len(st.exist) == 0 {
		return false
	}
	rooms, zones := st.existRooms(), st.allowedZones(s, l)
	if len(l.prefAff)+len(l.prefAnti) > 0 {
		// Preferred pod (anti-)affinity: nodes that honour it first.
		for i := rooms.next(st.cursorE[s.idx], &s.req, zones); i >= 0; i = rooms.next(i+1, &s.req, zones) {
			if e := st.exist[i]; st.prefers(l, e) {
				if ok, _ := st.tryExisting(s, l, e, pod); ok {
					st.touchExisting(i)
					return true
				}
			}
		}
	}
	return firstFit(rooms, &st.cursorE[s.idx], len(st.exist), &s.req, zones, nil, func(i int) (bool, bool) {
		ok, perm := st.tryExisting(s, l, st.exist[i], pod)
		if ok {
			st.touchExisting(i)
		}
		return ok, perm
	})
}

// firstFit tries, in order from *cursor up to end, the nodes the index says
// have room for req in one of the zones, until try accepts one. The cursor
// moves past the leading nodes that lack room or fail for reasons that only
// get worse as nodes fill (try's permanent), so later pods of the shape skip
// them; never past a node skipped for its zone, which may be allowed later.
// skip, when set, maps a node to the first node at or after it worth trying:
// those between are of no use to the shape, for good, and are jumped over
// without a search of the index for each.
func firstFit(rooms *roomIndex, cursor *int, end int, req *scheduling.Resources, zones uint64,
	skip func(i int) int, try func(i int) (ok, permanent bool)) bool {
	head := true // every node before *cursor stays unusable
	// advance moves the cursor to i when only nodes without room lie before it.
	advance := func(i int) {
		if zones == allZones {
			*cursor = i
			return
		}
		if j := rooms.next(*cursor, req, allZones); j < 0 || j >= i {
			*cursor = i
		} else {
			*cursor, head = j, false
		}
	}
	for i := rooms.next(*cursor, req, zones); i >= 0 && i < end; {
		if head {
			advance(i)
		}
		if skip != nil {
			if j := skip(i); j > i {
				if head {
					*cursor = j
				}
				i = rooms.next(j, req, zones)
				continue
			}
		}
		ok, perm := try(i)
		if ok {
			return true
		}
		if head = head && perm; head {
			*cursor = i + 1
		}
		i = rooms.next(i+1, req, zones)
	}
	if head {
		advance(max(*cursor, end))
	}
	return false
}

func (st *state) placePlanned(s *shape, l *level, pod *corev1.Pod) bool {
	if len(st.nodes) == 0 {
		return false
	}
	rooms, zones := st.plannedRooms(), st.allowedZones(s, l)
	if prefer := st.preferred(s); prefer != nil {
		// LP-guided: the started machines (the first guidedEnd nodes) of
		// the types the LP puts this class on first. A started node's type
		// never changes, so one of another type is skipped for good.
		skip := func(i int) int { return st.nextPreferred(i, prefer) }
		ok := firstFit(rooms, &st.cursorG[s.idx], st.guidedEnd, &s.req, zones, skip, func(i int) (bool, bool) {
			ok, perm := st.tryNew(s, l, st.nodes[i], pod)
			if ok {
				st.touchPlanned(i)
				st.consume(s, i)
			}
			return ok, perm
		})
		if ok {
			return true
		}
	}
	if len(l.prefAff)+len(l.prefAnti) > 0 {
		for i := rooms.next(st.cursorN[s.idx], &s.req, zones); i >= 0; i = rooms.next(i+1, &s.req, zones) {
			if n := st.nodes[i]; st.prefers(l, n) {
				if ok, _ := st.tryNew(s, l, n, pod); ok {
					st.touchPlanned(i)
					return true
				}
			}
		}
	}
	return firstFit(rooms, &st.cursorN[s.idx], len(st.nodes), &s.req, zones, nil, func(i int) (bool, bool) {
		ok, perm := st.tryNew(s, l, st.nodes[i], pod)
		if ok {
			st.touchPlanned(i)
		}
		return ok, perm
	})
}

// allowedZones is the set of zones (bits of model.zoneBits) a pod of s may
// land in now under its zone rules and a gang's zone; every zone when it
// has none. Nodes outside it are not tried.
func (st *state) allowedZones(s *shape, l *level) uint64 {
	if st.m.zoneBits == nil || (st.forceZone == "" && !slices.Contains(l.topoKeys, v1.LabelZone)) {
		return allZones
	}
	for _, e := range st.zoneMemo {
		if e.l == l {
			return e.zones
		}
	}
	mask := st.m.otherZone
	for z, bit := range st.m.zoneBits {
		if ok, _ := st.allowsValueMemo(s, l, v1.LabelZone, z); ok {
			mask |= bit
		}
	}
	if len(st.zoneMemo) >= 64 {
		st.zoneMemo = st.zoneMemo[:0]
	}
	st.zoneMemo = append(st.zoneMemo, zoneEntry{l: l, zones: mask})
	return mask
}

// plannedRooms is the room index of the planned nodes, rebuilt after
// anything that reorders or drops them (which sets it to nil).
func (st *state) plannedRooms() *roomIndex {
	if st.rooms == nil {
		st.rooms = newRoomIndex(len(st.nodes))
		for i := range st.nodes {
			st.touchPlanned(i)
		}
	}
	return st.rooms
}

// touchPlanned records planned node i's room and zones after it changed.
func (st *state) touchPlanned(i int) {
	if st.rooms != nil {
		n := st.nodes[i]
		room := freeRoom(&n.maxAlloc, &n.used)
		st.rooms.set(i, &room, st.nodeZones(n))
	}
}

// nodeZones is the set of zones a planned node may still be in: its
// settled zone, or those its candidates are offered in (a superset: the
// index only skips nodes outside it).
func (st *state) nodeZones(n *newNode) uint64 {
	if st.m.zoneBits == nil {
		return allZones
	}
	r := n.reqs.Get(v1.LabelZone)
	if v, ok := n.value(v1.LabelZone); ok {
		if bit, ok := st.m.zoneBits[v]; ok {
			return bit
		}
		return st.m.otherZone
	}
	var mask uint64
	every := st.m.anyZone &^ st.m.otherZone
	for _, ti := range n.cands {
		if mask |= n.pool.types[ti].zones; mask == every {
			break
		}
	}
	if r != nil {
		var allowed uint64
		for z, bit := range st.m.zoneBits {
			if mask&bit != 0 && r.Allows(z) {
				allowed |= bit
			}
		}
		mask = allowed
	}
	return mask
}

func (st *state) existRooms() *roomIndex {
	if st.eRooms == nil {
		st.eRooms = newRoomIndex(len(st.exist))
		for i := range st.exist {
			st.touchExisting(i)
		}
	}
	return st.eRooms
}

func (st *state) touchExisting(i int) {
	if st.eRooms != nil {
		e := st.exist[i]
		room := freeRoom(&e.alloc, &e.used)
		zones := allZones
		if z, ok := e.n.Labels[v1.LabelZone]; ok && st.m.zoneBits != nil {
			if zones, ok = st.m.zoneBits[z]; !ok {
				zones = st.m.otherZone
			}
		}
		st.eRooms.set(i, &room, zones)
	}
}

// cost is the summed cheapest price of the planned nodes, for comparing runs.
func (st *state) cost() float64 {
	var c float64
	for _, n := range st.nodes {
		c += st.minPrice(n)
	}
	return c
}

// usedCost is what the nodes holding pods cost so far, each at its
// cheapest candidate type: a lower bound on the finished plan's cost, which
// also drops the guide's machines nothing filled.
func (st *state) usedCost() float64 {
	var c float64
	for _, n := range st.nodes {
		if len(n.pods) > 0 {
			c += st.minPrice(n)
		}
	}
	return c
}

// minPrice is n's price at its cheapest candidate type that holds its pods,
// or 0 when none does.
func (st *state) minPrice(n *newNode) float64 {
	if i := st.firstFit(n, &noResources); i >= 0 {
		return n.pool.types[n.cands[i]].minPrice
	}
	return 0
}

// preferred is the set of machine types s's class may still fill, or nil.
func (st *state) preferred(s *shape) []uint64 {
	if st.guide == nil {
		return nil
	}
	if ci := st.guide.classOf[s.idx]; ci >= 0 {
		return st.prefer[ci]
	}
	return nil
}

// consume counts a pod of s placed on started node i against its class's
// quota for the node's type, and takes the type out of the class's set when
// the quota is used up. The LP splits a class across types in proportions
// that balance every machine's CPU and memory; without quotas first fit
// would pour the whole class into the first type it may use.
func (st *state) consume(s *shape, i int) {
	if st.guide == nil || i >= st.guidedEnd || st.nodes[i].guided < 0 {
		return
	}
	ci := st.guide.classOf[s.idx]
	if ci < 0 {
		return
	}
	n := st.nodes[i]
	bit := st.m.typeBit(n.pool.idx, int(n.guided))
	left, ok := st.quota[ci][bit]
	if !ok {
		return
	}
	st.quota[ci][bit] = left - 1
	if left <= 1 { // quotas are whole pods (see preopen)
		st.prefer[ci][bit/64] &^= 1 << (bit % 64)
	}
}

func clonePrefer(p [][]uint64) [][]uint64 {
	if p == nil {
		return nil
	}
	out := make([][]uint64, len(p))
	for i, b := range p {
		out[i] = slices.Clone(b)
	}
	return out
}

func cloneQuota(q []map[int]float64) []map[int]float64 {
	if q == nil {
		return nil
	}
	out := make([]map[int]float64, len(q))
	for i, m := range q {
		out[i] = maps.Clone(m)
	}
	return out
}

// guideBlock is a run of preopened nodes of one type, ending before end;
// bit is the type's model.typeBit, -1 for nodes that were there before.
type guideBlock struct{ end, bit int }

// nextPreferred is the first preopened node at or after i of a type in
// prefer, or the end of the preopened nodes. preopen starts the machines
// of each type together, so a class skips a run of other types in one step.
func (st *state) nextPreferred(i int, prefer []uint64) int {
	blocks := st.guideBlocks
	k, _ := slices.BinarySearchFunc(blocks, i, func(b guideBlock, i int) int { return cmp.Compare(b.end, i+1) })
	for ; k < len(blocks); k++ {
		if b := blocks[k]; b.bit >= 0 && prefer[b.bit/64]&(1<<(b.bit%64)) != 0 {
			if k > 0 {
				return max(i, blocks[k-1].end)
			}
			return i
		}
	}
	if len(blocks) == 0 {
		return i
	}
	return max(i, blocks[len(blocks)-1].end)
}

// preopen is StrategyLP's start: empty new nodes of the types the LP buys,
// as many as it buys whole machines of each, priciest first. First fit then
// fills them before opening others, so the machines that must be bought
// anyway (GPU nodes) take the largest pods that fit them, and the node mix
// has the LP's balance of CPU and memory. Nodes left empty are dropped.
func (st *state) preopen(g *lpGuide) {
	st.guide = g
	st.cursorG = make([]int, len(st.m.shapes))
	st.guideBlocks = nil
	if len(st.nodes) > 0 {
		st.guideBlocks = append(st.guideBlocks, guideBlock{end: len(st.nodes), bit: -1})
	}
	for _, mc := range g.machines {
		p := st.m.pools[mc.pool]
		k := int(mc.count + 1e-6)
		if k > 0 {
			st.guideBlocks = append(st.guideBlocks, guideBlock{end: len(st.nodes) + k, bit: st.m.typeBit(p.idx, mc.typ)})
		}
		for range k {
			n := &newNode{pool: p, reqs: p.reqs, cands: p.all(), maxAlloc: p.maxAlloc, guided: int32(mc.typ)}
			if i := slices.Index(n.cands, int32(mc.typ)); i >= 0 {
				st.capAt(n, i)
			}
			st.nodes = append(st.nodes, n)
		}
	}
	st.guidedEnd, st.rooms = len(st.nodes), nil
	st.preopenQuotas(g)
}

// preopenQuotas gives the state its own copy of the guide's per-class
// types and quotas: a class may put ceil(x_cj) pods on started machines of
// type j before first fit stops preferring them.
func (st *state) preopenQuotas(g *lpGuide) {
	st.guide = g
	st.prefer = clonePrefer(g.prefer)
	st.quota = make([]map[int]float64, len(g.quota))
	for ci, q := range g.quota {
		if q != nil {
			st.quota[ci] = make(map[int]float64, len(q))
			for bit, x := range q {
				st.quota[ci][bit] = math.Ceil(x - 1e-6)
			}
		}
	}
}

// dropEmpty removes planned nodes that got no pods.
func (st *state) dropEmpty() {
	st.nodes = slices.DeleteFunc(st.nodes, func(n *newNode) bool { return len(n.pods) == 0 })
	for i := range st.cursorN {
		st.cursorN[i] = 0
	}
	st.guide, st.cursorG, st.guidedEnd, st.guideBlocks, st.rooms = nil, nil, 0, nil, nil
	st.prefer, st.quota = nil, nil
}

// prefers reports whether a node honours every preferred pod affinity and
// anti-affinity term of the level: an affinity peer in its domain (or no
// peer placed anywhere yet, for a term that selects the pod itself), no
// anti-affinity peer. A node whose domain for a key is not settled yet
// honours anti-affinity and not affinity.
func (st *state) prefers(l *level, t target) bool {
	count := func(r termRule) (int32, bool) {
		if r.key == v1.LabelHostname {
			return t.count(r.group), true
		}
		v, ok := t.value(r.key)
		if !ok {
			return 0, false
		}
		return st.domainCount(r.key, v, r.group), true
	}
	for _, r := range l.prefAnti {
		if c, _ := count(r); c > 0 {
			return false
		}
	}
	for _, r := range l.prefAff {
		if r.self && st.total[r.group] == 0 {
			continue
		}
		if c, ok := count(r); !ok || c == 0 {
			return false
		}
	}
	return true
}
