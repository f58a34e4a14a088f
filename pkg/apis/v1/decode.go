package v1

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
)

// +kubebuilder:object:generate=false

// DecodeError is why a stored object's spec could not be decoded. The object
// still decodes with its metadata and status, so an informer listing many
// objects is not stopped by one: the controllers report the object and skip it.
type DecodeError struct {
	// Field is the JSON path of the first field that does not decode, e.g.
	// spec.template.spec.terminationGracePeriod; empty when unknown.
	Field string
	Err   error
	// spec is the stored spec as it was read; encoding the object writes it
	// back unchanged, so patches of metadata or status never lose it.
	spec json.RawMessage
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *DecodeError) Unwrap() error { return e.Err }

// DecodeError returns why the pool's spec did not decode, or nil.
func (np *NodePool) DecodeError() error {
	if np.decodeErr == nil {
		return nil
	}
	return np.decodeErr
}

// UnmarshalJSON decodes a NodePool. When its spec does not decode, the pool
// keeps its metadata and status and DecodeError says which field is wrong.
func (np *NodePool) UnmarshalJSON(b []byte) error {
	type fields NodePool // without methods, so decoding does not recurse here
	var f fields
	err := kjson.UnmarshalCaseSensitivePreserveInts(b, &f)
	if err == nil {
		*np = NodePool(f)
		return nil
	}
	var partial struct {
		metav1.TypeMeta `json:",inline"`
		ObjectMeta      metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec"`
		Status          NodePoolStatus    `json:"status"`
	}
	if kjson.UnmarshalCaseSensitivePreserveInts(b, &partial) != nil {
		return err // not even the metadata: not a NodePool at all
	}
	*np = NodePool{TypeMeta: partial.TypeMeta, ObjectMeta: partial.ObjectMeta, Status: partial.Status}
	np.decodeErr = locate(b, reflect.TypeOf(f), err)
	np.decodeErr.spec = partial.Spec
	return nil
}

// MarshalJSON writes a pool whose spec did not decode with that spec exactly
// as it was read, so an update or a patch never replaces it.
func (np NodePool) MarshalJSON() ([]byte, error) {
	if np.decodeErr != nil {
		return json.Marshal(struct {
			metav1.TypeMeta `json:",inline"`
			ObjectMeta      metav1.ObjectMeta `json:"metadata"`
			Spec            json.RawMessage   `json:"spec,omitempty"`
			Status          NodePoolStatus    `json:"status"`
		}{np.TypeMeta, np.ObjectMeta, np.decodeErr.spec, np.Status})
	}
	type fields NodePool
	return json.Marshal(fields(np))
}

// DecodeError returns why the claim's spec did not decode, or nil.
func (nc *NodeClaim) DecodeError() error {
	if nc.decodeErr == nil {
		return nil
	}
	return nc.decodeErr
}

// UnmarshalJSON decodes a NodeClaim. When its spec does not decode, the claim
// keeps its metadata and status and DecodeError says which field is wrong.
func (nc *NodeClaim) UnmarshalJSON(b []byte) error {
	type fields NodeClaim
	var f fields
	err := kjson.UnmarshalCaseSensitivePreserveInts(b, &f)
	if err == nil {
		*nc = NodeClaim(f)
		return nil
	}
	var partial struct {
		metav1.TypeMeta `json:",inline"`
		ObjectMeta      metav1.ObjectMeta `json:"metadata"`
		Spec            json.RawMessage   `json:"spec"`
		Status          NodeClaimStatus   `json:"status"`
	}
	if kjson.UnmarshalCaseSensitivePreserveInts(b, &partial) != nil {
		return err
	}
	*nc = NodeClaim{TypeMeta: partial.TypeMeta, ObjectMeta: partial.ObjectMeta, Status: partial.Status}
	nc.decodeErr = locate(b, reflect.TypeOf(f), err)
	nc.decodeErr.spec = partial.Spec
	return nil
}

// MarshalJSON writes a claim whose spec did not decode with that spec
// exactly as it was read.
func (nc NodeClaim) MarshalJSON() ([]byte, error) {
	if nc.decodeErr != nil {
		return json.Marshal(struct {
			metav1.TypeMeta `json:",inline"`
			ObjectMeta      metav1.ObjectMeta `json:"metadata"`
			Spec            json.RawMessage   `json:"spec,omitempty"`
			Status          NodeClaimStatus   `json:"status"`
		}{nc.TypeMeta, nc.ObjectMeta, nc.decodeErr.spec, nc.Status})
	}
	type fields NodeClaim
	return json.Marshal(fields(nc))
}

// locate finds the first field of b (a JSON encoding of typ) that does not
// decode, by decoding the fields one at a time; err is the whole decode's error.
func locate(b []byte, typ reflect.Type, err error) *DecodeError {
	if field, ferr := firstBadField(b, typ, ""); ferr != nil {
		return &DecodeError{Field: field, Err: ferr}
	}
	return &DecodeError{Err: err}
}

func firstBadField(b []byte, typ reflect.Type, path string) (string, error) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(b, reflect.New(typ).Interface()); err == nil {
		return "", nil
	} else if isLeaf(typ) {
		return path, err
	}
	switch typ.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(b, &obj); err != nil {
			return path, err
		}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, inline := jsonName(f)
			if inline {
				if p, err := firstBadField(b, f.Type, path); err != nil {
					return p, err
				}
				continue
			}
			raw, ok := obj[name]
			if !ok || name == "" {
				continue
			}
			if p, err := firstBadField(raw, f.Type, join(path, name)); err != nil {
				return p, err
			}
		}
	case reflect.Slice:
		var items []json.RawMessage
		if err := json.Unmarshal(b, &items); err != nil {
			return path, err
		}
		for i, raw := range items {
			if p, err := firstBadField(raw, typ.Elem(), path+"["+strconv.Itoa(i)+"]"); err != nil {
				return p, err
			}
		}
	case reflect.Map:
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return path, err
		}
		for k, raw := range m {
			if p, err := firstBadField(raw, typ.Elem(), join(path, k)); err != nil {
				return p, err
			}
		}
	}
	err := kjson.UnmarshalCaseSensitivePreserveInts(b, reflect.New(typ).Interface())
	return path, err
}

// isLeaf reports whether typ decodes itself (has UnmarshalJSON) or holds no fields.
func isLeaf(typ reflect.Type) bool {
	if reflect.PointerTo(typ).Implements(reflect.TypeOf((*json.Unmarshaler)(nil)).Elem()) {
		return true
	}
	switch typ.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Map:
		return false
	}
	return true
}

func jsonName(f reflect.StructField) (name string, inline bool) {
	if !f.IsExported() {
		return "", false
	}
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	if name == "-" {
		return "", false
	}
	if f.Anonymous && name == "" {
		return "", true
	}
	if strings.Contains(opts, "inline") {
		return "", true
	}
	if name == "" {
		name = f.Name
	}
	return name, false
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// DeepCopyInto copies e into out; the wrapped error is immutable and shared.
func (e *DecodeError) DeepCopyInto(out *DecodeError) { *out = *e }

// DeepCopy returns a copy of e.
func (e *DecodeError) DeepCopy() *DecodeError {
	if e == nil {
		return nil
	}
	out := *e
	return &out
}
