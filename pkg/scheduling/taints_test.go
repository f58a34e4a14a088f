package scheduling

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// MergeTolerations keeps what the RuntimeClass admission plugin keeps, so a
// template given its class's tolerations looks like the pods admission makes.
func TestMergeTolerations(t *testing.T) {
	exists := func(key string, effect corev1.TaintEffect) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: effect}
	}
	equal := func(key, value string) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpEqual, Value: value, Effect: corev1.TaintEffectNoSchedule}
	}
	noExecute := func(seconds *int64) corev1.Toleration {
		return corev1.Toleration{Key: "k", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: seconds}
	}
	for _, tc := range []struct {
		name          string
		first, second []corev1.Toleration
		want          []corev1.Toleration
	}{
		{"disjoint", []corev1.Toleration{equal("a", "1")}, []corev1.Toleration{equal("b", "1")},
			[]corev1.Toleration{equal("a", "1"), equal("b", "1")}},
		{"duplicate kept once", []corev1.Toleration{equal("a", "1")}, []corev1.Toleration{equal("a", "1")},
			[]corev1.Toleration{equal("a", "1")}},
		{"Exists covers a value", []corev1.Toleration{equal("a", "1")}, []corev1.Toleration{exists("a", "")},
			[]corev1.Toleration{exists("a", "")}},
		{"an empty effect covers one", []corev1.Toleration{exists("a", "")}, []corev1.Toleration{exists("a", corev1.TaintEffectNoSchedule)},
			[]corev1.Toleration{exists("a", "")}},
		{"an empty key with Exists covers all", []corev1.Toleration{equal("a", "1"), exists("b", "")}, []corev1.Toleration{exists("", "")},
			[]corev1.Toleration{exists("", "")}},
		{"other values both kept", []corev1.Toleration{equal("a", "1")}, []corev1.Toleration{equal("a", "2")},
			[]corev1.Toleration{equal("a", "1"), equal("a", "2")}},
		{"the longer NoExecute stay covers the shorter", []corev1.Toleration{noExecute(ptr.To[int64](60))}, []corev1.Toleration{noExecute(ptr.To[int64](30))},
			[]corev1.Toleration{noExecute(ptr.To[int64](60))}},
		{"a bounded stay does not cover an unbounded one", []corev1.Toleration{noExecute(nil)}, []corev1.Toleration{noExecute(ptr.To[int64](30))},
			[]corev1.Toleration{noExecute(nil)}},
		{"nothing", nil, nil, nil},
	} {
		first := append([]corev1.Toleration(nil), tc.first...)
		got := MergeTolerations(first, tc.second)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tc.name, diff)
		}
		if diff := cmp.Diff(tc.first, first); diff != "" {
			t.Errorf("%s: first changed (-was +now):\n%s", tc.name, diff)
		}
	}
}
