package nodeclass

import "testing"

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		less bool
	}{
		{"202510.09.0", "202511.20.0", true},
		{"202511.03.0", "202511.20.0", true},
		{"202511.20.0", "202511.20.1", true},
		{"202511.20.10", "202511.20.9", false},
		{"202512.01.0", "202511.30.5", false},
	} {
		if got := compareVersions(tc.a, tc.b) < 0; got != tc.less {
			t.Errorf("compareVersions(%s, %s) < 0 = %v, want %v", tc.a, tc.b, got, tc.less)
		}
	}
	for in, want := range map[string]string{"v1.33.2": "1.33.2", "v1.34.0-aks.1": "1.34.0", "1.30.11": "1.30.11", "v0.0.0-master+$Format:%H$": ""} {
		m := kubeVersionRe.FindStringSubmatch(in)
		got := ""
		if m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("kubelet version of %q = %q, want %q", in, got, want)
		}
	}
}
