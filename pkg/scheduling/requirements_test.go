package scheduling

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	v1 "github.com/stowage-k8s/stowage/pkg/apis/v1"
)

const zone = v1.LabelZone

func TestRequirementsMatches(t *testing.T) {
	in := corev1.NodeSelectorOpIn
	for _, tc := range []struct {
		name   string
		reqs   Requirements
		labels map[string]string
		want   bool
	}{
		{"in matches", NewRequirements(MustRequirement(zone, in, "a", "b")), map[string]string{zone: "b"}, true},
		{"in rejects other", NewRequirements(MustRequirement(zone, in, "a")), map[string]string{zone: "b"}, false},
		{"in rejects absent", NewRequirements(MustRequirement(zone, in, "a")), nil, false},
		{"notin allows absent", NewRequirements(MustRequirement(zone, corev1.NodeSelectorOpNotIn, "a")), nil, true},
		{"notin rejects value", NewRequirements(MustRequirement(zone, corev1.NodeSelectorOpNotIn, "a")), map[string]string{zone: "a"}, false},
		{"exists", NewRequirements(MustRequirement(zone, corev1.NodeSelectorOpExists)), map[string]string{zone: "x"}, true},
		{"exists rejects absent", NewRequirements(MustRequirement(zone, corev1.NodeSelectorOpExists)), nil, false},
		{"does not exist", NewRequirements(MustRequirement(zone, corev1.NodeSelectorOpDoesNotExist)), map[string]string{"other": "x"}, true},
		{"does not exist rejects", NewRequirements(MustRequirement(zone, corev1.NodeSelectorOpDoesNotExist)), map[string]string{zone: "x"}, false},
		{"gt", NewRequirements(MustRequirement("gpus", corev1.NodeSelectorOpGt, "4")), map[string]string{"gpus": "8"}, true},
		{"gt equal", NewRequirements(MustRequirement("gpus", corev1.NodeSelectorOpGt, "4")), map[string]string{"gpus": "4"}, false},
		{"gt non-integer", NewRequirements(MustRequirement("gpus", corev1.NodeSelectorOpGt, "4")), map[string]string{"gpus": "many"}, false},
		{"lt", NewRequirements(MustRequirement("gpus", corev1.NodeSelectorOpLt, "4")), map[string]string{"gpus": "2"}, true},
		{"and of keys", NewRequirements(MustRequirement(zone, in, "a"), MustRequirement("arch", in, "arm64")), map[string]string{zone: "a", "arch": "amd64"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.reqs.Matches(tc.labels); got != tc.want {
				t.Errorf("Matches(%v) on %s = %v, want %v", tc.labels, tc.reqs, got, tc.want)
			}
		})
	}
}

