package scheduling

import (
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

// Slot indexes the resources every node and most pods carry, so the solver's
// hot loop compares a handful of int64s instead of walking maps.
type Slot int

// Fixed slots. CPU is in millicores; everything else in base units (bytes, counts).
const (
	SlotCPU Slot = iota
	SlotMemory
	SlotEphemeralStorage
	SlotPods
	SlotNvidiaGPU
	SlotAMDGPU
	SlotNeuron
	// SlotDevices counts DRA devices of any kind (see DevicePlan): a fixed
	// slot so machines without devices are ruled out without the map
	// lookups the exact per-request resources need.
	SlotDevices
	NumSlots
)

var slotNames = [NumSlots]corev1.ResourceName{
	corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods,
	v1.ResourceNvidiaGPU, v1.ResourceAMDGPU, v1.ResourceAWSNeuron, ResourceDevices,
}

// SlotName is the resource name of a slot.
func SlotName(s Slot) corev1.ResourceName { return slotNames[s] }

func slotOf(name corev1.ResourceName) (Slot, bool) {
	for i, n := range slotNames {
		if n == name {
			return Slot(i), true
		}
	}
	return 0, false
}

// Resources is a compact resource vector: fixed slots plus a map for any other
// extended resource (MIG profiles, hugepages, vendor devices). Ext is nil for
// nearly every pod, so copying a Resources is cheap.
type Resources struct {
	Fixed [NumSlots]int64
	Ext   map[corev1.ResourceName]int64
}

// FromList converts a ResourceList, rounding CPU up to millicores.
func FromList(l corev1.ResourceList) Resources {
	var r Resources
	for name, q := range l {
		r.set(name, q)
	}
	return r
}

func (r *Resources) set(name corev1.ResourceName, q resource.Quantity) {
	var v int64
	if name == corev1.ResourceCPU {
		v = q.MilliValue()
	} else {
		v = q.Value()
	}
	if s, ok := slotOf(name); ok {
		r.Fixed[s] = v
		return
	}
	if r.Ext == nil {
		r.Ext = map[corev1.ResourceName]int64{}
	}
	r.Ext[name] = v
}

// Get returns the amount of name (CPU in millicores).
func (r Resources) Get(name corev1.ResourceName) int64 {
	if s, ok := slotOf(name); ok {
		return r.Fixed[s]
	}
	return r.Ext[name]
}

// ToList converts back to a ResourceList, omitting zeros.
func (r Resources) ToList() corev1.ResourceList {
	out := corev1.ResourceList{}
	for i, v := range r.Fixed {
		if v == 0 {
			continue
		}
		if Slot(i) == SlotCPU {
			out[slotNames[i]] = *resource.NewMilliQuantity(v, resource.DecimalSI)
		} else if Slot(i) == SlotMemory || Slot(i) == SlotEphemeralStorage {
			out[slotNames[i]] = *resource.NewQuantity(v, resource.BinarySI)
		} else {
			out[slotNames[i]] = *resource.NewQuantity(v, resource.DecimalSI)
		}
	}
	for k, v := range r.Ext {
		if v != 0 {
			out[k] = *resource.NewQuantity(v, resource.DecimalSI)
		}
	}
	return out
}

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	for i := range r.Fixed {
		r.Fixed[i] += o.Fixed[i]
	}
	if len(o.Ext) > 0 {
		ext := make(map[corev1.ResourceName]int64, len(r.Ext)+len(o.Ext))
		for k, v := range r.Ext {
			ext[k] = v
		}
		for k, v := range o.Ext {
			ext[k] += v
		}
		r.Ext = ext
	}
	return r
}

// Sub returns r - o; values may go negative.
func (r Resources) Sub(o Resources) Resources {
	neg := Resources{Ext: make(map[corev1.ResourceName]int64, len(o.Ext))}
	for i := range o.Fixed {
		neg.Fixed[i] = -o.Fixed[i]
	}
	for k, v := range o.Ext {
		neg.Ext[k] = -v
	}
	if len(neg.Ext) == 0 {
		neg.Ext = nil
	}
	return r.Add(neg)
}

// Max returns the element-wise maximum.
func (r Resources) Max(o Resources) Resources {
	for i := range r.Fixed {
		r.Fixed[i] = max(r.Fixed[i], o.Fixed[i])
	}
	if len(o.Ext) > 0 && !dominates(r.Ext, o.Ext) {
		ext := make(map[corev1.ResourceName]int64, len(r.Ext)+len(o.Ext))
		for k, v := range r.Ext {
			ext[k] = v
		}
		for k, v := range o.Ext {
			ext[k] = max(ext[k], v)
		}
		r.Ext = ext
	}
	return r
}

// dominates reports whether a holds at least b in every resource of b, so a
// maximum need not copy a (hot in the solver, where most maxima change nothing).
func dominates(a, b map[corev1.ResourceName]int64) bool {
	if len(a) < len(b) {
		return false
	}
	for k, v := range b {
		if a[k] < v {
			return false
		}
	}
	return true
}

// Fits reports whether r fits within capacity c in every dimension. A
// resource c lacks counts as zero capacity.
func (r *Resources) Fits(c *Resources) bool {
	for i := range r.Fixed {
		if r.Fixed[i] > c.Fixed[i] {
			return false
		}
	}
	for k, v := range r.Ext {
		if v > c.Ext[k] {
			return false
		}
	}
	return true
}

// FitsSum reports whether a + b fits within c, without allocating.
func FitsSum(a, b, c *Resources) bool {
	for i := range a.Fixed {
		if a.Fixed[i]+b.Fixed[i] > c.Fixed[i] {
			return false
		}
	}
	for k, v := range b.Ext {
		if a.Ext[k]+v > c.Ext[k] {
			return false
		}
	}
	for k, v := range a.Ext {
		if _, seen := b.Ext[k]; !seen && v > c.Ext[k] {
			return false
		}
	}
	return true
}

// Exceeded lists the resources in which r exceeds c, sorted by name.
func (r *Resources) Exceeded(c *Resources) []corev1.ResourceName {
	var out []corev1.ResourceName
	for i := range r.Fixed {
		if r.Fixed[i] > c.Fixed[i] {
			out = append(out, slotNames[i])
		}
	}
	for k, v := range r.Ext {
		if v > c.Ext[k] {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// IsZero reports whether every amount is zero.
func (r *Resources) IsZero() bool {
	for _, v := range r.Fixed {
		if v != 0 {
			return false
		}
	}
	for _, v := range r.Ext {
		if v != 0 {
			return false
		}
	}
	return true
}

// Key is a canonical string for grouping identical vectors.
func (r *Resources) Key() string {
	var b strings.Builder
	for _, v := range r.Fixed {
		b.WriteString(itoa(v))
		b.WriteByte(',')
	}
	if len(r.Ext) > 0 {
		keys := make([]string, 0, len(r.Ext))
		for k := range r.Ext {
			keys = append(keys, string(k))
		}
		sort.Strings(keys)
		for _, k := range keys {
			b.WriteString(k)
			b.WriteByte('=')
			b.WriteString(itoa(r.Ext[corev1.ResourceName(k)]))
			b.WriteByte(',')
		}
	}
	return b.String()
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// Names lists every resource with a non-zero amount, sorted.
func (r *Resources) Names() []corev1.ResourceName {
	var out []corev1.ResourceName
	for i, v := range r.Fixed {
		if v != 0 {
			out = append(out, slotNames[i])
		}
	}
	for k, v := range r.Ext {
		if v != 0 {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
