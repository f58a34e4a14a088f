package v1

import (
	"encoding/json"
	"fmt"
	"time"
)

// NillableDuration is a duration that may also be "Never". It is written as a
// Go duration string ("30s", "720h") or the literal "Never".
//
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern=`^(([0-9]+(s|m|h))+|Never)$`
type NillableDuration struct {
	// Duration is nil for "Never".
	Duration *time.Duration `json:"-"`
}

// Never is the NillableDuration that never elapses.
var Never = NillableDuration{}

// MustParseNillableDuration parses s or panics; for tests and defaults.
func MustParseNillableDuration(s string) NillableDuration {
	var d NillableDuration
	if err := d.UnmarshalJSON([]byte(fmt.Sprintf("%q", s))); err != nil {
		panic(err)
	}
	return d
}

// DurationOf returns a NillableDuration of d.
func DurationOf(d time.Duration) NillableDuration { return NillableDuration{Duration: &d} }

// UnmarshalJSON accepts a duration string or "Never".
func (d *NillableDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"30s\" or \"Never\": %w", err)
	}
	if s == "Never" || s == "" {
		d.Duration = nil
		return nil
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: %w", s, err)
	}
	d.Duration = &parsed
	return nil
}

// MarshalJSON writes the duration string or "Never".
func (d NillableDuration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// String is the wire form.
func (d NillableDuration) String() string {
	if d.Duration == nil {
		return "Never"
	}
	return d.Duration.String()
}

// IsNever reports whether the duration never elapses.
func (d NillableDuration) IsNever() bool { return d.Duration == nil }

// DeepCopyInto copies d into out.
func (d *NillableDuration) DeepCopyInto(out *NillableDuration) {
	*out = NillableDuration{}
	if d.Duration != nil {
		v := *d.Duration
		out.Duration = &v
	}
}

// DeepCopy returns a copy of d.
func (d *NillableDuration) DeepCopy() *NillableDuration {
	if d == nil {
		return nil
	}
	out := new(NillableDuration)
	d.DeepCopyInto(out)
	return out
}
