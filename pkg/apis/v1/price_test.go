package v1

import (
	"regexp"
	"testing"
)

func TestFormatPrice(t *testing.T) {
	// The rule the CRD's pricePerHour fields enforce.
	valid := regexp.MustCompile(`^[0-9]{1,9}([.][0-9]{1,12})?$`)
	for _, tc := range []struct {
		usd  float64
		want string
	}{
		{0.1 * 3, "0.3"},
		{0.50912, "0.50912"},
		{0.0475*3 + 0.00637*12, "0.21894"},
		{0.063222 / 1000, "0.000063222"},
		{12, "12"},
		{0, "0"},
		{1e-12, "0"},
	} {
		got := FormatPrice(tc.usd)
		if got != tc.want {
			t.Errorf("FormatPrice(%v) = %q, want %q", tc.usd, got, tc.want)
		}
		if !valid.MatchString(got) {
			t.Errorf("FormatPrice(%v) = %q, which the CRD rejects", tc.usd, got)
		}
	}
}
