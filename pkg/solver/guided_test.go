package solver

import (
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/stowage-k8s/stowage/pkg/cloudprovider"
	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// TestNextPreferredMatchesScan checks the jump over preopened runs of other
// types against a scan node by node, on random runs and preferences.
func TestNextPreferredMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 200 {
		st := &state{}
		var bitOf []int // per node
		if r.IntN(3) == 0 {
			k := 1 + r.IntN(3)
			st.guideBlocks = append(st.guideBlocks, guideBlock{end: k, bit: -1})
			for range k {
				bitOf = append(bitOf, -1)
			}
		}
		for range r.IntN(6) {
			bit, k := r.IntN(130), 1+r.IntN(4)
			st.guideBlocks = append(st.guideBlocks, guideBlock{end: len(bitOf) + k, bit: bit})
			for range k {
				bitOf = append(bitOf, bit)
			}
		}
		prefer := make([]uint64, 3)
		for range r.IntN(4) {
			b := r.IntN(130)
			prefer[b/64] |= 1 << (b % 64)
		}
		preferred := func(i int) bool {
			b := bitOf[i]
			return b >= 0 && prefer[b/64]&(1<<(b%64)) != 0
		}
		for i := 0; i <= len(bitOf); i++ {
			want := i
			for want < len(bitOf) && !preferred(want) {
				want++
			}
			if got := st.nextPreferred(i, prefer); got != want {
				t.Fatalf("round %d: nextPreferred(%d) = %d, want %d (blocks %v)", round, i, got, want, st.guideBlocks)
			}
		}
	}
}

// TestFirstFitSkipMatchesScan checks first fit with a skip against a scan:
// the node it accepts is the first with room that is neither skipped nor
// refused, and the cursor it leaves never hides a node that could still be
// accepted, through a sequence of pods that fill the nodes.
func TestFirstFitSkipMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for round := range 300 {
		n := 1 + r.IntN(40)
		rooms := make([][scheduling.NumSlots]int64, n)
		useless := make([]bool, n) // skipped for good
		refuse := make([]bool, n)  // refused by try, permanently or not
		perm := make([]bool, n)
		x := newRoomIndex(n)
		for i := range n {
			rooms[i][scheduling.SlotCPU] = r.Int64N(6)
			useless[i], refuse[i], perm[i] = r.IntN(3) == 0, r.IntN(4) == 0, r.IntN(2) == 0
			x.set(i, &rooms[i], allZones)
		}
		skip := func(i int) int {
			for i < n && useless[i] {
				i++
			}
			return i
		}
		var req scheduling.Resources
		req.Fixed[scheduling.SlotCPU] = 1 + r.Int64N(2)
		cursor := 0
		for pod := range 2 * n {
			// A refusal that is not permanent may not hold for the next pod.
			now := make([]bool, n)
			for i := range n {
				now[i] = refuse[i] && (perm[i] || r.IntN(2) == 0)
			}
			want := -1
			for i := range n {
				if rooms[i][scheduling.SlotCPU] >= req.Fixed[scheduling.SlotCPU] && !useless[i] && !now[i] {
					want = i
					break
				}
			}
			got := -1
			firstFit(x, &cursor, n, &req, allZones, skip, func(i int) (bool, bool) {
				if now[i] {
					return false, perm[i]
				}
				got = i
				return true, false
			})
			if got != want {
				t.Fatalf("round %d pod %d: first fit took node %d, want %d", round, pod, got, want)
			}
			if want < 0 {
				break
			}
			if cursor > want {
				t.Fatalf("round %d pod %d: cursor %d passed node %d, which took the pod", round, pod, cursor, want)
			}
			rooms[want][scheduling.SlotCPU] -= req.Fixed[scheduling.SlotCPU]
			x.set(want, &rooms[want], allZones)
		}
	}
}

