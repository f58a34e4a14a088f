package v1

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"
)

// DurationPattern is the form every Stowage duration field accepts: hours,
// minutes and seconds in that order, each part at most 6, 7 and 8 digits, so
// any match fits a time.Duration; MaxDuration bounds the total. The CRDs
// enforce both with the same expressions.
const DurationPattern = `^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$`

// MaxDuration is the longest duration Stowage accepts, about 114 years.
const MaxDuration = 999999 * time.Hour

var durationRE = regexp.MustCompile(DurationPattern)

// NillableDuration is a duration that may also be "Never". It is written as a
// duration string ("30s", "720h", "1h30m") or the literal "Never".
//
// A stored value that does not parse (an object written before the CRD
// checked the range, or straight into etcd) still decodes: the text is kept,
// Err reports it and the duration reads as Never, so one bad object never
// stops an informer from listing the others.
//
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:MaxLength=32
// +kubebuilder:validation:XValidation:rule="self == 'Never' || (size(self) > 0 && self.matches('^([0-9]{1,6}h)?([0-9]{1,7}m)?([0-9]{1,8}s)?$') && duration(self) <= duration('999999h'))",message="must be a duration in hours, minutes and seconds such as 720h or 1h30m (at most 999999h), or Never"
type NillableDuration struct {
	// Duration is nil for "Never" and for a value that does not parse.
	Duration *time.Duration `json:"-"`
	// invalid is the text of a value that does not parse, kept so it is
	// written back unchanged and reported where it is.
	invalid string
}

// Never is the NillableDuration that never elapses.
var Never = NillableDuration{}

// MustParseNillableDuration parses s or panics; for tests and defaults.
func MustParseNillableDuration(s string) NillableDuration {
	d, err := ParseNillableDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// ParseNillableDuration parses a duration string in DurationPattern's form, or "Never".
func ParseNillableDuration(s string) (NillableDuration, error) {
	if s == "Never" || s == "" {
		return NillableDuration{}, nil
	}
	d, err := ParseDuration(s)
	if err != nil {
		return NillableDuration{}, err
	}
	return NillableDuration{Duration: &d}, nil
}

// ParseDuration parses s in DurationPattern's form.
func ParseDuration(s string) (time.Duration, error) {
	if !durationRE.MatchString(s) {
		return 0, fmt.Errorf("invalid duration %q: want hours, minutes and seconds such as 720h or 1h30m (at most 999999h)", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w", s, err)
	}
	if d > MaxDuration {
		return 0, fmt.Errorf("invalid duration %q: at most 999999h", s)
	}
	return d, nil
}

// DurationOf returns a NillableDuration of d.
func DurationOf(d time.Duration) NillableDuration { return NillableDuration{Duration: &d} }

// UnmarshalJSON accepts a duration string or "Never". It never fails: a value
// that does not parse is kept for Err (see the type's comment). Any value Go
// parses is read, so objects stored under an older, looser CRD keep working.
func (d *NillableDuration) UnmarshalJSON(b []byte) error {
	*d = NillableDuration{}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		d.invalid = string(b)
		return nil
	}
	if s == "Never" || s == "" {
		return nil
	}
	parsed, err := time.ParseDuration(s)
	if err != nil || parsed < 0 {
		d.invalid = string(b)
		return nil
	}
	d.Duration = &parsed
	return nil
}

// MarshalJSON writes the duration string or "Never"; a value that did not
// parse is written back exactly as it was read, so no data is lost.
func (d NillableDuration) MarshalJSON() ([]byte, error) {
	if d.invalid != "" {
		return []byte(d.invalid), nil
	}
	return json.Marshal(d.String())
}

// String is the wire form; for a value that did not parse, its raw text.
func (d NillableDuration) String() string {
	switch {
	case d.invalid != "":
		var s string
		if json.Unmarshal([]byte(d.invalid), &s) == nil {
			return s
		}
		return d.invalid
	case d.Duration == nil:
		return "Never"
	default:
		return d.Duration.String()
	}
}

// IsNever reports whether the duration never elapses. A value that does not
// parse never elapses either: nothing expires or consolidates on a guess.
func (d NillableDuration) IsNever() bool { return d.Duration == nil }

// Err says why a decoded value is not a valid duration, or nil.
func (d NillableDuration) Err() error {
	switch {
	case d.invalid != "":
		var s string
		if err := json.Unmarshal([]byte(d.invalid), &s); err != nil {
			return fmt.Errorf("must be a string such as \"30s\" or \"Never\", got %s", d.invalid)
		}
		if _, err := ParseDuration(s); err != nil {
			return err
		}
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	case d.Duration != nil && *d.Duration < 0:
		return fmt.Errorf("invalid duration %s: must not be negative", d.Duration)
	}
	return nil
}

// Equal reports whether d and o mean the same: both Never, the same
// duration, or the same unparsable text. go-cmp uses it.
func (d NillableDuration) Equal(o NillableDuration) bool {
	if d.invalid != o.invalid || (d.Duration == nil) != (o.Duration == nil) {
		return false
	}
	return d.Duration == nil || *d.Duration == *o.Duration
}

// DeepCopyInto copies d into out.
func (d *NillableDuration) DeepCopyInto(out *NillableDuration) {
	*out = NillableDuration{invalid: d.invalid}
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
