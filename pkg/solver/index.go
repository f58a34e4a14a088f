package solver

import "github.com/stowage-k8s/stowage/pkg/scheduling"

// roomIndex finds, in node order, the nodes with room for a request: a
// segment tree over the nodes' free room (what each could still take in
// every fixed resource slot) with the element-wise maximum in each inner
// entry. A subtree whose maximum lacks room in some slot holds no node with
// room, so first fit visits only the nodes that fit by resources and skips
// the rest in O(log n) steps, instead of trying every planned node (tens of
// thousands at 100,000 pods, most of them full). Extended resources are not
// indexed: the caller still checks them on the nodes it visits. Each entry
// also holds the zones its nodes may be in (OR of bits, see
// model.zoneBits), so a pod whose zone rules allow a few zones skips the
// nodes of the others.
type roomIndex struct {
	size int // leaves in use
	// room is the tree: room[1] the root, room[cap+i] leaf i; unused
	// leaves hold -1, which no request fits.
	room  [][scheduling.NumSlots]int64
	zones []uint64
}

// allZones is a zone set that skips no node.
const allZones = ^uint64(0)

func newRoomIndex(n int) *roomIndex {
	c := 1
	for c < n {
		c *= 2
	}
	x := &roomIndex{size: n, room: make([][scheduling.NumSlots]int64, 2*c), zones: make([]uint64, 2*c)}
	for i := range x.room {
		for d := range x.room[i] {
			x.room[i][d] = -1
		}
	}
	return x
}

func (x *roomIndex) leaves() int { return len(x.room) / 2 }

// set records node i's room, growing the tree when i is past its end.
func (x *roomIndex) set(i int, room *[scheduling.NumSlots]int64, zones uint64) {
	if i >= x.leaves() {
		grown := newRoomIndex(2 * (i + 1))
		c, gc := x.leaves(), grown.leaves()
		copy(grown.room[gc:gc+c], x.room[c:])
		copy(grown.zones[gc:gc+c], x.zones[c:])
		for k := gc - 1; k >= 1; k-- {
			grown.pull(k)
		}
		*x = *grown
	}
	x.size = max(x.size, i+1)
	k := x.leaves() + i
	x.room[k], x.zones[k] = *room, zones
	for k /= 2; k >= 1; k /= 2 {
		x.pull(k)
	}
}

func (x *roomIndex) pull(k int) {
	l, r := &x.room[2*k], &x.room[2*k+1]
	for d := range x.room[k] {
		x.room[k][d] = max(l[d], r[d])
	}
	x.zones[k] = x.zones[2*k] | x.zones[2*k+1]
}

// next is the first node at or after from with room for req in every fixed
// slot and a zone in zones, or -1. It starts at from's leaf and climbs only
// as far as it must: first fit asks for the node after one it just tried,
// and a search from the root spent a quarter of its steps on the subtrees
// left of from. An entry's maximum may take its slots from different
// nodes, so neither child of a fitting entry need fit; the search then
// goes on to the right of that entry.
func (x *roomIndex) next(from int, req *scheduling.Resources, zones uint64) int {
	if from >= x.size {
		return -1
	}
	fits := func(k int) bool { return x.zones[k]&zones != 0 && roomFor(&x.room[k], req) }
	leaves := x.leaves()
	k := leaves + from
	if fits(k) {
		return from
	}
	for {
		// The next entry to the right: climb past right children, then
		// step to the sibling. Past the root there is none.
		for k&1 == 1 {
			k >>= 1
		}
		if k == 0 {
			return -1
		}
		k++
		if !fits(k) {
			continue
		}
		// Descend to the leftmost fitting leaf, if any.
		found := true
		for k < leaves && found {
			k *= 2
			if !fits(k) {
				k++
				found = fits(k)
			}
		}
		if found {
			return k - leaves
		}
	}
}

func roomFor(room *[scheduling.NumSlots]int64, req *scheduling.Resources) bool {
	for d, r := range req.Fixed {
		if r > room[d] {
			return false
		}
	}
	return true
}

// freeRoom is alloc - used per fixed slot.
func freeRoom(alloc, used *scheduling.Resources) [scheduling.NumSlots]int64 {
	var out [scheduling.NumSlots]int64
	for d := range out {
		out[d] = alloc.Fixed[d] - used.Fixed[d]
	}
	return out
}
