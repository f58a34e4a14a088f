package solver

import (
	"math/rand/v2"
	"testing"

	"github.com/stowage-k8s/stowage/pkg/scheduling"
)

// TestRoomIndexMatchesScan checks next against a linear scan over random
// rooms, zones and requests, while nodes are added (growing the tree) and
// change.
func TestRoomIndexMatchesScan(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	type leaf struct {
		room  [scheduling.NumSlots]int64
		zones uint64
	}
	var leaves []leaf
	x := newRoomIndex(0)
	randLeaf := func() leaf {
		var l leaf
		for d := range l.room {
			l.room[d] = r.Int64N(9) - 1
		}
		l.zones = 1 << r.IntN(4)
		return l
	}
	for step := range 3000 {
		if len(leaves) < 200 && (len(leaves) == 0 || r.IntN(3) == 0) {
			leaves = append(leaves, randLeaf())
			i := len(leaves) - 1
			x.set(i, &leaves[i].room, leaves[i].zones)
		} else {
			i := r.IntN(len(leaves))
			leaves[i] = randLeaf()
			x.set(i, &leaves[i].room, leaves[i].zones)
		}
		var req scheduling.Resources
		for d := range req.Fixed {
			// Half the requests ask for two slots only, as most pods do, so
			// many entries fit and the search descends and backs out often.
			if d < 2 || r.IntN(2) == 0 {
				req.Fixed[d] = r.Int64N(6)
			}
		}
		zones := uint64(r.IntN(16))
		if r.IntN(4) == 0 {
			zones = allZones
		}
		from := r.IntN(len(leaves) + 2)
		want := -1
		for i := from; i < len(leaves); i++ {
			if leaves[i].zones&zones != 0 && roomFor(&leaves[i].room, &req) {
				want = i
				break
			}
		}
		if got := x.next(from, &req, zones); got != want {
			t.Fatalf("step %d: next(%d, %v, %b) = %d, want %d", step, from, req.Fixed, zones, got, want)
		}
	}
}