func TestRequirementsIntersect(t *testing.T) {
	in, notIn := corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn
	two := 2
	for _, tc := range []struct {
		name string
		a, b *Requirement
		want []v1.NodeSelectorRequirementWithMinValues
	}{
		{"in in", MustRequirement(zone, in, "a", "b"), MustRequirement(zone, in, "b", "c"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: zone, Operator: in, Values: []string{"b"}}}},
		{"in notin", MustRequirement(zone, in, "a", "b"), MustRequirement(zone, notIn, "a"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: zone, Operator: in, Values: []string{"b"}}}},
		{"notin notin", MustRequirement(zone, notIn, "a"), MustRequirement(zone, notIn, "b"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: zone, Operator: notIn, Values: []string{"a", "b"}}}},
		{"exists notin", MustRequirement(zone, corev1.NodeSelectorOpExists), MustRequirement(zone, notIn, "b"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: zone, Operator: notIn, Values: []string{"b"}}, {Key: zone, Operator: corev1.NodeSelectorOpExists}}},
		{"gt in", MustRequirement("n", corev1.NodeSelectorOpGt, "2"), MustRequirement("n", in, "1", "3", "x"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: "n", Operator: in, Values: []string{"3"}}}},
		{"gt lt", MustRequirement("n", corev1.NodeSelectorOpGt, "2"), MustRequirement("n", corev1.NodeSelectorOpLt, "9"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: "n", Operator: corev1.NodeSelectorOpGt, Values: []string{"2"}}, {Key: "n", Operator: corev1.NodeSelectorOpLt, Values: []string{"9"}}}},
		{"does not exist notin", MustRequirement(zone, corev1.NodeSelectorOpDoesNotExist), MustRequirement(zone, notIn, "a"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: zone, Operator: corev1.NodeSelectorOpDoesNotExist}}},
		{"minValues kept", func() *Requirement { r := MustRequirement(zone, in, "a", "b"); r.MinValues = &two; return r }(), MustRequirement(zone, in, "a", "b", "c"),
			[]v1.NodeSelectorRequirementWithMinValues{{Key: zone, Operator: in, Values: []string{"a", "b"}, MinValues: &two}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := NewRequirements(tc.a).Intersect(NewRequirements(tc.b)).ToAPI()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("intersection (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRequirementsCompatibleAndAdmits(t *testing.T) {
	in := corev1.NodeSelectorOpIn
	node := NewRequirements(MustRequirement(zone, in, "a", "b"), MustRequirement(v1.LabelInstanceType, in, "m5.large"))
	for _, tc := range []struct {
		name                   string
		pod                    Requirements
		compatible, admitsNode bool
	}{
		{"same zone", NewRequirements(MustRequirement(zone, in, "b")), true, true},
		{"other zone", NewRequirements(MustRequirement(zone, in, "z")), false, false},
		{"undefined custom key", NewRequirements(MustRequirement("team", in, "ml")), true, false},
		{"undefined custom key absent ok", NewRequirements(MustRequirement("team", corev1.NodeSelectorOpNotIn, "ml")), true, true},
		{"undefined well-known key", NewRequirements(MustRequirement(v1.LabelGPUName, in, "h100")), true, true},
		{"empty In", NewRequirements(MustRequirement("team", in)), false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := node.Compatible(tc.pod) == nil; got != tc.compatible {
				t.Errorf("Compatible = %v, want %v (%v)", got, tc.compatible, node.Compatible(tc.pod))
			}
			if got := tc.pod.Compatible(node) == nil; got != tc.compatible {
				t.Errorf("Compatible is not symmetric")
			}
			if got := node.Admits(tc.pod) == nil; got != tc.admitsNode {
				t.Errorf("Admits = %v, want %v", got, tc.admitsNode)
			}
		})
	}
}

func TestNewRequirementErrors(t *testing.T) {
	for _, tc := range []struct {
		op     corev1.NodeSelectorOperator
		values []string
		want   string
	}{
		{corev1.NodeSelectorOpGt, []string{"x"}, `key "k": operator Gt needs an integer, got "x"`},
		{corev1.NodeSelectorOpLt, nil, `key "k": operator Lt takes exactly one value, got 0`},
		{"Near", nil, `key "k": unknown operator "Near"`},
	} {
		_, err := NewRequirement("k", tc.op, tc.values...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("NewRequirement(%s, %v) error = %v, want %q", tc.op, tc.values, err, tc.want)
		}
	}
	_, err := FromAPI([]v1.NodeSelectorRequirementWithMinValues{{Key: "a", Operator: corev1.NodeSelectorOpIn, Values: []string{"x"}}, {Key: "b", Operator: "Bad"}})
	if want := `requirements[1]: key "b": unknown operator "Bad"`; err == nil || err.Error() != want {
		t.Errorf("FromAPI error = %v, want %q", err, want)
	}
}

// The fuzz universe: a few keys and values, including integers and their
// non-canonical spellings, so Gt/Lt meet In/NotIn.
var (
	fuzzKeys   = []string{"k1", "k2", "k3"}
	fuzzValues = []string{"a", "b", "1", "2", "3", "03", "10", "-1"}
	fuzzOps    = []corev1.NodeSelectorOperator{corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn, corev1.NodeSelectorOpExists,
		corev1.NodeSelectorOpDoesNotExist, corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt}
)

// decodeReqs turns fuzz bytes into requirements over the small universe.
func decodeReqs(data []byte) Requirements {
	rs := Requirements{}
	for i := 0; i+2 < len(data); i += 3 {
		key := fuzzKeys[int(data[i])%len(fuzzKeys)]
		op := fuzzOps[int(data[i+1])%len(fuzzOps)]
		var values []string
		switch op {
		case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
			values = []string{fmt.Sprint(int(data[i+2]%8) - 2)}
		case corev1.NodeSelectorOpIn, corev1.NodeSelectorOpNotIn:
			for b := 0; b < len(fuzzValues); b++ {
				if data[i+2]&(1<<b) != 0 {
					values = append(values, fuzzValues[b])
				}
			}
		}
		rs.Add(MustRequirement(key, op, values...))
	}
	return rs
}

// allLabelSets enumerates every labelling of the keys over the values (or absent).
func allLabelSets(yield func(map[string]string) bool) {
	choices := len(fuzzValues) + 1
	total := 1
	for range fuzzKeys {
		total *= choices
	}
	for n := 0; n < total; n++ {
		l := map[string]string{}
		x := n
		for _, k := range fuzzKeys {
			if c := x % choices; c < len(fuzzValues) {
				l[k] = fuzzValues[c]
			}
			x /= choices
		}
		if !yield(l) {
			return
		}
	}
}

// FuzzRequirementsAlgebra checks the laws the solver relies on:
//   - labels match A∩B exactly when they match A and match B;
//   - Compatible is symmetric, and holds whenever some label set matches both;
//   - overlaps and CompatibleWith agree with the intersection they skip building;
//   - ToAPI round-trips: FromAPI(ToAPI(A)) matches the same label sets as A.
func FuzzRequirementsAlgebra(f *testing.F) {
	f.Add([]byte{0, 0, 3}, []byte{0, 1, 1})
	f.Add([]byte{0, 4, 3}, []byte{0, 5, 7, 1, 2, 0})
	f.Add([]byte{1, 3, 0}, []byte{1, 1, 255})
	f.Add([]byte{2, 4, 0, 2, 0, 60}, []byte{2, 5, 3})
	f.Add([]byte{0, 2, 0}, []byte{})
	f.Fuzz(func(t *testing.T, da, db []byte) {
		a, b := decodeReqs(da), decodeReqs(db)
		ab := a.Intersect(b)
		round, err := FromAPI(a.ToAPI())
		if err != nil {
			t.Fatalf("ToAPI of %s does not parse back: %v", a, err)
		}
		someBoth := false
		allLabelSets(func(l map[string]string) bool {
			ma, mb := a.Matches(l), b.Matches(l)
			if got := ab.Matches(l); got != (ma && mb) {
				t.Fatalf("labels %v: (%s)∩(%s) matches %v, but A %v and B %v", l, a, b, got, ma, mb)
			}
			if round.Matches(l) != ma {
				t.Fatalf("labels %v: %s and its round trip %s disagree", l, a, round)
			}
			someBoth = someBoth || (ma && mb)
			return true
		})
		for k, ra := range a {
			if rb, ok := b[k]; ok {
				if over, sat := ra.overlaps(rb), ra.Intersect(rb).Satisfiable(); over != sat {
					t.Fatalf("%s overlaps %s is %v, but their intersection %s is satisfiable: %v", ra, rb, over, ra.Intersect(rb), sat)
				}
			}
		}
		cab, cba := a.Compatible(b) == nil, b.Compatible(a) == nil
		if cab != a.CompatibleWith(b) {
			t.Fatalf("Compatible and CompatibleWith disagree on %s and %s", a, b)
		}
		if cab != cba {
			t.Fatalf("Compatible not symmetric for %s and %s", a, b)
		}
		if someBoth && !cab {
			t.Fatalf("%s and %s share a matching label set but are reported incompatible: %v", a, b, a.Compatible(b))
		}
	})
}