// TestModelDropsUnrequestedExtendedResources: extended resources no pod
// asks for leave the types' allocatable (they cannot limit a fit), those a
// pod asks for stay, and capacity, which NodePool limits count, keeps both.
func TestModelDropsUnrequestedExtendedResources(t *testing.T) {
	const efa, attach = corev1.ResourceName("vpc.amazonaws.com/efa"), corev1.ResourceName("attachable-volumes-csi-ebs.csi.aws.com")
	it := makeIT(itSpec{name: "m.large", cpu: 4, memGi: 16, price: 0.2})
	it.Capacity[efa] = resource.MustParse("1")
	it.Capacity[attach] = resource.MustParse("26")
	snap := &Snapshot{
		Pods:      []*corev1.Pod{makePod("a", "1", "1Gi", extended(attach, 1))},
		NodePools: []*NodePool{makePool("default", []*cloudprovider.InstanceType{it})},
	}
	m, err := newModel(snap)
	if err != nil {
		t.Fatal(err)
	}
	pt := m.pools[0].types[0]
	if _, ok := pt.alloc.Ext[efa]; ok {
		t.Errorf("allocatable keeps %s, which no pod requests: %v", efa, pt.alloc.Ext)
	}
	if got := pt.alloc.Ext[attach]; got != 26 {
		t.Errorf("allocatable %s = %d, want 26 (a pod requests it)", attach, got)
	}
	if got := m.pools[0].maxAlloc.Ext[attach]; got != 26 {
		t.Errorf("pool maximum %s = %d, want 26", attach, got)
	}
	if pt.capacity.Ext[efa] != 1 || pt.capacity.Ext[attach] != 26 {
		t.Errorf("capacity lost extended resources: %v", pt.capacity.Ext)
	}
}

// TestInternSharesEqualLists: equal candidate lists share one read-only
// copy, unequal ones do not, and the copy is not the caller's scratch.
func TestInternSharesEqualLists(t *testing.T) {
	st := &state{}
	scratch := []int32{1, 4, 7}
	a := st.intern(scratch)
	scratch[0] = 9 // the caller reuses its scratch
	if a[0] != 1 {
		t.Fatalf("interned list aliases the caller's scratch: %v", a)
	}
	b := st.intern([]int32{1, 4, 7})
	if &a[0] != &b[0] {
		t.Errorf("equal lists were not shared")
	}
	if c := st.intern([]int32{1, 4}); len(c) != 2 || &c[0] == &a[0] {
		t.Errorf("a different list came back shared with %v: %v", a, c)
	}
	if cap(a) != len(a) {
		t.Errorf("interned list has spare capacity %d, so an append could write into it", cap(a)-len(a))
	}
}

// TestQuotaTakesTypeOutOfClass: a class keeps preferring a type until it
// has put the LP's count of pods (rounded up) on started machines of it;
// pods on other nodes, or of shapes without a class, count for nothing.
func TestQuotaTakesTypeOutOfClass(t *testing.T) {
	p := &pool{idx: 1}
	m := &model{typeBase: []int{0, 64}}
	bit := m.typeBit(1, 3)
	g := &lpGuide{
		classOf: []int32{0, -1},
		prefer:  [][]uint64{{0, 1 << (bit % 64)}},
		quota:   []map[int]float64{{bit: 1.2}},
	}
	st := &state{m: m, nodes: []*newNode{{pool: p, guided: 3}, {pool: p, guided: 3}, {pool: p, guided: -1}}}
	st.preopenQuotas(g)
	st.guidedEnd = 2
	a, free := &shape{idx: 0}, &shape{idx: 1}
	prefers := func() bool { p := st.preferred(a); return p != nil && p[bit/64]&(1<<(bit%64)) != 0 }

	st.consume(free, 0) // no class
	st.consume(a, 2)    // not a started machine
	if !prefers() || st.quota[0][bit] != 2 {
		t.Fatalf("after pods that do not count: prefers %v, quota %v; want true, 2 (1.2 rounded up)", prefers(), st.quota[0][bit])
	}
	st.consume(a, 0)
	if !prefers() {
		t.Fatal("type left the class after 1 of its 2 pods")
	}
	st.consume(a, 1)
	if prefers() {
		t.Fatal("type still preferred after the class put its 2 pods there")
	}
	if g.prefer[0][bit/64]&(1<<(bit%64)) == 0 || g.quota[0][bit] != 1.2 {
		t.Fatal("the state wrote through to the shared guide")
	}
}
